"""The HTTP side of the metrics (:mod:`atoll.service.metrics`): every request counted and timed, and
``GET /metrics``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, request

from atoll.service.metrics import QueueDepth, observe_request, render

__all__ = ["install", "RequestMetrics"]


def install(app: Flask) -> None:
    """Count and time every request of ``app``; add ``GET /metrics`` (with the depth of the job queue,
    when the app has a job system)."""
    system = app.extensions.get("atoll.jobs")
    depth = system.queue_depth() if system is not None else QueueDepth("", None)
    app.wsgi_app = RequestMetrics(app.wsgi_app)  # type: ignore[method-assign]

    @app.get("/metrics", endpoint="metrics")
    def metrics() -> Response:
        """Return the Prometheus text exposition of the service's metrics."""
        body, content_type = render(depth)
        return Response(body, content_type=content_type)


class RequestMetrics:
    """WSGI middleware around a Flask app's ``wsgi_app``: counts and times each request (but those
    of ``/metrics``) when the app starts its answer.

    The labels are read from the request being answered: ``pipeline`` is the name of a
    ``POST /pipelines/<name>`` (``-`` elsewhere) and ``mode`` what that route's view stored as
    ``g.atoll_mode`` (``-`` when it refused the request before knowing).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()

        def start_counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            _count(status, time.perf_counter() - started)
            return start_response(status, headers, exc_info)

        return self.app(environ, start_counted)


def _count(status: str, seconds: float) -> None:
    """Count a request answered ``status`` after ``seconds`` (called in its request context)."""
    served = request._get_current_object()  # type: ignore[attr-defined]
    rule = served.url_rule
    endpoint = rule.endpoint if rule is not None else None
    if endpoint == "metrics":
        return
    pipeline = (served.view_args or {}).get("name", "-") if endpoint == "pipelines.run" else "-"
    observe_request(pipeline, g.get("atoll_mode", "-"), status.partition(" ")[0], seconds)
