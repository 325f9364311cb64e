"""Deprecated alias: the Celery app and the pipeline task are :mod:`atoll.service.jobs.queue`; a service's
Celery app is ``service.celery``."""

from typing import Any

from atoll._moved import forward

__getattr__ = forward(__name__, "atoll.service.jobs.queue")


def get_celery(service: Any) -> Any:
    """Return the Celery app of ``service`` (``service.celery``)."""
    return service.celery


def run_worker(service: Any, argv: list[str] | None = None) -> None:
    """Run a Celery worker for ``service`` in this process (``service.job_system().run_worker``)."""
    service.job_system().run_worker(argv)
