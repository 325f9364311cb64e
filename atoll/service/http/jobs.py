"""Jobs over HTTP: submit (``POST /pipelines/<name>`` with a callback or ``"async": true``), read, list,
cancel, and fetch a job's large results and its output.

=====================================  ==========================================================
``GET /jobs``                          newest first; ``status=``, ``pipeline=``, ``caller=`` (an
                                       admin's filter), ``limit=`` (50, at most 500), ``cursor=``;
                                       ``{"jobs": [...], "next": cursor}``
``GET /jobs/<id>``                     the job (:class:`~atoll.service.jobs.model.Job`)
``DELETE /jobs/<id>``                  cancel: 200 with the cancelled job, 409 when it had finished
``GET /jobs/<id>/results``             ``{"results": ...}`` of a job whose record has ``results_url``
``GET /jobs/<id>/logs``                what the pipeline printed and logged, JSON lines
``GET /jobs/<id>/errors``              the dead letters of ``on_error: collect``, JSON lines
``POST /jobs/<id>/rerun``              a new job with a finished job's request: 202 as a submission,
                                       409 before it finished, 410 when its request is not kept
=====================================  ==========================================================

With named callers (:mod:`atoll.service.http.auth`), a caller sees, cancels and re-runs only its own
jobs: another caller's job id answers 404, as an unknown one. An admin sees every job.

The work is the job system's (:class:`~atoll.service.jobs.system.JobSystem`, in
``app.extensions["atoll.jobs"]``); its refusals are answered by the table of
:mod:`atoll.service.http.errors`. Here the query and the headers are read, and answers written.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Blueprint, Response, current_app, g, request, url_for

from atoll.service import request_ids
from atoll.service.http.errors import RETRY_AFTER_ACCEPTED, ApiError
from atoll.service.http.run_request import RunRequest
from atoll.service.jobs.errors import AsyncUnavailable
from atoll.service.jobs.model import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, JobStatus
from atoll.service.jobs.system import IDEMPOTENCY_HEADER, JobSystem

__all__ = ["blueprint", "submit_response", "job_system", "IDEMPOTENCY_HEADER"]

blueprint = Blueprint("atoll_jobs", __name__)

_MAX_KEY = 255


def job_system() -> JobSystem:
    """Return the job system of the app serving this request; raise AsyncUnavailable without one."""
    system = current_app.extensions.get("atoll.jobs")
    if system is None:
        raise AsyncUnavailable(f"asynchronous jobs are not available on this service: "
                               f"{current_app.extensions.get('atoll.jobs.missing', 'no job system')}")
    return system


def _caller() -> Any:
    """Return the request's caller: None without named callers."""
    return getattr(g, "caller", None)


def _owner() -> str | None:
    caller = _caller()
    return caller.name if caller is not None else None


def _expose() -> bool:
    return bool(current_app.extensions["atoll"].config.expose_tracebacks)


def _idempotency(body: dict) -> tuple[str, str] | None:
    """Return (key id, body hash) of the request's Idempotency-Key, per caller, or None without one."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > _MAX_KEY:
        raise ApiError(400, "InvalidIdempotencyKey", f"{IDEMPOTENCY_HEADER} must be 1 to {_MAX_KEY} "
                                                     f"characters")
    # the same key of two callers: two jobs (a named caller's name: its old and new token share keys)
    caller = f"caller {_owner()}" if _owner() is not None else request.headers.get("Authorization", "")
    key_id = hashlib.sha256(f"{caller}\0{request.path}\0{key}".encode()).hexdigest()
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return key_id, body_hash


def submit_response(run: RunRequest, body: dict) -> Response:
    """Queue ``run``; answer 202 ``{"job_id", "status_url"}`` with ``Location``."""
    system = job_system()
    job, _ = system.submit(run.job_message(),
                           lambda job_id: url_for("atoll_jobs.get_job", job_id=job_id, _external=True),
                           _idempotency(body), request_id=request_ids.current(), owner=_owner())
    return _accepted(job.job_id, job.status_url)


def _accepted(job_id: str, status_url: str | None) -> Response:
    """Answer 202 ``{"job_id", "status_url"}`` with ``Location`` and ``Retry-After``."""
    response = current_app.json.response({"job_id": job_id, "status_url": status_url})
    response.status_code = 202
    response.headers["Location"] = status_url
    response.headers["Retry-After"] = str(RETRY_AFTER_ACCEPTED)
    return response


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """Answer the job's record, or 404 for an id this service never issued (or whose record expired)."""
    return current_app.json.response(job_system().job(job_id, _caller()).public(_expose()))


@blueprint.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel the job: 200 with its record (status cancelled), 409 when it had finished, 404 unknown."""
    return current_app.json.response(job_system().cancel(job_id, _caller()).public(_expose()))


@blueprint.post("/jobs/<job_id>/rerun")
def rerun_job(job_id: str) -> Response:
    """Queue a new job with finished job ``job_id``'s request (its record's ``rerun_of`` says so):
    202 as a submission; an ``Idempotency-Key`` makes it idempotent as a submission's."""
    job, _ = job_system().rerun(job_id, lambda new_id: url_for("atoll_jobs.get_job", job_id=new_id,
                                                               _external=True),
                                _idempotency({"rerun_of": job_id}), request_id=request_ids.current(),
                                caller=_caller())
    return _accepted(job.job_id, job.status_url)


@blueprint.get("/jobs")
def list_jobs() -> Response:
    """Answer ``{"jobs": [...], "next": cursor or null}``, newest first (items without results)."""
    args = request.args
    unknown = sorted(set(args) - {"status", "pipeline", "caller", "limit", "cursor"})
    if unknown:
        raise ApiError(400, "InvalidQuery", f"unknown query parameters {unknown}; GET /jobs takes status, "
                                            f"pipeline, caller, limit and cursor")
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
    found, after = job_system().list(status, args.get("pipeline"), limit, args.get("cursor"), _caller(),
                                     args.get("caller"))
    expose = _expose()
    return current_app.json.response({"jobs": [job.public(expose, with_results=False) for job in found],
                                      "next": after})


@blueprint.get("/jobs/<job_id>/results")
def get_results(job_id: str) -> Response:
    """Answer ``{"results": ...}`` of a succeeded job (inline or kept aside); 409 before it succeeded."""
    job, text = job_system().results(job_id, _caller())
    if text is None:
        return current_app.json.response({"results": job.results})
    return Response('{"results":' + text + "}", mimetype="application/json")


@blueprint.get("/jobs/<job_id>/errors")
def get_errors(job_id: str) -> Response:
    """The dead letters of a job run with ``on_error: collect``, JSON lines."""
    return Response(job_system().dead_letters(job_id, _caller()), mimetype="application/x-ndjson")


@blueprint.get("/jobs/<job_id>/logs")
def get_logs(job_id: str) -> Response:
    """Answer what the job's pipeline printed and logged: JSON lines (``application/x-ndjson``), one
    ``{"time", "stream", "message"}`` object per line (``level`` and ``logger`` for log records);
    empty while the job runs and when it printed nothing."""
    return Response(job_system().logs(job_id, _caller()), mimetype="application/x-ndjson")
