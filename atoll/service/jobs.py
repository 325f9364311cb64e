"""Jobs: submitting an asynchronous pipeline run (HTTP 202) and reading its state (``GET /jobs/<id>``).

A job's record lives in the Celery result backend under its id from the moment it is accepted:

=========  ==============================================================================
status     meaning
=========  ==============================================================================
queued     accepted: the broker confirmed the message, no worker has started it yet
running    a worker has run the pipeline for ``job_running_after`` seconds (again, if an earlier
           worker died); shorter jobs go from queued to their outcome
succeeded  ``results`` holds the pipeline's JSON results
failed     ``error`` holds ``{"name", "message", "traceback", "stage", "item"}``
=========  ==============================================================================

Each record also has ``submitted_at``, ``started_at`` and ``finished_at`` (ISO 8601, UTC) and is kept
for ``result_expires`` seconds, whether or not the callback could be delivered. A job with a callback
URL has ``callback``: ``{"url", "state", "attempts", "last_error"}`` where state is ``pending``,
``delivered``, ``failed`` (the URL was refused at delivery) or ``abandoned`` (every retry failed);
without one, ``callback`` is null.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Blueprint, Response, current_app, url_for

from atoll.service import request_ids, tasks
from atoll.service.callbacks import CallbackURLError, callback_state, check_callback_url, stored_callback
from atoll.service.errors import error_response, public_error
from atoll.service.logs import REQUEST_ID_HEADER
from atoll.service.transport import live_consumers, redact_url

__all__ = ["submit_job", "job_status", "blueprint", "install", "broker_check", "worker_check"]

log = logging.getLogger("atoll.jobs")

blueprint = Blueprint("atoll_jobs", __name__)

_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def submit_job(service: Any, name: str, data: Any, kwargs: dict | None,
               callback: str | None) -> Response:
    """Queue pipeline ``name`` on ``data``; return 202 ``{"job_id", "status_url"}`` once the broker
    confirmed it, 400 for a refused callback URL, or 503 when the broker (or result store) is down."""
    config = service.config
    if callback is not None:
        try:
            check_callback_url(callback, config)
        except CallbackURLError as exc:
            return error_response(400, "CallbackRefused", str(exc))
    app = tasks.get_celery(service)
    job_id = str(uuid.uuid4())
    submitted = tasks.now()
    record = {"job_id": job_id, "pipeline": name, "status": "queued", "results": None, "error": None,
              "submitted_at": submitted, "started_at": None, "finished_at": None,
              "callback": callback_state(callback) if callback is not None else None,
              "request_id": request_ids.current()}
    try:  # the record first: a job id is known from the moment a worker could start it
        app.backend.store_result(job_id, record, tasks.QUEUED)
    except Exception as exc:
        log.error("job store unavailable: %s", exc)
        return error_response(503, "ResultStoreUnavailable", f"the job store is unavailable, the job "
                              f"was not queued: {type(exc).__name__}: {exc}")
    soft, hard = tasks.time_limits(config, name)
    try:
        app.atoll_tasks["pipeline"].apply_async(
            (name, data, kwargs or {}, callback, submitted), task_id=job_id, queue=config.worker_queue,
            soft_time_limit=soft, time_limit=hard,
            headers={REQUEST_ID_HEADER: request_ids.current()})  # the worker's log lines show it
    except Exception as exc:  # kombu raises OperationalError, socket errors or its own ChannelErrors
        _forget(app, job_id)
        broker = redact_url(config.worker_broker) if config.worker_broker else "the embedded broker"
        log.error("broker %s unavailable, job refused: %s", broker, exc)
        return error_response(503, "BrokerUnavailable", f"the job broker ({broker}) did not accept the "
                              f"job, nothing was queued; retry later ({type(exc).__name__}: {exc})")
    status_url = url_for("atoll_jobs.get_job", job_id=job_id, _external=True)
    response = current_app.json.response({"job_id": job_id, "status_url": status_url})
    response.status_code = 202
    response.headers["Location"] = status_url
    return response


def _forget(app: Any, job_id: str) -> None:
    try:
        app.backend.forget(job_id)
    except Exception as exc:  # the store may be down too; the record then expires on its own
        log.warning("job %s: could not remove the record of a refused job: %s", job_id, exc)


def job_status(service: Any, job_id: str) -> dict | None:
    """Return the record of job ``job_id`` (see the module docstring), or None for an unknown id."""
    if not _JOB_ID.match(job_id):
        return None
    app = tasks.get_celery(service)
    meta = app.backend.get_task_meta(job_id, cache=False)
    state, result = meta.get("status"), meta.get("result")
    if state in (tasks.QUEUED, "STARTED", "SUCCESS") and isinstance(result, dict):
        if isinstance(result.get("error"), dict):  # the web's setting rules, whatever the worker's
            result["error"] = public_error(result["error"], service.config.expose_tracebacks)
        if result.get("callback"):  # the delivery's latest outcome is kept beside the record
            result["callback"] = stored_callback(app.backend, job_id) or result["callback"]
        return result
    if state == "FAILURE":  # the worker process was stopped by the hard time limit
        error = {"name": type(result).__name__, "message": str(result),
                 "traceback": meta.get("traceback") or "", "stage": None, "item": None}
        return {"job_id": job_id, "status": "failed", "results": None,
                "error": public_error(error, service.config.expose_tracebacks),
                "finished_at": _iso(meta.get("date_done"))}
    return None


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """Answer the job's record, or 404 for an id this service never issued (or whose record expired)."""
    service = current_app.extensions["atoll"]
    try:
        record = job_status(service, job_id)
    except Exception as exc:
        log.error("job store unavailable: %s", exc)
        return error_response(503, "ResultStoreUnavailable", f"the job store is unavailable: "
                              f"{type(exc).__name__}: {exc}")
    if record is None:
        return error_response(404, "UnknownJob", f"no job {job_id!r}: never submitted here, or its "
                              f"record expired (result_expires = {service.config.result_expires} s)")
    return current_app.json.response(record)


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
    """Add the jobs blueprint and the broker/worker health checks to ``service`` (once)."""
    if blueprint not in service.blueprints:
        service.blueprints.append(blueprint)
        service.health_checks.append(lambda: broker_check(service))
        service.health_checks.append(lambda: worker_check(service))
