"""``GET /health``: every health check of the service (web process, broker, workers); 503 when a
required one fails."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from atoll import __version__

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """Return ``{"status": "ok"|"degraded"|"down", "version", "checks": {name: {...}}}``."""
    service = current_app.extensions["atoll"]
    healthy, checks = service.health()
    all_ok = all(check["ok"] for check in checks.values())
    status = "ok" if all_ok else "degraded" if healthy else "down"
    body = {"status": status, "version": __version__, "checks": checks}
    return current_app.json.response(body), 200 if healthy else 503
