"""The job system of one service: its Celery app, job store and callback delivery, owned by one object.

:class:`JobSystem` is built once per process for a service (:meth:`Atoll.job_system
<atoll.service.Atoll.job_system>`): by ``create_app`` (kept in ``app.extensions["atoll.jobs"]``) and by a
worker (``atoll worker``, :meth:`JobSystem.run_worker`). It submits, reads, lists and cancels jobs and
reports the health of what jobs need (broker, store, workers). It raises the domain exceptions of
:mod:`atoll.service.jobs.errors`, never HTTP statuses, and imports nothing of Flask.

A job is stored (``queued``) before its message is sent, and :meth:`JobSystem.submit` returns once the
broker confirmed the message. Cancelling writes the ``cancelled`` record at once, sends the callback
(status ``cancelled``) and asks the workers, through Celery's ``revoke``, to drop the message if it is
still queued, or to stop the run (``terminate`` with ``SIGUSR1``: the task gets
``SoftTimeLimitExceeded``, and the executors stop their work in flight: local pool processes, Spark job
group).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from atoll.config import Config
from atoll.service import metrics
from atoll.service.datasets.store import visible_to
from atoll.service.jobs import queue
from atoll.service.jobs.delivery import CallbackURLError, check_callback_url
from atoll.service.jobs.errors import (
    BrokerUnavailable,
    CallbackRefused,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    JobError,
    JobFinished,
    JobNotFinished,
    JobNotFound,
    JobStoreUnavailable,
    NoResults,
    QuotaExceeded,
    RequestExpired,
    ResultsExpired,
)
from atoll.service.jobs.model import CallbackState, Job, JobMessage, JobStatus, is_job_id, new_job_id, now
from atoll.service.jobs.store import StoreUnavailable, decode_cursor
from atoll.service.log_format import REQUEST_ID_HEADER
from atoll.service.transport import live_consumers, redact_url

__all__ = ["JobSystem", "IDEMPOTENCY_HEADER", "HealthCheck"]

log = logging.getLogger("atoll.jobs")

#: the request header whose key makes a submission idempotent (named in the job system's messages)
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: a health check returns (name, ok, detail, required)
HealthCheck = Callable[[], tuple[str, bool, dict, bool]]


class JobSystem:
    """The jobs of ``service``: its Celery app (``celery``), job ``store`` and callback delivery."""

    def __init__(self, service: Any):
        self.config: Config = service.config
        self.celery = queue.create_celery(service)
        self.context: queue.JobContext = self.celery.atoll_context
        self.store = self.context.store
        self._datasets = service.datasets  # built on first use: a caller's stored bytes

    def __repr__(self) -> str:
        return f"<JobSystem queue={self.config.worker_queue!r}>"

    # -- jobs ----------------------------------------------------------------------------------

    def submit(self, message: JobMessage, status_url: Callable[[str], str],
               idempotency: tuple[str, str] | None = None, request_id: str | None = None,
               rerun_of: str | None = None, owner: str | None = None) -> tuple[Job, bool]:
        """Queue ``message``; return (the job, True) once the broker confirmed it, or (the earlier job,
        False) for an ``idempotency`` (key id, body hash) already used with the same body. The request
        is kept beside the record (``<job_id>.request``) for a re-run; ``rerun_of`` names the job
        this one re-runs; ``owner`` is the name of the caller that submitted it (None without
        callers).

        Raises CallbackRefused, IdempotencyKeyReused, IdempotencyKeyInUse, BrokerUnavailable or
        JobStoreUnavailable.
        """
        config = self.config
        if message.callback is not None:
            try:
                check_callback_url(message.callback, config)
            except CallbackURLError as exc:
                raise CallbackRefused(str(exc)) from None
        message = replace(message, submitted_at=now())
        job_id = new_job_id()
        job = Job(job_id, message.pipeline, submitted_at=message.submitted_at, request_id=request_id,
                  callback=CallbackState(message.callback) if message.callback is not None else None,
                  status_url=status_url(job_id), rerun_of=rerun_of, owner=owner)
        if idempotency is not None:
            earlier = self._claim(idempotency, job_id)
            if earlier is not None:
                return earlier, False
        try:
            self._check_quota(owner)
        except Exception:  # a quota, or the store that counts it, refused: the key is free again
            self._release(idempotency)
            raise
        try:  # the record first: a job id is known from the moment a worker could start it
            self.store.put_aside(job_id, "request", message.request_text())
            self.store.save(job)
        except Exception as exc:
            self._release(idempotency)
            log.error("job store unavailable: %s", exc)
            raise JobStoreUnavailable(f"the job was not queued: {_store_reason(exc)}") from None
        soft, hard = queue.time_limits(config, message.pipeline)
        try:
            self.celery.atoll_tasks["pipeline"].apply_async(
                message.task_args(), task_id=job_id, queue=config.worker_queue, soft_time_limit=soft,
                time_limit=hard,  # the worker's log lines show the request id
                headers={REQUEST_ID_HEADER: job.request_id, **message.headers()})
        except Exception as exc:  # kombu raises OperationalError, socket errors or its own ChannelErrors
            self._forget(job_id)
            self._release(idempotency)
            broker = redact_url(config.worker_broker) if config.worker_broker else "the embedded broker"
            log.error("broker %s unavailable, job refused: %s", broker, exc)
            raise BrokerUnavailable(f"the job broker ({broker}) did not accept the job, nothing was "
                                    f"queued; retry later ({type(exc).__name__}: {exc})") from None
        return job, True

    def _check_quota(self, owner: str | None) -> None:
        """Raise QuotaExceeded when caller ``owner`` has its ``max_jobs`` (or ``caller_max_jobs``) jobs
        queued, running or waiting to retry already, StoredBytesExceeded when it keeps its
        ``max_stored_bytes`` (or ``caller_max_stored_bytes``) of datasets (checked before queuing: two
        submissions at once may both pass)."""
        if owner is None:
            return
        config = self.config
        if config.caller_max_stored_bytes or config.callers.get(owner, {}).get("max_stored_bytes"):
            self._datasets().stored_bytes_left(owner)
        limit = config.callers.get(owner, {}).get("max_jobs") or config.caller_max_jobs
        if limit is None:
            return
        with _store_errors():
            busy = sum(len(self.store.list(status, None, limit, None, owner)[0])
                       for status in JobStatus if not status.finished)
        if busy >= limit:
            key = "max_jobs" if config.callers.get(owner, {}).get("max_jobs") else "caller_max_jobs"
            raise QuotaExceeded(f"caller {owner!r} has {busy} jobs queued, running or retrying, its limit "
                                f"({key} = {limit}); nothing was queued: retry when one has finished",
                                limit=key, caller=owner, max_jobs=limit)

    def _claim(self, idempotency: tuple[str, str], job_id: str) -> Job | None:
        key_id, body_hash = idempotency
        try:
            earlier = self.store.claim(key_id, {"job_id": job_id, "body": body_hash})
        except Exception as exc:
            raise JobStoreUnavailable(f"the job was not queued: {_store_reason(exc)}") from None
        if earlier is None:
            return None
        if earlier.get("body") != body_hash:
            raise IdempotencyKeyReused(f"the {IDEMPOTENCY_HEADER} was used before with another request "
                                       f"body; use a new key for a new request", job_id=earlier.get("job_id"))
        job = self.store.load(str(earlier.get("job_id")))
        if job is None:  # claimed by a request still being queued, or its record expired
            raise IdempotencyKeyInUse(f"the {IDEMPOTENCY_HEADER} belongs to job {earlier.get('job_id')} "
                                      f"whose record is not there (still being queued, or expired); retry")
        return job

    def _release(self, idempotency: tuple[str, str] | None) -> None:
        if idempotency is not None:
            try:
                self.store.release(idempotency[0])
            except Exception as exc:
                log.warning("could not release an idempotency key: %s", exc)

    def _forget(self, job_id: str) -> None:
        try:
            self.store.forget(job_id)
        except Exception as exc:  # the store may be down too; the record then expires on its own
            log.warning("job %s: could not remove the record of a refused job: %s", job_id, exc)

    def get(self, job_id: str) -> Job | None:
        """Return job ``job_id``, or None for an id this service never issued (or whose record expired)."""
        return self.store.load(job_id) if is_job_id(job_id) else None

    def job(self, job_id: str, caller: Any = None) -> Job:
        """Return job ``job_id``; raise JobNotFound (also for another caller's job: ``caller`` is None
        without callers, else an object with ``name`` and ``is_admin``) or JobStoreUnavailable."""
        with _store_errors():
            job = self._visible(job_id, caller)
        if job is None:
            raise self._not_found(job_id)
        return job

    def _visible(self, job_id: str, caller: Any) -> Job | None:
        """Return job ``job_id`` when ``caller`` may see it (its own, or an admin), else None."""
        job = self.get(job_id)
        return job if job is not None and visible_to(job.owner, caller) else None

    def _not_found(self, job_id: str) -> JobNotFound:
        return JobNotFound(f"no job {job_id!r}: never submitted here, or its record expired "
                           f"(result_expires = {self.config.result_expires} s)")

    def cancel(self, job_id: str, caller: Any = None) -> Job:
        """Cancel job ``job_id`` (``caller``'s own) and return it; raise JobNotFound, JobFinished (also
        when it finished while being cancelled: the stored outcome stands) or JobStoreUnavailable."""
        with _store_errors():
            job = self._visible(job_id, caller)
            if job is None:
                raise self._not_found(job_id)
            if job.status.finished:
                raise _finished(job)
            job.cancel()
            if not self.store.save(job):  # it finished meanwhile
                raise _finished(self.get(job_id) or job)
            self.store.keep_request(job_id)  # kept as long as the finished record
            log.info("job %s: cancelled", job_id)
            metrics.observe_job(job.pipeline or "", job.status.value, None)
            queue.send_outcome(job, self.context, inline=False)
        try:  # drop the queued message; stop the run: SIGUSR1 raises SoftTimeLimitExceeded in the task
            self.celery.control.revoke(job_id, terminate=True, signal="SIGUSR1")
        except Exception as exc:  # the record says cancelled: a worker that starts it skips it
            log.warning("job %s: could not ask the workers to stop it: %s", job_id, exc)
        return job

    def rerun(self, job_id: str, status_url: Callable[[str], str],
              idempotency: tuple[str, str] | None = None, request_id: str | None = None,
              caller: Any = None) -> tuple[Job, bool]:
        """Queue a new job with finished job ``job_id``'s request (pipeline, data, kwargs, callback);
        its record's ``rerun_of`` is ``job_id``, its owner ``caller`` (who must see ``job_id``).
        Return as :meth:`submit` does; raise JobNotFound, JobNotFinished (queued or running),
        RequestExpired, or what :meth:`submit` raises."""
        with _store_errors():
            job = self._visible(job_id, caller)
            if job is None:
                raise self._not_found(job_id)
            if not job.status.finished:
                raise JobNotFinished(f"job {job_id} is {job.status.value}: only a succeeded, failed or "
                                     f"cancelled job can be re-run", job_status=job.status.value)
            text = self.store.get_aside(job_id, "request")
        if text is None:
            raise RequestExpired(f"the request of job {job_id} is no longer kept (jobs submitted by an "
                                 f"earlier version keep none): submit it again")
        message = JobMessage.from_request_text(text)
        return self.submit(message, status_url, idempotency, request_id=request_id, rerun_of=job_id,
                           owner=getattr(caller, "name", None))

    def list(self, status: JobStatus | None, pipeline: str | None, limit: int,
             cursor: str | None, caller: Any = None,
             owner: str | None = None) -> tuple[list[Job], str | None]:
        """Return a page of jobs, newest first, and the cursor of the next one: ``caller``'s own (all
        for an admin or without callers), of caller ``owner`` only when given; raise BadCursor,
        ListingUnsupported or JobStoreUnavailable."""
        after = decode_cursor(cursor) if cursor else None
        if caller is not None and not getattr(caller, "is_admin", False):
            if owner is not None and owner != caller.name:
                return [], None
            owner = caller.name
        with _store_errors():
            return self.store.list(status, pipeline, limit, after, owner)

    def results(self, job_id: str, caller: Any = None) -> tuple[Job, str | None]:
        """Return succeeded job ``job_id`` (``caller``'s own) and its results' JSON text when kept aside
        (None when inline); raise JobNotFound, NoResults, ResultsExpired or JobStoreUnavailable."""
        job = self.job(job_id, caller)
        if job.status is not JobStatus.SUCCEEDED:
            raise NoResults(f"job {job_id} is {job.status.value}: results exist once it succeeded",
                            job_status=job.status.value)
        if job.results_url is None:
            return job, None
        with _store_errors():
            text = self.store.get_aside(job_id, "results")
        if text is None:
            raise ResultsExpired(f"the results of job {job_id} are no longer kept")
        return job, text

    def logs(self, job_id: str, caller: Any = None) -> str:
        """Return what job ``job_id``'s pipeline (``caller``'s own) printed and logged (JSON lines;
        empty while it runs)."""
        self.job(job_id, caller)
        with _store_errors():
            return self.store.get_aside(job_id, "logs") or ""

    def dead_letters(self, job_id: str, caller: Any = None) -> str:
        """Return the dead letters of job ``job_id`` (``caller``'s own), run with ``on_error: collect``
        (JSON lines; empty while it runs, or when nothing was dropped or kept)."""
        self.job(job_id, caller)
        with _store_errors():
            return self.store.get_aside(job_id, "errors") or ""

    # -- health --------------------------------------------------------------------------------

    def health_checks(self) -> list[HealthCheck]:
        """Return the checks of what jobs need: the broker, the job store and the workers."""
        return [self.broker_check, self.store_check, self.worker_check]

    def broker_check(self) -> tuple[str, bool, dict, bool]:
        """Health check: can the broker be reached? Required: without it no job is accepted."""
        config = self.config
        detail: dict[str, Any] = {"url": redact_url(config.worker_broker) if config.worker_broker
                                  else "embedded", "queue": config.worker_queue}
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                detail.update(_queue_counts(conn, config.worker_queue))
        except Exception as exc:
            detail["error"] = f"{type(exc).__name__}: {exc}"
            return "broker", False, detail, True
        return "broker", True, detail, True

    def store_check(self) -> tuple[str, bool, dict, bool]:
        """Health check: can job records be written? Required: without it no job is accepted, and
        running jobs wait to store their outcome.

        Writes, reads back and removes a probe record of about a job record's size, at most once a
        second per process (:meth:`~atoll.service.jobs.store.JobStore.writable`); ``state`` says
        ``writable``, or why not in one word: ``full``, ``denied``, ``unreachable`` or ``failing``.
        """
        config = self.config
        detail: dict[str, Any] = {"url": redact_url(config.worker_backend) if config.worker_backend
                                  else "embedded"}
        failure = self.store.writable()
        if failure is not None:
            detail.update(state=failure.cause, error=str(failure))
            return "store", False, detail, True
        detail["state"] = "writable"
        return "store", True, detail, True

    def worker_check(self) -> tuple[str, bool, dict, bool]:
        """Health check: how many workers consume the service's queue.

        On RabbitMQ, the workers that answer a ping; not required, jobs wait in the queue. On the
        embedded broker, the living processes consuming the queue (files read, no message sent);
        required when ``embedded_worker`` says that a worker runs beside the web process, since then
        no other will.
        """
        config = self.config
        if queue.is_embedded(config):
            pids = sorted(c["pid"] for c in live_consumers(self.celery.conf.broker_transport_options)
                          if config.worker_queue in c["queues"])
            detail: dict[str, Any] = {"count": len(pids), "pids": pids}
            if not pids:
                detail["error"] = (f"no worker is running for queue {config.worker_queue!r}: jobs are "
                                   f"accepted and wait until one runs" +
                                   ("; `atoll serve` restarts its embedded worker within seconds"
                                    if config.embedded_worker else ""))
            return "workers", bool(pids), detail, config.embedded_worker
        try:
            replies = self.celery.control.ping(timeout=0.5) or []
        except Exception as exc:
            return "workers", False, {"error": f"{type(exc).__name__}: {exc}"}, False
        names = sorted(name for reply in replies for name in reply)
        return "workers", bool(names), {"count": len(names), "names": names}, False

    def queue_depth(self) -> metrics.QueueDepth:
        """Return the metrics' collector of the jobs waiting in this service's queue."""
        return metrics.QueueDepth(self.config.worker_queue, self.celery.connection_for_read)

    # -- the worker ----------------------------------------------------------------------------

    def run_worker(self, argv: list[str] | None = None) -> None:
        """Run a Celery worker of these jobs in this process; ``argv`` are extra ``celery worker`` options."""
        from celery.signals import after_setup_logger

        from atoll.service import log_format

        config = self.config

        @after_setup_logger.connect(weak=False)
        def _format_logs(logger: logging.Logger, **_: Any) -> None:  # Celery sets up its own handlers
            log_format.configure(config.log_format, logger)

        args = ["worker", f"--concurrency={config.worker_concurrency}", f"--loglevel={config.log_level}",
                f"--queues={config.worker_queue}", f"--hostname=atoll-{os.getpid()}@%h", *(argv or [])]
        self.celery.worker_main(args)


def _queue_counts(conn: Any, queue_name: str) -> dict[str, int | None]:
    """Return the jobs waiting in ``queue_name`` and its consumers (None each before a worker declared
    the queue: asking for a queue that does not exist is not a broker failure)."""
    try:
        _, waiting, consumers = conn.default_channel.queue_declare(queue_name, passive=True)
    except Exception as exc:  # noqa: BLE001 - RabbitMQ's NOT_FOUND closes the channel; others say so
        if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
            raise
        return {"waiting": None, "consumers": None}
    return {"waiting": waiting, "consumers": consumers}


def _finished(job: Job) -> JobFinished:
    done = {JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed",
            JobStatus.CANCELLED: "been cancelled"}[job.status]
    return JobFinished(f"job {job.job_id} has already {done}; only a queued or running job can be "
                       f"cancelled", job_status=job.status.value)


def _store_reason(exc: Exception) -> str:
    """Return why the job store failed, in words: a StoreUnavailable says it (no space, permission
    denied, out of memory, unreachable) without the server's paths."""
    if isinstance(exc, StoreUnavailable):
        return str(exc)
    return f"the job store is unavailable: {type(exc).__name__}: {exc}"


@contextmanager
def _store_errors() -> Iterator[None]:
    """Turn an error of the job store (not a domain error) into JobStoreUnavailable, logged."""
    try:
        yield
    except JobError:
        raise
    except Exception as exc:
        log.error("job store unavailable: %s", exc)
        raise JobStoreUnavailable(_store_reason(exc)) from None
