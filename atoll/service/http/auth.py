"""Optional bearer-token authentication: with ``auth_tokens`` configured, every route but ``/health``
needs ``Authorization: Bearer <token>`` (``/livez``, ``/readyz`` and the dashboard's static page ``/ui``
too are open, and ``/metrics`` with ``metrics_public``); tokens are compared in constant time."""

from __future__ import annotations

import hmac

from flask import Flask, request

from atoll.service.http.errors import ApiError

__all__ = ["install", "token_matches", "OPEN_ENDPOINTS"]

#: endpoints (blueprint.function) that never need a token: the health report, the probes and the
#: dashboard's static files (its API calls carry the token)
OPEN_ENDPOINTS = frozenset({"health.health", "probes.livez", "probes.readyz", "ui.index", "ui.static"})


def token_matches(given: str, tokens: list[str]) -> bool:
    """Return True when ``given`` equals one of ``tokens``, comparing every one in constant time."""
    given_bytes = given.encode("utf-8")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token.encode("utf-8"))
    return found


def install(app: Flask) -> None:
    """Make ``app`` require one of the service's ``auth_tokens`` on every route but /health, the probes
    and, with ``metrics_public``, /metrics (nothing when no token is configured)."""
    config = app.extensions["atoll"].config
    if not config.auth_tokens:
        return
    tokens = list(config.auth_tokens)
    open_here = OPEN_ENDPOINTS | ({"metrics"} if config.metrics_public else set())

    @app.before_request
    def _require_token() -> None:
        if request.endpoint in open_here:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "Unauthorized", "this service needs 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": 'Bearer realm="atoll"'})
        if not token_matches(given.strip(), tokens):
            raise ApiError(401, "Unauthorized", "the bearer token is not valid",
                           headers={"WWW-Authenticate": 'Bearer realm="atoll", error="invalid_token"'})
