"""Prometheus metrics of the web process, served at ``GET /metrics`` (names prefixed ``atoll_``).

Under gunicorn each worker process counts its own requests; Prometheus must see their sum. With
``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` is first imported (``atoll serve`` does it,
a fresh folder per start), every process writes its values to files there and ``/metrics`` adds them
up, as prometheus_client's multiprocess mode prescribes. Without it (a single process, the test
client), the process's own registry is served.

======================================  =======================================================
``atoll_requests_total``                HTTP requests by ``pipeline``, ``mode`` (sync, async or
                                        ``-`` off the pipeline routes) and ``status`` code
``atoll_request_duration_seconds``      request duration histogram by ``pipeline``
``atoll_pipeline_run_duration_seconds`` synchronous pipeline runs by ``pipeline`` and ``executor``
                                        (the time the executor took, without HTTP and JSON)
======================================  =======================================================
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

__all__ = ["install", "REQUESTS", "REQUEST_SECONDS", "RUN_SECONDS", "render", "observe_run"]

REQUESTS = Counter("atoll_requests", "HTTP requests by pipeline, mode and status code",
                   ["pipeline", "mode", "status"])
REQUEST_SECONDS = Histogram("atoll_request_duration_seconds", "HTTP request duration by pipeline",
                            ["pipeline"])
RUN_SECONDS = Histogram("atoll_pipeline_run_duration_seconds",
                        "Synchronous pipeline runs by pipeline and executor", ["pipeline", "executor"])


def observe_run(pipeline: str, executor: str, seconds: float) -> None:
    """Record one synchronous run of ``pipeline`` on ``executor`` that took ``seconds``."""
    RUN_SECONDS.labels(pipeline, executor).observe(seconds)


def render() -> tuple[bytes, str]:
    """Return the exposition text of every process of this service and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def install(app: Flask) -> None:
    """Count and time every request of ``app``; add ``GET /metrics``."""

    @app.before_request
    def _start_clock() -> None:
        g.atoll_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("atoll_started", None)
        if started is None or request.endpoint == "metrics":
            return response
        pipeline = (request.view_args or {}).get("name", "-") if request.endpoint == "pipelines.run" \
            else "-"
        mode = g.get("atoll_mode", "-")
        REQUESTS.labels(pipeline, mode, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(pipeline).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", endpoint="metrics")
    def metrics() -> Response:
        """Return the Prometheus text exposition of the service's metrics."""
        body, content_type = render()
        return Response(body, content_type=content_type)
