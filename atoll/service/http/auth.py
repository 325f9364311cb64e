"""Optional bearer-token authentication of named callers with scopes.

With ``callers`` (or ``auth_tokens``) configured, every route but ``/health`` needs
``Authorization: Bearer <token>`` (``/livez``, ``/readyz`` and the dashboard's static page ``/ui`` too are
open, and ``/metrics`` with ``metrics_public``). The configuration holds each caller's token hashes
(SHA-256, hex; at most two, for a rotation), never the tokens: the SHA-256 of the presented token is
compared with every configured hash in constant time. Each ``auth_tokens`` entry is an admin caller
named ``default``.

A request's caller is ``flask.g.caller``: None without authentication, else a :class:`Caller`. Its name
(never its token) is in the WSGI environ as ``atoll.caller``, which the access log prints.

Scopes: ``run`` for every request that is not a read (``POST /pipelines/<name>``, uploads, cancel,
re-run), ``read`` for the reads (GET and HEAD) of the caller's own jobs, logs, results and datasets,
``admin`` for everything (every caller's jobs, and ``/metrics`` when it is not public). A missing scope is
a 403 naming it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import Flask, g, request

from atoll.config import Config
from atoll.service.http.errors import ApiError

__all__ = ["install", "token_matches", "OPEN_ENDPOINTS", "Caller", "callers_of", "authenticate",
           "enabled", "token_hash", "required_scope", "DEFAULT_CALLER", "ENVIRON_KEY"]

#: endpoints (blueprint.function) that never need a token: the health report, the probes and the
#: dashboard's static files (its API calls carry the token)
OPEN_ENDPOINTS = frozenset({"health.health", "probes.livez", "probes.readyz", "ui.index", "ui.static"})

#: the name of the admin caller that the ``auth_tokens`` stand for
DEFAULT_CALLER = "default"

#: the WSGI environ key holding the caller's name (the access log's ``caller=``)
ENVIRON_KEY = "atoll.caller"

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its ``name`` and ``scopes`` (``run``, ``read``, ``admin``)."""

    name: str
    scopes: frozenset[str]
    hashes: tuple[bytes, ...] = ()

    @property
    def is_admin(self) -> bool:
        """True for a caller with the ``admin`` scope: it sees and may do everything."""
        return "admin" in self.scopes

    def may(self, scope: str) -> bool:
        """True when the caller has ``scope`` (or ``admin``)."""
        return self.is_admin or scope in self.scopes

    def __repr__(self) -> str:  # never the hashes
        return f"Caller({self.name!r}, scopes={sorted(self.scopes)})"


def token_hash(token: str) -> str:
    """Return the SHA-256 (hex) of ``token``, as the configuration's ``callers`` hold it.

    >>> token_hash("s3cret")[:16]
    '1ec1c26b50d5d3c5'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def callers_of(config: Config) -> list[Caller]:
    """Return the callers ``config`` names: its ``callers`` and, with ``auth_tokens``, the admin caller
    ``default`` (unless ``callers`` names one ``default`` itself)."""
    found = [Caller(name, frozenset(entry["scopes"]), tuple(bytes.fromhex(h) for h in entry["tokens"]))
             for name, entry in config.callers.items()]
    if config.auth_tokens and DEFAULT_CALLER not in config.callers:
        found.append(Caller(DEFAULT_CALLER, frozenset({"admin"}),
                            tuple(hashlib.sha256(t.encode("utf-8")).digest() for t in config.auth_tokens)))
    return found


def enabled(config: Config) -> bool:
    """True when the service needs a token (``callers`` or ``auth_tokens`` configured)."""
    return bool(config.callers or config.auth_tokens)


def authenticate(given: str, callers: list[Caller]) -> Caller | None:
    """Return the caller whose token hash is the SHA-256 of ``given``, or None; every configured hash
    is compared, each in constant time."""
    digest = hashlib.sha256(given.encode("utf-8")).digest()
    found = None
    for caller in callers:
        for known in caller.hashes:
            if hmac.compare_digest(digest, known) and found is None:
                found = caller
    return found


def token_matches(given: str, tokens: list[str]) -> bool:
    """Return True when ``given`` equals one of ``tokens``, comparing every one in constant time."""
    given_bytes = given.encode("utf-8")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token.encode("utf-8"))
    return found


def required_scope(method: str, endpoint: str | None) -> str:
    """Return the scope a request needs: ``admin`` for /metrics, ``read`` for reads, else ``run``."""
    if endpoint == "metrics":
        return "admin"
    return "read" if method in _READS else "run"


def bearer() -> str | None:
    """Return the request's bearer token, or None without one."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def install(app: Flask) -> None:
    """Make ``app`` require a configured caller's token on every route but /health, the probes and,
    with ``metrics_public``, /metrics, and check its scope (nothing when no token is configured:
    ``g.caller`` is then None)."""
    config = app.extensions["atoll"].config

    if not enabled(config):
        @app.before_request
        def _nobody() -> None:
            g.caller = None
        return
    callers = callers_of(config)
    open_here = OPEN_ENDPOINTS | ({"metrics"} if config.metrics_public else set())

    @app.before_request
    def _require_token() -> None:
        g.caller = None
        if request.endpoint in open_here:
            return
        given = bearer()
        if given is None:
            raise ApiError(401, "Unauthorized", "this service needs 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": 'Bearer realm="atoll"'})
        caller = authenticate(given, callers)
        if caller is None:
            raise ApiError(401, "Unauthorized", "the bearer token is not valid",
                           headers={"WWW-Authenticate": 'Bearer realm="atoll", error="invalid_token"'})
        g.caller = caller
        request.environ[ENVIRON_KEY] = caller.name
        scope = required_scope(request.method, request.endpoint)
        if not caller.may(scope):
            raise ApiError(403, "Forbidden", f"caller {caller.name!r} lacks the scope {scope!r} that "
                                             f"{request.method} {request.path} needs (it has "
                                             f"{', '.join(sorted(caller.scopes))})",
                           headers={"WWW-Authenticate": f'Bearer realm="atoll", error="insufficient_scope", '
                                                       f'scope="{scope}"'})
