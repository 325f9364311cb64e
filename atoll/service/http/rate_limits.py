"""Per-caller request rate limits (flask-limiter), answered ``429 RateLimited`` with ``Retry-After``.

Each caller has ``caller_rate_limit`` (``"50/second"``, several joined by ``;``), or its own ``rate_limit``
from its ``callers`` entry, counted over every route of the service together: one bucket per caller.
Without callers configured (the embedded default), each client address has ``caller_rate_limit``.
The probes, ``/health``, ``/metrics`` and the dashboard's files are never limited. A request over its
rate is refused before any view runs, so nothing of it is submitted or stored.

Counting uses the "moving window" of the ``limits`` package: at most N requests in any window of the
period, the strictest of its strategies (no burst of 2N across a window's edge). The counts live in
``rate_limit_storage_url``: ``memory://`` keeps them in each web process (``atoll serve --workers 2``
then lets a caller make up to twice its rate), ``redis://`` shares them between every web process and
host. When Redis cannot be reached, each process counts in memory until it answers again (logged), and
requests are never refused because the count store is down.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, current_app, g, request

from atoll.config import Config
from atoll.errors import ConfigError
from atoll.service.http.auth import OPEN_ENDPOINTS
from atoll.service.http.errors import error_response
from atoll.service.metrics import ANONYMOUS, observe_rejection

__all__ = ["install", "EXEMPT_ENDPOINTS", "rate_limit_of", "EXTENSION"]

log = logging.getLogger("atoll.service")

#: endpoints never rate limited: the health report, the probes, /metrics and the dashboard's files
EXEMPT_ENDPOINTS = OPEN_ENDPOINTS | {"metrics"}
#: the key of the app's Limiter in ``app.extensions``
EXTENSION = "atoll.rate_limits"


def rate_limit_of(config: Config, caller: str | None) -> tuple[str | None, str]:
    """Return the rate limit of ``caller`` (None: a request without a token) and the key that sets it:
    the caller's own ``rate_limit`` or ``caller_rate_limit``; the limit is None when there is none."""
    own = config.callers.get(caller, {}).get("rate_limit") if caller is not None else None
    if own is not None:
        return own, "rate_limit"
    return config.caller_rate_limit, "caller_rate_limit"


def _caller_name() -> str | None:
    caller = g.get("caller")
    return caller.name if caller is not None else None


def _key() -> str:
    """The bucket of this request: its caller's name, or its client's address without callers."""
    name = _caller_name()
    return f"caller:{name}" if name is not None else f"address:{request.remote_addr or '-'}"


def install(app: Flask) -> None:
    """Limit the request rate of each caller of ``app`` (nothing when no rate limit is configured);
    call it after :func:`atoll.service.http.auth.install`, whose ``g.caller`` it reads."""
    config = app.extensions["atoll"].config
    if config.caller_rate_limit is None and not any(
            entry.get("rate_limit") for entry in config.callers.values()):
        return
    try:
        from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
    except ImportError as exc:  # part of the service extra
        raise ConfigError(f"rate limits (caller_rate_limit, a caller's rate_limit) need flask-limiter: "
                          f"pip install 'atoll[service]' ({exc})") from None

    def limit() -> str:
        return rate_limit_of(config, _caller_name())[0] or ""  # "" = no limit for this caller

    limiter = Limiter(
        _key, application_limits=[ApplicationLimit(limit, key_function=_key, scope="caller")],
        # one service's web processes share worker_queue: another service on the same Redis counts apart
        strategy="moving-window", storage_uri=config.rate_limit_storage_url,
        key_prefix=f"atoll:{config.worker_queue}",
        in_memory_fallback_enabled=True, swallow_errors=True, headers_enabled=False)
    limiter.request_filter(lambda: request.endpoint in EXEMPT_ENDPOINTS)
    limiter.init_app(app)
    app.extensions[EXTENSION] = limiter

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> Response:
        name = _caller_name()
        rate, key = rate_limit_of(current_app.extensions["atoll"].config, name)
        observe_rejection(name, "rate_limit")
        shown = str(exc.limit.limit)
        who = f"caller {name!r}" if name is not None else f"client {request.remote_addr}"
        return error_response(
            429, "RateLimited", f"{who} is over its rate limit of {shown} requests ({key} = {rate}); "
                                f"nothing was done: retry after Retry-After seconds",
            headers={"Retry-After": str(_retry_after(limiter))}, limit=key, rate=rate,
            caller=name or ANONYMOUS)


def _retry_after(limiter: object) -> int:
    """Seconds until the breached limit lets a request through again (at least 1)."""
    try:
        reset_at = limiter.current_limit.window[0]  # type: ignore[attr-defined]
    except Exception as exc:  # the count store went away meanwhile
        log.warning("rate limit: cannot read when the window resets: %s", exc)
        return 1
    return max(1, math.ceil(reset_at - time.time()))
