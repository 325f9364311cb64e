"""Jobs over HTTP: submit (``POST /pipelines/<name>`` with a callback or ``"async": true``), read, list,
cancel, and fetch a job's large results and its output.

=====================================  ==========================================================
``GET /jobs``                          newest first; ``status=``, ``pipeline=``, ``limit=`` (50, at
                                       most 500), ``cursor=``; ``{"jobs": [...], "next": cursor}``
``GET /jobs/<id>``                     the job (:class:`~atoll.service.model.Job`)
``DELETE /jobs/<id>``                  cancel: 200 with the cancelled job, 409 when it had finished
``GET /jobs/<id>/results``             ``{"results": ...}`` of a job whose record has ``results_url``
``GET /jobs/<id>/logs``                what the pipeline printed and logged, JSON lines
=====================================  ==========================================================

:class:`Jobs` does the work; it is given the Celery app and the config, nothing else. A job is stored
(``queued``) before its message is sent, and the answer 202 is sent once the broker confirmed the
message. Cancelling writes the ``cancelled`` record at once, sends the callback (status
``cancelled``) and asks the workers, through Celery's ``revoke``, to drop the message if it is still
queued, or to stop the run (``terminate`` with ``SIGUSR1``: the task gets ``SoftTimeLimitExceeded``,
and the executors stop their work in flight: local pool processes, Spark job group).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for

from atoll.config import Config
from atoll.service import metrics, request_ids, tasks
from atoll.service.callbacks import CallbackURLError, check_callback_url
from atoll.service.errors import RETRY_AFTER_UNAVAILABLE, ApiError
from atoll.service.logs import REQUEST_ID_HEADER
from atoll.service.model import CallbackState, Job, JobStatus, RunRequest, is_job_id, new_job_id, now
from atoll.service.store import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    BadCursor,
    JobStore,
    ListingUnsupported,
    StoreUnavailable,
    decode_cursor,
)
from atoll.service.transport import live_consumers, redact_url

__all__ = ["Jobs", "jobs_of", "submit_response", "blueprint", "install", "broker_check", "worker_check",
           "store_check",
           "RETRY_AFTER_ACCEPTED", "RETRY_AFTER_UNAVAILABLE", "IDEMPOTENCY_HEADER"]

log = logging.getLogger("atoll.jobs")

blueprint = Blueprint("atoll_jobs", __name__)

#: seconds a client should wait before polling a job it was just given (the 202's Retry-After)
RETRY_AFTER_ACCEPTED = 1
IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_KEY = 255


class Jobs:
    """Submits, reads, lists and cancels the jobs of Celery ``app`` configured by ``config``."""

    def __init__(self, app: Any, config: Config):
        self.app = app
        self.config = config
        self.store = JobStore(app)

    def submit(self, run: RunRequest, status_url: Callable[[str], str],
               idempotency: tuple[str, str] | None = None) -> tuple[Job, bool]:
        """Queue ``run``; return (the job, True) once the broker confirmed it, or (the earlier job,
        False) for an ``idempotency`` (key id, body hash) already used with the same body.

        Raises ApiError: 400 refused callback URL, 422 key reused with another body, 503 broker or
        job store down (with Retry-After).
        """
        config = self.config
        if run.callback is not None:
            try:
                check_callback_url(run.callback, config)
            except CallbackURLError as exc:
                raise ApiError(400, "CallbackRefused", str(exc)) from None
        job_id = new_job_id()
        job = Job(job_id, run.pipeline, submitted_at=now(), request_id=request_ids.current(),
                  callback=CallbackState(run.callback) if run.callback is not None else None,
                  status_url=status_url(job_id))
        if idempotency is not None:
            earlier = self._claim(idempotency, job_id)
            if earlier is not None:
                return earlier, False
        try:  # the record first: a job id is known from the moment a worker could start it
            self.store.save(job)
        except Exception as exc:
            self._release(idempotency)
            log.error("job store unavailable: %s", exc)
            raise _unavailable("ResultStoreUnavailable", f"the job was not queued: {_store_reason(exc)}") \
                from None
        soft, hard = tasks.time_limits(config, run.pipeline)
        try:
            self.app.atoll_tasks["pipeline"].apply_async(
                (run.pipeline, run.data, run.kwargs, run.callback, job.submitted_at), task_id=job_id,
                queue=config.worker_queue, soft_time_limit=soft, time_limit=hard,
                headers={REQUEST_ID_HEADER: job.request_id})  # the worker's log lines show it
        except Exception as exc:  # kombu raises OperationalError, socket errors or its own ChannelErrors
            self._forget(job_id)
            self._release(idempotency)
            broker = redact_url(config.worker_broker) if config.worker_broker else "the embedded broker"
            log.error("broker %s unavailable, job refused: %s", broker, exc)
            raise _unavailable("BrokerUnavailable", f"the job broker ({broker}) did not accept the job, "
                                                    f"nothing was queued; retry later "
                                                    f"({type(exc).__name__}: {exc})") from None
        return job, True

    def _claim(self, idempotency: tuple[str, str], job_id: str) -> Job | None:
        key_id, body_hash = idempotency
        try:
            earlier = self.store.claim(key_id, {"job_id": job_id, "body": body_hash})
        except Exception as exc:
            raise _unavailable("ResultStoreUnavailable", f"the job was not queued: {_store_reason(exc)}") \
                from None
        if earlier is None:
            return None
        if earlier.get("body") != body_hash:
            raise ApiError(422, "IdempotencyKeyReused", f"the {IDEMPOTENCY_HEADER} was used before with "
                                                        f"another request body; use a new key for a new "
                                                        f"request", job_id=earlier.get("job_id"))
        job = self.store.load(str(earlier.get("job_id")))
        if job is None:  # claimed by a request still being queued, or its record expired
            raise ApiError(409, "IdempotencyKeyInUse", f"the {IDEMPOTENCY_HEADER} belongs to job "
                                                       f"{earlier.get('job_id')} whose record is not "
                                                       f"there (still being queued, or expired); retry",
                           headers={"Retry-After": str(RETRY_AFTER_ACCEPTED)})
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

    def cancel(self, job_id: str) -> Job:
        """Cancel job ``job_id`` and return it; ApiError 404 unknown, 409 finished (also when it
        finished while being cancelled: the stored outcome stands)."""
        job = self.get(job_id)
        if job is None:
            raise _unknown(job_id, self.config)
        if job.status.finished:
            raise _finished(job)
        job.cancel()
        if not self.store.save(job):  # it finished meanwhile
            raise _finished(self.get(job_id) or job)
        log.info("job %s: cancelled", job_id)
        metrics.observe_job(job.pipeline or "", job.status.value, None)
        tasks.send_outcome(job, self.app.atoll_context, inline=False)
        try:  # drop the queued message; stop the run: SIGUSR1 raises SoftTimeLimitExceeded in the task
            self.app.control.revoke(job_id, terminate=True, signal="SIGUSR1")
        except Exception as exc:  # the record says cancelled: a worker that starts it skips it
            log.warning("job %s: could not ask the workers to stop it: %s", job_id, exc)
        return job

    def list(self, status: JobStatus | None, pipeline: str | None, limit: int,
             cursor: str | None) -> tuple[list[Job], str | None]:
        """Return a page of jobs, newest first, and the cursor of the next one."""
        return self.store.list(status, pipeline, limit, decode_cursor(cursor) if cursor else None)


def jobs_of(service: Any) -> Jobs:
    """Return the :class:`Jobs` of ``service`` (made with its Celery app on first use)."""
    jobs = service.__dict__.get("_jobs")
    if jobs is None:
        jobs = service.__dict__["_jobs"] = Jobs(tasks.get_celery(service), service.config)
    return jobs


def _unavailable(name: str, message: str) -> ApiError:
    return ApiError(503, name, message, headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})


def _finished(job: Job) -> ApiError:
    done = {JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed",
            JobStatus.CANCELLED: "been cancelled"}[job.status]
    return ApiError(409, "JobFinished", f"job {job.job_id} has already {done}; only a queued or running job "
                                        f"can be cancelled", job_status=job.status.value)


def _unknown(job_id: str, config: Config) -> ApiError:
    return ApiError(404, "UnknownJob", f"no job {job_id!r}: never submitted here, or its record expired "
                                       f"(result_expires = {config.result_expires} s)")


def _idempotency(body: dict) -> tuple[str, str] | None:
    """Return (key id, body hash) of the request's Idempotency-Key, per caller, or None without one."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > _MAX_KEY:
        raise ApiError(400, "InvalidIdempotencyKey", f"{IDEMPOTENCY_HEADER} must be 1 to {_MAX_KEY} "
                                                     f"characters")
    caller = request.headers.get("Authorization", "")  # the same key of two callers: two jobs
    key_id = hashlib.sha256(f"{caller}\0{request.path}\0{key}".encode()).hexdigest()
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return key_id, body_hash


def submit_response(service: Any, run: RunRequest, body: dict) -> Response:
    """Queue ``run`` for ``service``; answer 202 ``{"job_id", "status_url"}`` with ``Location``."""
    jobs = jobs_of(service)
    job, _ = jobs.submit(run, lambda job_id: url_for("atoll_jobs.get_job", job_id=job_id, _external=True),
                         _idempotency(body))
    response = current_app.json.response({"job_id": job.job_id, "status_url": job.status_url})
    response.status_code = 202
    response.headers["Location"] = job.status_url
    response.headers["Retry-After"] = str(RETRY_AFTER_ACCEPTED)
    return response


def _store_reason(exc: Exception) -> str:
    """Return why the job store failed, in words: a StoreUnavailable says it (no space, permission
    denied, out of memory, unreachable) without the server's paths."""
    if isinstance(exc, StoreUnavailable):
        return str(exc)
    return f"the job store is unavailable: {type(exc).__name__}: {exc}"


def _store_down(exc: Exception) -> ApiError:
    log.error("job store unavailable: %s", exc)
    return _unavailable("ResultStoreUnavailable", _store_reason(exc))


def _job_or_404(service: Any, job_id: str) -> Job:
    try:
        job = jobs_of(service).get(job_id)
    except Exception as exc:
        raise _store_down(exc) from None
    if job is None:
        raise _unknown(job_id, service.config)
    return job


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """Answer the job's record, or 404 for an id this service never issued (or whose record expired)."""
    service = current_app.extensions["atoll"]
    job = _job_or_404(service, job_id)
    return current_app.json.response(job.public(service.config.expose_tracebacks))


@blueprint.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel the job: 200 with its record (status cancelled), 409 when it had finished, 404 unknown."""
    service = current_app.extensions["atoll"]
    try:
        job = jobs_of(service).cancel(job_id)
    except ApiError:
        raise
    except Exception as exc:
        raise _store_down(exc) from None
    return current_app.json.response(job.public(service.config.expose_tracebacks))


@blueprint.get("/jobs")
def list_jobs() -> Response:
    """Answer ``{"jobs": [...], "next": cursor or null}``, newest first (items without results)."""
    service = current_app.extensions["atoll"]
    args = request.args
    unknown = sorted(set(args) - {"status", "pipeline", "limit", "cursor"})
    if unknown:
        raise ApiError(400, "InvalidQuery", f"unknown query parameters {unknown}; GET /jobs takes status, "
                                            f"pipeline, limit and cursor")
    status = None
    if "status" in args:
        try:
            status = JobStatus(args["status"])
        except ValueError:
            raise ApiError(400, "InvalidQuery", f"status must be one of "
                                                f"{', '.join(s.value for s in JobStatus)}; got "
                                                f"{args['status'][:40]!r}") from None
    limit = LIST_LIMIT_DEFAULT
    if "limit" in args:
        text = args["limit"]
        if not text.isdigit() or not 1 <= int(text) <= LIST_LIMIT_MAX:
            raise ApiError(400, "InvalidQuery", f"limit must be a whole number from 1 to {LIST_LIMIT_MAX}; "
                                                f"got {text[:40]!r}")
        limit = int(text)
    try:
        found, after = jobs_of(service).list(status, args.get("pipeline"), limit, args.get("cursor"))
    except BadCursor as exc:
        raise ApiError(400, "InvalidCursor", str(exc)) from None
    except ListingUnsupported as exc:
        raise ApiError(501, "ListingUnsupported", str(exc)) from None
    except Exception as exc:
        raise _store_down(exc) from None
    expose = service.config.expose_tracebacks
    return current_app.json.response({"jobs": [job.public(expose, with_results=False) for job in found],
                                      "next": after})


@blueprint.get("/jobs/<job_id>/results")
def get_results(job_id: str) -> Response:
    """Answer ``{"results": ...}`` of a succeeded job (inline or kept aside); 409 before it succeeded."""
    service = current_app.extensions["atoll"]
    job = _job_or_404(service, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise ApiError(409, "NoResults", f"job {job_id} is {job.status.value}: results exist once it "
                                         f"succeeded", job_status=job.status.value)
    if job.results_url is None:
        return current_app.json.response({"results": job.results})
    try:
        text = jobs_of(service).store.get_aside(job_id, "results")
    except Exception as exc:
        raise _store_down(exc) from None
    if text is None:
        raise ApiError(404, "ResultsExpired", f"the results of job {job_id} are no longer kept")
    return Response('{"results":' + text + "}", mimetype="application/json")


@blueprint.get("/jobs/<job_id>/logs")
def get_logs(job_id: str) -> Response:
    """Answer what the job's pipeline printed and logged: JSON lines (``application/x-ndjson``), one
    ``{"time", "stream", "message"}`` object per line (``level`` and ``logger`` for log records);
    empty while the job runs and when it printed nothing."""
    service = current_app.extensions["atoll"]
    _job_or_404(service, job_id)
    try:
        text = jobs_of(service).store.get_aside(job_id, "logs")
    except Exception as exc:
        raise _store_down(exc) from None
    return Response(text or "", mimetype="application/x-ndjson")


def broker_check(service: Any) -> tuple[str, bool, dict, bool]:
    """Health check: can the broker be reached? Required: without it no job is accepted."""
    app = tasks.get_celery(service)
    config = service.config
    detail: dict[str, Any] = {"url": redact_url(config.worker_broker) if config.worker_broker
                              else "embedded", "queue": config.worker_queue}
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        detail["error"] = f"{type(exc).__name__}: {exc}"
        return "broker", False, detail, True
    return "broker", True, detail, True


def store_check(service: Any) -> tuple[str, bool, dict, bool]:
    """Health check: can job records be written? Required: without it no job is accepted, and
    running jobs wait to store their outcome.

    Writes, reads back and removes a probe record of about a job record's size, at most once a second
    per web process (:meth:`~atoll.service.store.JobStore.writable`); ``state`` says ``writable``, or
    why not in one word: ``full``, ``denied``, ``unreachable`` or ``failing``.
    """
    config = service.config
    detail: dict[str, Any] = {"url": redact_url(config.worker_backend) if config.worker_backend
                              else "embedded"}
    failure = jobs_of(service).store.writable()
    if failure is not None:
        detail.update(state=failure.cause, error=str(failure))
        return "store", False, detail, True
    detail["state"] = "writable"
    return "store", True, detail, True


def worker_check(service: Any) -> tuple[str, bool, dict, bool]:
    """Health check: how many workers consume the service's queue.

    On RabbitMQ, the workers that answer a ping; not required, jobs wait in the queue. On the embedded
    broker, the living processes consuming the queue (files read, no message sent); required when
    ``embedded_worker`` says that a worker runs beside the web process, since then no other will.
    """
    app = tasks.get_celery(service)
    config = service.config
    if tasks.is_embedded(config):
        pids = sorted(c["pid"] for c in live_consumers(app.conf.broker_transport_options)
                      if config.worker_queue in c["queues"])
        detail: dict[str, Any] = {"count": len(pids), "pids": pids}
        if not pids:
            detail["error"] = (f"no worker is running for queue {config.worker_queue!r}: jobs are "
                               f"accepted and wait until one runs" +
                               ("; `atoll serve` restarts its embedded worker within seconds"
                                if config.embedded_worker else ""))
        return "workers", bool(pids), detail, config.embedded_worker
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception as exc:
        return "workers", False, {"error": f"{type(exc).__name__}: {exc}"}, False
    names = sorted(name for reply in replies for name in reply)
    return "workers", bool(names), {"count": len(names), "names": names}, False


def install(service: Any) -> None:
    """Add the jobs blueprint and the broker, store and worker health checks to ``service`` (once)."""
    if blueprint not in service.blueprints:
        service.blueprints.append(blueprint)
        service.health_checks.append(lambda: broker_check(service))
        service.health_checks.append(lambda: store_check(service))
        service.health_checks.append(lambda: worker_check(service))
