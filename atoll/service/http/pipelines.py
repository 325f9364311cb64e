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
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from atoll.dead_letters import RunResult, json_lines
from atoll.encoding import EncodingError, find_surrogate, to_json
from atoll.errors import PipelineError
from atoll.service.datasets.errors import DatasetError
from atoll.service.datasets.refs import parse_ref
from atoll.service.http import jobs
from atoll.service.http.errors import ApiError, error_response, exposes_tracebacks
from atoll.service.http.run_request import RunRequest, json_type
from atoll.service.jobs.model import ErrorBody
from atoll.service.watchdog import SyncTimeLimitExceeded, sync_time_limit, time_limit_error

__all__ = ["blueprint", "parse_body"]

log = logging.getLogger("atoll.service")

blueprint = Blueprint("pipelines", __name__)

#: a JSON escape of a UTF-16 surrogate; only bodies holding one are searched for a lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
#: UTF-8's bytes for U+D800-U+DFFF (not valid UTF-8, but decoded with "surrogatepass"), and the characters
_UTF8_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@blueprint.get("/pipelines")
def list_pipelines() -> Response:
    """Return ``{"pipelines": [{name, endpoint, stages, kwargs, sig, executor}, ...]}``."""
    service = current_app.extensions["atoll"]
    return current_app.json.response(
        {"pipelines": [reg.describe() for reg in service.pipelines.values()]})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: json.loads with a keyword argument builds a new decoder per call; this one is built once
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/")
                                              and mimetype.endswith("+json"))


def parse_body() -> dict:
    """Return the request's JSON object, or raise ApiError (415 not JSON, 400 malformed)."""
    return _parse_body()[0]


def _parse_body() -> tuple[dict, bytes]:
    """Return the request's JSON object and the body's bytes (see :func:`parse_body`)."""
    mimetype = request.mimetype
    if not _is_json(mimetype):
        got = mimetype or "no Content-Type"
        raise ApiError(415, "UnsupportedMediaType",
                       f"send the body as JSON with 'Content-Type: application/json' (got {got})")
    raw = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not raw or raw.isspace():
        raise ApiError(400, "InvalidJSON", 'the body is empty; send {"data": ...}')
    encoding = json.detect_encoding(raw)
    try:  # what json.loads does with bytes
        text = raw.decode(encoding, "surrogatepass")
        body = _DECODER.decode(text)
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
                       f'the body must be a JSON object {{"data": ...}}, got a {json_type(body)}')
    # a lone surrogate comes from an escape, or from the body's own bytes: "surrogatepass" (as json.loads
    # decodes bytes) lets UTF-8's encoding of U+D800-U+DFFF through, and UTF-16's unpaired code units
    raw_surrogate = (_UTF8_SURROGATE.search(raw) if encoding == "utf-8" else _SURROGATE.search(text))
    where = find_surrogate(body) if raw_surrogate or _SURROGATE_ESCAPE.search(raw) else None
    if where is not None:  # no UTF-8 text can hold it: the results and the job record could not either
        raise ApiError(400, "InvalidJSON", f"{where} holds a lone UTF-16 surrogate (U+D800-U+DFFF "
                                           f"without its pair), which is not a Unicode character")
    return body, raw


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


def _element_errors(outcome: RunResult, config: Any) -> dict:
    """Return what a synchronous run dropped: ``{"skipped", "by_stage", "dead_letters"}``, the dead letters
    (``collect``) as many of the first ones as ``dead_letters_max_bytes`` holds as JSON lines."""
    _, kept = json_lines(outcome.errors, config.dead_letters_max_bytes)
    return {"skipped": outcome.skipped, "by_stage": outcome.by_stage,
            "dead_letters": [letter.to_dict() for letter in outcome.errors[:kept]]}


@blueprint.post("/pipelines/<name>")
def run(name: str) -> Response:
    """Run pipeline ``name`` on the posted data: 200 ``{"results": ...}``, or 202 for a job."""
    service = current_app.extensions["atoll"]
    registered = service.get(name)  # UnknownPipeline: 404 PipelineNotFound
    body, raw = _parse_body()
    run_request = RunRequest.parse(body, registered.pipeline, name, service.config.max_json_depth, raw,
                                   registered.on_error)
    g.atoll_mode = "async" if run_request.is_job else "sync"  # for the metrics
    ref = parse_ref(run_request.data, service.config)  # data by reference: checked here, read where it runs
    reads = ref.dataset_ids if ref is not None else ()
    for dataset_id in reads:  # 404 now for an unknown (or another caller's) dataset
        service.datasets().get(dataset_id, getattr(g, "caller", None))
    if run_request.is_job:
        response = jobs.submit_response(run_request, body)
        for dataset_id in reads:  # the job reads them: DELETE answers 409 while it is queued or running
            service.datasets().add_use(dataset_id, response.get_json()["job_id"])
        return response
    owner = getattr(getattr(g, "caller", None), "name", None)
    if run_request.results_to == "dataset":  # 429 before running when the caller keeps all it may
        service.datasets().stored_bytes_left(owner)
    limit = sync_time_limit(service.config, name)
    try:
        if limit is None:
            results = service.run_request(run_request, owner)
        else:  # the watchdog stops the call past its limit
            results = current_app.extensions["atoll.watchdog"].run(
                name, limit, request.environ, lambda: service.run_request(run_request, owner))
    except SyncTimeLimitExceeded:
        return Response(time_limit_error(name, limit), status=504, mimetype="application/json")
    except (PipelineError, DatasetError):
        raise  # 422 / 500 by the error handlers, with stage and item; a refused data reference
    except Exception as exc:  # the executor itself failed: say what, keep serving
        log.exception("pipeline %r failed outside its stages", name)
        error = ErrorBody.from_exception(exc, pipeline=name, expose=exposes_tracebacks())
        error.message = f"pipeline {name!r} failed: {exc}"
        return error_response(500, **error.public(exposes_tracebacks()))
    dropped = ""
    if isinstance(results, RunResult):  # an on_error policy: what it dropped goes with the results
        dropped = ',"element_errors":' + to_json(_element_errors(results, service.config))
        results = results.results
    if run_request.results_to == "dataset":  # written while it ran: results is the Dataset
        text = to_json({"results_dataset": results.dataset_id, "dataset": results.public()})
        return Response(text[:-1] + dropped + "}", mimetype="application/json")
    try:
        text = '{"results":' + to_json(results, path="results") + dropped + "}"
    except EncodingError as exc:
        return error_response(500, "EncodingError", f"pipeline {name!r} returned a result that is not "
                                                    f"JSON: {exc}", path=exc.path, type=exc.type_name)
    return Response(text, mimetype="application/json")
