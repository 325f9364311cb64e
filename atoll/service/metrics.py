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
``atoll_pipeline_run_duration_seconds`` pipeline runs (sync calls and jobs) by ``pipeline`` and
                                        ``executor``: the executor's time, without HTTP and JSON
``atoll_jobs_total``                    finished jobs by ``pipeline`` and ``status`` (succeeded,
                                        failed, cancelled)
``atoll_job_duration_seconds``          job duration in the worker by ``pipeline``
``atoll_callback_deliveries_total``     callback delivery attempts by ``outcome`` (delivered,
                                        pending = will retry, failed = URL refused, abandoned)
``atoll_queue_depth``                   jobs waiting in the broker's queue (asked at most every
                                        2 s, when scraped)
``atoll_rejected_total``                requests refused by a caller's limit, by ``caller`` (a
                                        configured caller's name, or ``anonymous``) and ``reason``
                                        (``rate_limit``, ``max_jobs``, ``stored_bytes``)
======================================  =======================================================

Workers count jobs and callbacks. ``atoll serve`` starts its embedded worker with the same folder, so
its numbers appear at ``/metrics``; a worker elsewhere (``atoll worker``) serves its own with
``--metrics-bind HOST:PORT``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

__all__ = ["REQUESTS", "REQUEST_SECONDS", "RUN_SECONDS", "JOBS", "JOB_SECONDS", "CALLBACKS", "REJECTED",
           "REJECTION_REASONS", "ANONYMOUS", "ELEMENTS_FAILED", "QueueDepth", "registry", "render",
           "observe_run", "observe_job", "observe_request", "observe_rejection", "observe_failed_elements"]

REQUESTS = Counter("atoll_requests", "HTTP requests by pipeline, mode and status code",
                   ["pipeline", "mode", "status"])
REQUEST_SECONDS = Histogram("atoll_request_duration_seconds", "HTTP request duration by pipeline",
                            ["pipeline"])
RUN_SECONDS = Histogram("atoll_pipeline_run_duration_seconds",
                        "Pipeline runs by pipeline and executor", ["pipeline", "executor"])
JOBS = Counter("atoll_jobs", "Finished jobs by pipeline and status", ["pipeline", "status"])
JOB_SECONDS = Histogram("atoll_job_duration_seconds", "Job duration in the worker by pipeline",
                        ["pipeline"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600))
CALLBACKS = Counter("atoll_callback_deliveries", "Callback delivery attempts by outcome", ["outcome"])
ELEMENTS_FAILED = Counter("atoll_elements_failed", "Elements dropped by on_error skip or collect, by "
                          "pipeline and the path of the stage that failed", ["pipeline", "stage"])
REJECTED = Counter("atoll_rejected", "Requests refused by a caller's rate limit or quota, by caller and "
                   "reason", ["caller", "reason"])

#: the ``reason`` label values of ``atoll_rejected_total``: the limit that refused a request
REJECTION_REASONS = ("rate_limit", "max_jobs", "stored_bytes")
#: the ``caller`` label of a request made without a token (a service with no callers configured)
ANONYMOUS = "anonymous"

#: seconds a queue depth read from the broker is reused
QUEUE_DEPTH_SECONDS = 2.0
#: label sets whose series are kept at hand per metric (``.labels()`` looks a series up slowly);
#: past this many, a series is looked up each time
_CHILDREN_KEPT = 1000


class _Children:
    """The series of one labelled metric, by label values, kept after their first lookup."""

    def __init__(self, metric: Any):
        self.metric = metric
        self._found: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._found.get(labels)
        if child is None:
            child = self.metric.labels(*labels)
            if len(self._found) < _CHILDREN_KEPT:
                self._found[labels] = child
        return child


_requests = _Children(REQUESTS)
_request_seconds = _Children(REQUEST_SECONDS)
_run_seconds = _Children(RUN_SECONDS)


def observe_job(pipeline: str, status: str, seconds: float | None) -> None:
    """Record a job of ``pipeline`` that ended ``status`` after running ``seconds`` in the worker
    (None: a job cancelled before a worker ran it counts, but has no duration)."""
    JOBS.labels(pipeline, status).inc()
    if seconds is not None:
        JOB_SECONDS.labels(pipeline).observe(seconds)


class QueueDepth:
    """A collector of ``atoll_queue_depth``: the broker's count of waiting jobs in ``queue``, cached
    briefly; ``connect()`` returns a connection to the broker (None: no jobs, no sample)."""

    def __init__(self, queue: str, connect: Callable[[], Any] | None):
        self.queue = queue
        self.connect = connect
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._depth: float | None = None

    def _read(self) -> float | None:
        if self.connect is None:
            return None
        try:
            with self.connect() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                return float(conn.default_channel.queue_declare(self.queue, passive=True).message_count)
        except Exception:  # the broker is down, or the queue does not exist yet: no sample
            return None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if time.monotonic() - self._at >= QUEUE_DEPTH_SECONDS:
                self._depth, self._at = self._read(), time.monotonic()
            depth = self._depth
        family = GaugeMetricFamily("atoll_queue_depth", "Jobs waiting in the broker's queue",
                                   labels=["queue"])
        if depth is not None:
            family.add_metric([self.queue], depth)
        yield family


def observe_failed_elements(pipeline: str, by_stage: dict[str, int]) -> None:
    """Count the elements a run of ``pipeline`` dropped, per stage path (a pipeline's stages are few:
    the label's values are bounded by the registered pipelines)."""
    for stage, n in by_stage.items():
        ELEMENTS_FAILED.labels(pipeline, stage).inc(n)


def observe_run(pipeline: str, executor: str, seconds: float) -> None:
    """Record one synchronous run of ``pipeline`` on ``executor`` that took ``seconds``."""
    _run_seconds(pipeline, executor).observe(seconds)


def registry(*extra: Any) -> CollectorRegistry:
    """Return a registry of every process's metrics (multiprocess mode) or this process's, plus ``extra``
    collectors."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        found = CollectorRegistry()
        multiprocess.MultiProcessCollector(found)
    else:
        found = CollectorRegistry()
        found.register(_Everything())
    for collector in extra:
        found.register(collector)
    return found


class _Everything:
    """This process's default registry, as one collector of another registry."""

    def collect(self) -> Iterator[Any]:
        return REGISTRY.collect()


def render(*extra: Any) -> tuple[bytes, str]:
    """Return the exposition text of every process of this service (and ``extra`` collectors) and its
    content type."""
    return generate_latest(registry(*extra)), CONTENT_TYPE_LATEST


def observe_request(pipeline: str, mode: str, status: str, seconds: float) -> None:
    """Record an HTTP request to ``pipeline`` (``-`` off the pipeline routes) answered ``status``."""
    _requests(pipeline, mode, status).inc()
    _request_seconds(pipeline).observe(seconds)


def observe_rejection(caller: str | None, reason: str) -> None:
    """Count a request of ``caller`` (None: :data:`ANONYMOUS`) refused by its limit ``reason`` (one of
    :data:`REJECTION_REASONS`); the caller is a configured caller's name, so the labels stay bounded."""
    if reason not in REJECTION_REASONS:
        raise ValueError(f"unknown rejection reason {reason!r}; one of {', '.join(REJECTION_REASONS)}")
    REJECTED.labels(caller or ANONYMOUS, reason).inc()
