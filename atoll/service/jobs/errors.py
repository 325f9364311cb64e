"""What the job system refuses, as domain exceptions: it never speaks HTTP.

Each exception carries a ``message`` (what went wrong, for a person) and ``extra`` JSON fields (the
job's status, a limit). The service's one table (:data:`atoll.service.http.errors.STATUSES`) gives
each class its HTTP status and error name; ``atoll status`` and Python callers read them as they are.
"""

from __future__ import annotations

from typing import Any

from atoll.errors import AtollError

__all__ = ["JobError", "JobNotFound", "JobFinished", "NoResults", "ResultsExpired", "JobNotFinished",
           "RequestExpired", "CallbackRefused",
           "IdempotencyKeyReused", "IdempotencyKeyInUse", "QuotaExceeded", "BadCursor", "ListingUnsupported",
           "Unavailable", "BrokerUnavailable", "JobStoreUnavailable", "AsyncUnavailable"]


class JobError(AtollError):
    """A request the job system refuses: ``message`` in words and ``extra`` JSON fields."""

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.message = message
        self.extra = extra

    def __str__(self) -> str:
        return self.message


class JobNotFound(JobError, KeyError):
    """No job has this id: never submitted here, or its record expired."""


class JobFinished(JobError):
    """The job has finished: it cannot be cancelled."""


class JobNotFinished(JobError):
    """The job is queued or running: it cannot be re-run before it finished."""


class RequestExpired(JobError):
    """The request a finished job was submitted with is no longer kept: it cannot be re-run."""


class NoResults(JobError):
    """The job has not succeeded: it has no results."""


class ResultsExpired(JobError):
    """The job succeeded but its results kept aside have expired."""


class CallbackRefused(JobError):
    """The callback URL is refused by the SSRF guard (a private address, a host not allowed)."""


class IdempotencyKeyReused(JobError):
    """An ``Idempotency-Key`` was used before with another request body."""


class IdempotencyKeyInUse(JobError):
    """An ``Idempotency-Key`` belongs to a job whose record is not there (still being queued, or expired)."""


class QuotaExceeded(JobError):
    """The caller has as many jobs queued or running as its quota allows; nothing was queued."""

    #: the ``reason`` this refusal counts under in ``atoll_rejected_total``
    rejection = "max_jobs"


class BadCursor(JobError, ValueError):
    """A listing ``cursor`` that this service did not hand out."""


class ListingUnsupported(JobError):
    """The result backend cannot enumerate its records (only the embedded store and Redis can)."""


class Unavailable(JobError):
    """A part the job system needs does not answer just now; retrying later may succeed."""


class BrokerUnavailable(Unavailable):
    """The broker did not accept a job: nothing was queued."""


class JobStoreUnavailable(Unavailable):
    """The job store cannot be read or written (see :class:`~atoll.service.jobs.store.StoreUnavailable`
    for the store's own exception, with its cause in one word)."""


class AsyncUnavailable(Unavailable):
    """Jobs are not available on this service (Celery is not installed)."""
