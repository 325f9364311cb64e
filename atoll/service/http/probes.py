"""Probes for orchestrators: ``GET /livez`` (the process answers) and ``GET /readyz`` (it can take jobs).

``/health`` is the detailed report and asks the broker and the workers on every call; a probe that
Kubernetes or compose sends every few seconds must not. ``/livez`` does no I/O at all. ``/readyz``
runs the same checks as ``/health`` (broker reachable, job store writable, a worker alive) but at most
once per ``READY_CACHE_SECONDS`` per process, however many probes arrive, and answers only which
checks fail — no host names or addresses, since probes need no token.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app

__all__ = ["blueprint", "READY_CACHE_SECONDS", "Readiness"]

#: seconds a readiness answer is reused before the checks run again
READY_CACHE_SECONDS = 2.0

blueprint = Blueprint("probes", __name__)


class Readiness:
    """The service's readiness, computed by its health checks and cached for ``ttl`` seconds."""

    def __init__(self, service: Any, ttl: float = READY_CACHE_SECONDS):
        self.service = service
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._answer: tuple[bool, list[str]] = (False, [])

    def get(self) -> tuple[bool, list[str]]:
        """Return (ready, names of the failing checks), running the checks when the cache is stale.

        One thread runs them while the others wait for its answer, so a burst of probes costs one
        round of checks.
        """
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                _, checks = self.service.health()
                failing = sorted(name for name, check in checks.items() if not check["ok"])
                self._answer = (not failing, failing)
                self._at = time.monotonic()
            return self._answer


@blueprint.get("/livez")
def livez() -> Response:
    """Return 200 ``{"status": "ok"}``: this process serves requests (no I/O, no checks)."""
    return current_app.json.response({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Return 200 ``{"status": "ready"}``, or 503 ``{"status": "not ready", "failing": [...]}``."""
    ready, failing = current_app.extensions["atoll.readiness"].get()
    if ready:
        return current_app.json.response({"status": "ready"}), 200
    return current_app.json.response({"status": "not ready", "failing": failing}), 503
