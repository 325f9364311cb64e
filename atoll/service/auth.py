"""Optional bearer-token authentication: with ``auth_tokens`` configured, every route but ``/health``
needs ``Authorization: Bearer <token>``; tokens are compared in constant time."""

from __future__ import annotations

import hmac

from flask import Flask, request

from atoll.service.errors import ApiError

__all__ = ["install", "token_matches", "OPEN_ENDPOINTS"]

#: endpoints (blueprint.function) that never need a token
OPEN_ENDPOINTS = frozenset({"health.health"})


def token_matches(given: str, tokens: list[str]) -> bool:
    """Return True when ``given`` equals one of ``tokens``, comparing every one in constant time."""
    given_bytes = given.encode("utf-8")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token.encode("utf-8"))
    return found


def install(app: Flask, tokens: list[str]) -> None:
    """Make ``app`` require one of ``tokens`` on every route but /health (nothing when empty)."""
    if not tokens:
        return
    tokens = list(tokens)

    @app.before_request
    def _require_token() -> None:
        if request.endpoint in OPEN_ENDPOINTS:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "Unauthorized", "this service needs 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": 'Bearer realm="atoll"'})
        if not token_matches(given.strip(), tokens):
            raise ApiError(401, "Unauthorized", "the bearer token is not valid",
                           headers={"WWW-Authenticate": 'Bearer realm="atoll", error="invalid_token"'})
