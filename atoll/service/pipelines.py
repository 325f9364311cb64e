"""``GET /pipelines`` lists the registered pipelines; ``POST /pipelines/<name>`` runs one.

The body is ``{"data": ..., "kwargs"?: {...}, "callback"?: url, "async"?: bool}``. Without ``callback``
or ``"async": true`` the pipeline runs inside the request, stopped past its ``sync_time_limit`` (504;
:mod:`atoll.service.watchdog`), and the answer is ``{"results": ...}``; otherwise the job goes to
:func:`atoll.service.jobs.submit_job` and the answer is 202.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from atoll.errors import PipelineError
from atoll.service.encoding import EncodingError, find_surrogate, json_depth, to_json
from atoll.service.errors import ApiError, error_response, exposes_tracebacks, public_error
from atoll.service.watchdog import SyncTimeLimitExceeded, sync_time_limit, time_limit_error, watchdog_for

__all__ = ["blueprint", "parse_body", "BODY_FIELDS"]

log = logging.getLogger("atoll.service")

blueprint = Blueprint("pipelines", __name__)

#: the fields a POST body may carry
BODY_FIELDS = ("data", "kwargs", "callback", "async")
_MAX_URL = 2048
#: a JSON escape of a UTF-16 surrogate; only bodies holding one are searched for a lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@blueprint.before_app_request
def _count_in() -> None:
    """Count every request of the app in: a web process the watchdog ends lets them finish first."""
    watchdog_for(current_app.extensions["atoll"]).request_started()


@blueprint.teardown_app_request
def _count_out(_: BaseException | None) -> None:
    """Count a request out (answered, or failed)."""
    watchdog_for(current_app.extensions["atoll"]).request_finished()


@blueprint.get("/pipelines")
def list_pipelines() -> Response:
    """Return ``{"pipelines": [{name, endpoint, stages, kwargs, sig, executor}, ...]}``."""
    service = current_app.extensions["atoll"]
    return current_app.json.response(
        {"pipelines": [reg.describe() for reg in service.pipelines.values()]})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/")
                                              and mimetype.endswith("+json"))


def parse_body() -> dict:
    """Return the request's JSON object, or raise ApiError (415 not JSON, 400 malformed)."""
    if not _is_json(request.mimetype):
        got = request.mimetype or "no Content-Type"
        raise ApiError(415, "UnsupportedMediaType",
                       f"send the body as JSON with 'Content-Type: application/json' (got {got})")
    raw = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not raw.strip():
        raise ApiError(400, "InvalidJSON", 'the body is empty; send {"data": ...}')
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "InvalidJSON", f"the body is not UTF-8 text: {exc.reason} at byte "
                                           f"{exc.start}") from None
    except ValueError as exc:
        raise ApiError(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        limit = current_app.extensions["atoll"].config.max_json_depth
        raise ApiError(400, "TooDeep", f"the body is nested too deeply to parse; arrays and objects may "
                                       f"nest at most max_json_depth = {limit} levels",
                       limit=limit) from None
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequest",
                       f'the body must be a JSON object {{"data": ...}}, got a {_json_type(body)}')
    where = find_surrogate(body) if _SURROGATE_ESCAPE.search(raw) else None
    if where is not None:  # no UTF-8 text can hold it: the results and the job record could not either
        raise ApiError(400, "InvalidJSON", f"{where} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF "
                                           f"escape without its pair), which is not a Unicode character")
    return body


def _read_body(limit: int | None) -> bytes:
    """Return the body; 413 when it is longer than ``limit``, chunked transfer included."""
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)  # Werkzeug refuses a Content-Length above the limit
    stream = request.environ["wsgi.input"]  # chunked: the server ends the stream; count it here
    chunks, size = [], 0
    while True:
        chunk = stream.read(65536 if limit is None else min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            raise RequestEntityTooLarge()


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _validate(body: dict, registered: Any) -> tuple[Any, dict, str | None, bool]:
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise ApiError(400, "InvalidRequest", f"unknown fields {unknown}; a body may carry: "
                                              f"{', '.join(BODY_FIELDS)}")
    if "data" not in body:
        raise ApiError(400, "MissingData", f'the body has no "data" field; send {{"data": ...}} '
                                           f"to run pipeline {registered.name!r}")
    kwargs = body.get("kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ApiError(400, "InvalidKwargs", f'"kwargs" must be a JSON object of runtime keyword '
                                             f"arguments, got a {_json_type(kwargs)}")
    try:
        registered.pipeline.check_kwargs(kwargs)
    except PipelineError as exc:
        raise ApiError(400, "InvalidKwargs", exc.message,
                       expected=list(registered.pipeline.expected_kwargs)) from None
    callback = body.get("callback")
    if callback is not None:
        _check_callback(callback)
    run_async = body.get("async", False)
    if not isinstance(run_async, bool):
        raise ApiError(400, "InvalidRequest", f'"async" must be true or false, got a '
                                              f"{_json_type(run_async)}")
    limit = current_app.extensions["atoll"].config.max_json_depth
    _check_depth(body["data"], "data", limit)
    for key, value in kwargs.items():
        _check_depth(value, f"kwargs.{key}", limit)
    return body["data"], kwargs, callback, run_async


def _check_depth(value: Any, field: str, limit: int) -> None:
    """Refuse a value nested deeper than the limit: deep values exhaust the stack of whatever
    serialises them later (a worker handing a job to its pool, the encoder of the results)."""
    if json_depth(value, stop_above=limit) > limit:
        raise ApiError(400, "TooDeep", f'"{field}" nests arrays and objects more than max_json_depth = '
                                       f"{limit} levels deep", limit=limit)


def _check_callback(callback: Any) -> None:
    if not isinstance(callback, str):
        raise ApiError(400, "InvalidCallback", f'"callback" must be an http(s) URL string, got a '
                                               f"{_json_type(callback)}")
    if len(callback) > _MAX_URL:
        raise ApiError(400, "InvalidCallback", f'"callback" is longer than {_MAX_URL} characters')
    try:
        parts = urlsplit(callback)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ApiError(400, "InvalidCallback", f'"callback" is not a valid URL: {exc}') from None
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(400, "InvalidCallback", f'"callback" must be an absolute http:// or https:// URL '
                                               f"with a host, got {callback[:200]!r}")


@blueprint.post("/pipelines/<name>")
def run(name: str) -> Response:
    """Run pipeline ``name`` on the posted data: 200 ``{"results": ...}``, or 202 for a job."""
    service = current_app.extensions["atoll"]
    registered = service.pipelines.get(name)
    if registered is None:
        known = ", ".join(sorted(service.pipelines)) or "none"
        raise ApiError(404, "PipelineNotFound", f"no pipeline named {name!r}; registered: {known}")
    data, kwargs, callback, run_async = _validate(parse_body(), registered)
    g.atoll_mode = "async" if callback is not None or run_async else "sync"  # for the metrics
    if callback is not None or run_async:
        return _submit(service, name, data, kwargs, callback)
    limit = sync_time_limit(service.config, name)
    try:
        if limit is None:
            results = service.run_pipeline(name, data, kwargs)
        else:  # the watchdog stops the call past its limit
            results = watchdog_for(service).run(name, limit, request.environ,
                                                lambda: service.run_pipeline(name, data, kwargs))
    except SyncTimeLimitExceeded:
        return Response(time_limit_error(name, limit), status=504, mimetype="application/json")
    except PipelineError:
        raise  # 422 / 500 by the error handlers, with stage and item
    except Exception as exc:  # the executor itself failed: say what, keep serving
        log.exception("pipeline %r failed outside its stages", name)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        body = public_error({"traceback": tb, "stage": None, "item": None}, exposes_tracebacks())
        return error_response(500, type(exc).__name__, f"pipeline {name!r} failed: {exc}", **body)
    try:
        text = '{"results":' + to_json(results, path="results") + "}"
    except EncodingError as exc:
        return error_response(500, "EncodingError", f"pipeline {name!r} returned a result that is not "
                                                    f"JSON: {exc}", path=exc.path, type=exc.type_name)
    return Response(text, mimetype="application/json")


def _submit(service: Any, name: str, data: Any, kwargs: dict, callback: str | None) -> Response:
    try:
        from atoll.service.jobs import submit_job
    except ImportError as exc:
        log.error("asynchronous jobs are unavailable: %s", exc)
        return error_response(503, "AsyncUnavailable", f"asynchronous jobs are not available on this "
                                                       f"service: {exc}")
    return submit_job(service, name, data, kwargs, callback)
