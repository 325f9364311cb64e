"""``GET /health``: every health check of the service (web process, broker, job store, workers); 503
when a required one fails.

The route needs no token, so a load balancer can ask it. When ``callers`` or ``auth_tokens`` are
configured, a request without a valid token gets only ``{"status"}``: worker host names, process ids and
the broker's URL are for the service's own callers.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from atoll import __version__
from atoll.service.http.auth import authenticate, bearer, callers_of, enabled

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """Return ``{"status": "ok"|"degraded"|"down", "version", "checks": {name: {...}}}``."""
    service = current_app.extensions["atoll"]
    status, healthy, checks = service.health_status()
    if enabled(service.config) and not _has_token(service.config):
        return current_app.json.response({"status": status}), 200 if healthy else 503
    body = {"status": status, "version": __version__, "checks": checks}
    return current_app.json.response(body), 200 if healthy else 503


def _has_token(config: Any) -> bool:
    given = bearer()
    return given is not None and authenticate(given, callers_of(config)) is not None
