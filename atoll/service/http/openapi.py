"""``GET /openapi.json``: the OpenAPI 3.1 description of the service, with every registered pipeline as
a path of its own and its runtime kwargs as required properties of ``kwargs``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from atoll import __version__
from atoll.operators import OPERATORS
from atoll.service.jobs.model import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, JobStatus, openapi_schemas

__all__ = ["blueprint", "build_spec"]

blueprint = Blueprint("openapi", __name__)

_REF = "#/components/schemas/"
_ANY: dict = {}


def _ref(name: str) -> dict:
    return {"$ref": _REF + name}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


_SCHEMAS: dict[str, Any] = {
    "Stage": {
        "type": "object",
        "description": "Where in the pipeline an error happened.",
        "required": ["index", "operator", "function", "path"],
        "properties": {
            "index": {"type": "integer"},
            "operator": {"type": "string"},
            "function": {"type": "string"},
            "path": {"type": "string", "description": "e.g. '1/fork[0]/0' for a nested stage"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": _ref("ErrorDetail")},
    },
    "Results": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"description": "the pipeline's results as JSON"}},
    },
    "JobAccepted": {
        "type": "object",
        "required": ["job_id", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "status_url": {"type": "string", "description": "where GET answers the job's status"},
        },
        "additionalProperties": True,
    },
    "Health": {
        "type": "object",
        "description": "With auth_tokens configured, a request without a valid token gets only status.",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
            "version": {"type": "string"},
            "checks": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["ok", "required"],
                    "properties": {"ok": {"type": "boolean"}, "required": {"type": "boolean"}},
                    "additionalProperties": True,
                },
            },
        },
    },
    "GraphStage": {
        "type": "object",
        "description": "One stage of a pipeline's graph; fork, forkMap, split and splitMap list each "
                       "branch's own stages in branches (empty for every other operator). union, join, "
                       "leftOuterJoin and cogroup combine two inputs: the two results of the fork before "
                       "them (function '2 inputs'), or their input and a side input, the runtime kwarg in "
                       "kwargs (function 'input + side <name>').",
        "required": ["operator", "function", "bound", "kwargs", "branches"],
        "properties": {
            "operator": {"type": "string", "enum": sorted(OPERATORS),
                         "description": "the DSL operator (docs/operators.rst)"},
            "function": {"type": "string",
                         "description": "the stage's function; for an operator with parameters "
                                        "(top, takeOrdered, take, sortBy, sortByKey, foldByKey, "
                                        "aggregateByKey, combineByKey) those parameters as text, e.g. "
                                        "'10, key=len'; empty for one with neither (count, distinct, "
                                        "countByValue, ...)"},
            "bound": {"type": "array", "items": {"type": "string"},
                      "description": "arguments bound when the pipeline was defined, as text"},
            "kwargs": {"type": "array", "items": {"type": "string"},
                       "description": "runtime kwargs this stage needs"},
            "branches": {"type": "array", "items": {"type": "array", "items": _ref("GraphStage")}},
        },
    },
    "PipelineInfo": {
        "type": "object",
        "required": ["name", "endpoint", "stages", "graph", "kwargs", "sig"],
        "properties": {
            "name": {"type": "string"},
            "endpoint": {"type": "string"},
            "stages": {"type": "array", "items": {"type": "string"}},
            "graph": {"type": "array", "items": _ref("GraphStage")},
            "kwargs": {"type": "array", "items": {"type": "string"}},
            "sig": {"type": "string"},
            "executor": {"type": "string"},
            "retries": {"type": ["object", "null"], "description": "how its asynchronous jobs are retried "
                        "(max attempts, the exception names retried, backoff, backoff_max, jitter), or null",
                        "properties": {"max": {"type": "integer", "minimum": 1},
                                       "on": {"type": "array", "items": {"type": "string"}},
                                       "backoff": {"type": "number"}, "backoff_max": {"type": "number"},
                                       "jitter": {"type": "boolean"}}},
            "on_error": {"type": ["object", "null"], "description": "what its runs do with elements whose "
                         "stage raises unless a call says (on_error: fail, skip or collect; max_errors), "
                         "or null (fail)",
                         "properties": {"on_error": {"enum": ["fail", "skip", "collect"]},
                                        "max_errors": {"type": ["number", "null"]}}},
        },
    },
    "DeadLetter": {
        "type": "object",
        "description": "An element dropped by on_error collect: the element (its repr, with element_repr, "
                       "when it is not JSON), the stage that failed, the error's name, message and the "
                       "end of its traceback.",
        "required": ["element", "stage", "error", "message", "traceback"],
        "properties": {
            "element": {}, "element_repr": {"type": "boolean"}, "stage": _ref("Stage"),
            "error": {"type": "string"}, "message": {"type": "string"}, "traceback": {"type": "string"},
        },
    },
    "ElementErrors": {
        "type": "object",
        "description": "What a synchronous run under on_error skip or collect dropped: how many elements, "
                       "per stage path, and (collect) the first dead letters, within dead_letters_max_bytes.",
        "required": ["skipped", "by_stage", "dead_letters"],
        "properties": {
            "skipped": {"type": "integer", "minimum": 0},
            "by_stage": {"type": "object", "additionalProperties": {"type": "integer"}},
            "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
        },
    },
}

_SCHEMAS["Dataset"] = {
    "type": "object",
    "description": "A stored dataset: one record a line, uncompressed.",
    "required": ["dataset_id", "format", "bytes", "records", "sha256", "created_at", "expires_at"],
    "properties": {
        "dataset_id": {"type": "string", "description": "32 hex digits, sorting by creation time"},
        "format": {"enum": ["jsonl", "text"], "description": "JSON lines or text lines"},
        "bytes": {"type": "integer", "description": "bytes stored (decompressed)"},
        "records": {"type": "integer"},
        "sha256": {"type": "string", "description": "of the stored bytes (GET .../data answers them)"},
        "created_at": {"type": "string"},
        "expires_at": {"type": "string", "description": "created_at + dataset_expires"},
        "owner": {"type": ["string", "null"]},
        "job_id": {"type": ["string", "null"], "description": "the job whose results it holds"},
        "name": {"type": ["string", "null"]},
        "jobs": {"type": "array", "items": {"type": "string"}, "description": "jobs that read it"},
    },
    "additionalProperties": True,
}
_SCHEMAS["Upload"] = {
    "type": "object",
    "description": "A resumable upload under way.",
    "required": ["upload_id", "format", "gzip", "offset", "upload_url"],
    "properties": {
        "upload_id": {"type": "string"}, "format": {"enum": ["jsonl", "text", "json"]},
        "gzip": {"type": "boolean"}, "offset": {"type": "integer", "description": "bytes received"},
        "created_at": {"type": "string"}, "expires_at": {"type": "string"},
        "owner": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]},
        "upload_url": {"type": "string", "description": "where PATCH sends the next part"},
    },
    "additionalProperties": True,
}
_SCHEMAS.update(openapi_schemas())  # the job model's components come from its dataclasses

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before polling or retrying",
                                "schema": {"type": "integer"}}}
_RATE_LIMITED = ("The caller is over its rate limit (RateLimited: limit names the key, rate the limit, "
                 "caller the caller)")
_COMMON_ERRORS = {"401": _error("A bearer token is required or was not valid"),
                  "403": _error("The caller lacks the scope (run, read, admin) the request needs"),
                  "429": {**_error(_RATE_LIMITED), "headers": _RETRY_AFTER}}
_OVER_QUOTA = (f"{_RATE_LIMITED}, has its max_jobs (caller_max_jobs) jobs queued or running, or keeps "
               f"its max_stored_bytes (caller_max_stored_bytes) of datasets (QuotaExceeded: limit names "
               f"the key); nothing was queued")
_JOB_ID_PARAM = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _unavailable(description: str) -> dict:
    return {**_error(description), "headers": _RETRY_AFTER}


def _request_body(kwargs: tuple[str, ...]) -> dict:
    kwargs_schema: dict[str, Any] = {
        "type": ["object", "null"],
        "description": "runtime keyword arguments of the pipeline (JSON values)",
        "properties": {k: _ANY for k in kwargs},
        "additionalProperties": False,
    }
    if kwargs:
        kwargs_schema = {**kwargs_schema, "type": "object", "required": list(kwargs)}
    schema = {
        "type": "object",
        "required": ["data", "kwargs"] if kwargs else ["data"],
        "properties": {
            "data": {"description": "the pipeline's input"},
            "kwargs": kwargs_schema,
            "callback": {"type": ["string", "null"], "format": "uri", "pattern": "^https?://",
                         "description": "URL that gets the results as a POST (makes the call "
                                        "asynchronous: 202); null = no callback"},
            "async": {"type": "boolean", "description": "true: queue a job and answer 202"},
            "results_to": {"enum": ["dataset", None], "description": '"dataset": store the results as '
                           "a new dataset; the answer (results_dataset) or the job record carries its id"},
            "on_error": {"enum": ["fail", "skip", "collect", None], "description": "what to do with an "
                         "element whose stage raises: fail the run, skip it, or skip it and keep a dead "
                         "letter; null = the pipeline's own policy (fail unless registered otherwise)"},
            "max_errors": {"type": ["number", "null"], "minimum": 0, "description": "an integer: fail the "
                           "run when more elements fail; a number below 1: when more than that share of "
                           "a pass's elements fail; null = the pipeline's own"},
        },
        "additionalProperties": False,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _pipeline_path(registered: Any) -> dict:
    pipeline = registered.pipeline
    kwargs = pipeline.expected_kwargs
    stages = "; ".join(pipeline.describe()) or "identity"
    takes = ", ".join(kwargs) if kwargs else "none"
    return {
        "post": {
            "operationId": f"run_{registered.name}",
            "summary": f"Run pipeline {registered.name}",
            "description": f"Stages: {stages}. Runtime kwargs: {takes}.",
            "tags": ["pipelines"],
            "requestBody": _request_body(kwargs),
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                            "description": "for a job: the same key (per caller) answers the job it "
                                           "created (202, same job_id) instead of queueing another; the "
                                           "same key with another body is refused (422)"}],
            "responses": {
                "200": _json({"oneOf": [
                    {"type": "object", "required": ["results"],
                     "properties": {"results": {"description": "the pipeline's results as JSON"},
                                    "element_errors": _ref("ElementErrors")}},
                    {"type": "object", "required": ["results_dataset", "dataset"],
                     "properties": {"results_dataset": {"type": "string"}, "dataset": _ref("Dataset"),
                                    "element_errors": _ref("ElementErrors")}}]},
                    "The pipeline ran; its results, or the dataset holding them (results_to); under "
                    "on_error skip or collect, what it dropped (element_errors)"),
                "202": {**_json(_ref("JobAccepted"), "Queued as a job (callback or async was given)"),
                        "headers": _RETRY_AFTER},
                "400": _error("Malformed JSON, missing data, wrong kwargs/callback/async, data "
                              "nested deeper than max_json_depth, or a data reference refused "
                              '({"dataset"|"files"|"url": ...} outside what is allowed)'),
                "404": _error("A dataset named in data does not exist"),
                **_COMMON_ERRORS,
                "413": _error("The body is larger than max_request_bytes"),
                "415": _error("The body is not JSON"),
                "409": _error("The Idempotency-Key's job is still being queued (retry)"),
                "422": _error("The pipeline rejected the input (name, message, stage), or the "
                              "Idempotency-Key was used with another body"),
                "500": _error("A stage failed (name, message, traceback, stage, item) or the "
                              "results are not JSON"),
                "429": _unavailable(_OVER_QUOTA),
                "503": _unavailable("Asynchronous jobs are unavailable (broker or job store down)"),
                "504": _error("The synchronous call ran past its sync_time_limit and was stopped"),
            },
            "callbacks": {
                "results": {
                    "{$request.body#/callback}": {
                        "post": {
                            "summary": "The job's results, POSTed when it finished",
                            "requestBody": {"required": True, "content": {
                                "application/json": {"schema": _ref("CallbackPayload")}}},
                            "responses": {"2XX": {"description": "Delivered"}},
                        },
                    },
                },
            },
        },
    }


def build_spec(service: Any) -> dict:
    """Return the OpenAPI 3.1 document for ``service`` (an :class:`atoll.Atoll`)."""
    paths: dict[str, Any] = {
        "/pipelines": {"get": {
            "operationId": "list_pipelines", "summary": "List the registered pipelines",
            "tags": ["pipelines"],
            "responses": {
                "200": _json({"type": "object", "required": ["pipelines"], "properties": {
                    "pipelines": {"type": "array", "items": _ref("PipelineInfo")}}},
                    "The registered pipelines"),
                **_COMMON_ERRORS,
            },
        }},
    }
    for registered in service.pipelines.values():
        paths[registered.endpoint] = _pipeline_path(registered)
    job_404 = _error("No such job (never submitted here, or its record expired)")
    store_down = _unavailable("The job store is unavailable")
    paths["/jobs"] = {"get": {
        "operationId": "list_jobs", "summary": "Jobs, newest first (without their results)",
        "tags": ["jobs"],
        "parameters": [
            {"name": "status", "in": "query", "schema": {"enum": [s.value for s in JobStatus]}},
            {"name": "pipeline", "in": "query", "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": LIST_LIMIT_MAX,
                                                        "default": LIST_LIMIT_DEFAULT}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"},
             "description": "the next of the previous page"},
        ],
        "responses": {
            "200": _json(_ref("JobList"), "A page of jobs"),
            "400": _error("An unknown status, a bad limit or a cursor not handed out here"),
            **_COMMON_ERRORS,
            "501": _error("The job store cannot list its records (listing needs the embedded store "
                          "or Redis)"),
            "503": store_down,
        },
    }}
    paths["/jobs/{job_id}"] = {
        "get": {
            "operationId": "get_job", "summary": "Status and results of an asynchronous job",
            "tags": ["jobs"], "parameters": [_JOB_ID_PARAM],
            "responses": {
                "200": _json(_ref("Job"), "The job's status, with results or error once finished"),
                **_COMMON_ERRORS, "404": job_404, "503": store_down,
            },
        },
        "delete": {
            "operationId": "cancel_job", "summary": "Cancel a queued or running job",
            "tags": ["jobs"], "parameters": [_JOB_ID_PARAM],
            "responses": {
                "200": _json(_ref("Job"), "Cancelled: it never runs, or its run is stopped; the "
                                          "callback, if any, gets status cancelled"),
                **_COMMON_ERRORS, "404": job_404,
                "409": _error("The job had already finished"), "503": store_down,
            },
        },
    }
    paths["/jobs/{job_id}/rerun"] = {"post": {
        "operationId": "rerun_job", "summary": "Queue a new job with a finished job's request (same "
                                               "data, kwargs and callback)",
        "tags": ["jobs"],
        "parameters": [_JOB_ID_PARAM,
                       {"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "the same key (per caller) answers the re-run it created (202, "
                                       "same job_id) instead of queueing another"}],
        "responses": {
            "202": {**_json(_ref("JobAccepted"), "Queued as a new job; its record's rerun_of names "
                                                 "the job re-run"),
                    "headers": _RETRY_AFTER},
            **_COMMON_ERRORS, "404": job_404,
            "409": _error("The job is queued or running (JobNotFinished), or the Idempotency-Key's job "
                          "is still being queued"),
            "410": _error("The job's request is no longer kept (RequestExpired)"),
            "422": _error("The Idempotency-Key was used with another job's re-run"),
            "429": _unavailable(_OVER_QUOTA),
            "503": _unavailable("Asynchronous jobs are unavailable (broker or job store down)"),
        },
    }}
    paths["/jobs/{job_id}/results"] = {"get": {
        "operationId": "get_job_results", "summary": "The results of a succeeded job (also when too "
                                                     "large to travel in its record)",
        "tags": ["jobs"], "parameters": [_JOB_ID_PARAM],
        "responses": {
            "200": _json(_ref("Results"), "The job's results"),
            **_COMMON_ERRORS, "404": job_404,
            "409": _error("The job has not succeeded"), "503": store_down,
        },
    }}
    def lines(operation: str, summary: str, description: str) -> dict:
        """A job's text kept beside its record, answered as JSON lines."""
        return {"get": {
            "operationId": operation, "summary": summary, "tags": ["jobs"], "parameters": [_JOB_ID_PARAM],
            "responses": {
                "200": {"description": description,
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                **_COMMON_ERRORS, "404": job_404, "503": store_down,
            },
        }}

    paths["/jobs/{job_id}/logs"] = lines(
        "get_job_logs", "What the job's pipeline printed and logged",
        'JSON lines: {"time", "stream": stdout|stderr|log|atoll, "message"} and "level", "logger" for log '
        "records; at most job_log_max_bytes, the tail kept; empty while it runs")
    paths["/jobs/{job_id}/errors"] = lines(
        "get_job_errors", "The dead letters of a job run with on_error collect",
        "JSON lines, one DeadLetter a line, in the order the elements failed (by pass, then input); the "
        "first ones, at most dead_letters_max of them and dead_letters_max_bytes; empty while it runs or "
        "without collect")
    paths.update(_dataset_paths())
    paths["/health"] = {"get": {
        "operationId": "health", "summary": "Service, broker, job store and worker status",
        "tags": ["service"],
        "security": [],
        "responses": {
            "200": _json(_ref("Health"), "Every required part is up"),
            "503": _json(_ref("Health"), "A required part is down"),
        },
    }}
    paths["/livez"] = {"get": {
        "operationId": "livez", "summary": "Liveness: this process answers (no I/O)", "tags": ["service"],
        "security": [],
        "responses": {"200": _json({"type": "object", "properties": {"status": {"const": "ok"}}},
                                   "The process serves requests")},
    }}
    readiness = {"type": "object", "required": ["status"],
                 "properties": {"status": {"enum": ["ready", "not ready"]},
                                "failing": {"type": "array", "items": {"type": "string"}}}}
    paths["/readyz"] = {"get": {
        "operationId": "readyz",
        "summary": "Readiness: broker reachable, job store writable, a worker alive (cached)",
        "tags": ["service"], "security": [],
        "responses": {"200": _json(readiness, "Ready to take requests and jobs"),
                      "503": _json(readiness, "Not ready: the names of the failing checks")},
    }}
    metrics = {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text exposition format)",
        "tags": ["service"],
        "responses": {"200": {"description": "Metrics prefixed atoll_",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **_COMMON_ERRORS},
    }}
    if service.config.metrics_public:
        metrics["get"]["security"] = []
    paths["/metrics"] = metrics
    html = {"description": "The dashboard page", "content": {"text/html": {"schema": {"type": "string"}}}}
    paths["/ui"] = {"get": {
        "operationId": "ui", "summary": "The dashboard (a static page; its API calls carry the token)",
        "tags": ["service"], "security": [], "responses": {"200": html},
    }}
    paths["/ui/static/{filename}"] = {"get": {
        "operationId": "ui_static", "summary": "The dashboard's script and style sheet",
        "tags": ["service"], "security": [],
        "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The file"}, "404": {"description": "No such file"}},
    }}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["service"],
        "responses": {"200": _json({"type": "object"}, "The OpenAPI description"), **_COMMON_ERRORS},
    }}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "atoll", "version": __version__,
                 "description": "Registered data pipelines over HTTP. Every error answer is JSON "
                                '{"error": {"name", "message", ...}}.'},
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
    if service.config.auth_tokens or service.config.callers:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec


def _dataset_paths() -> dict[str, Any]:
    """Return the paths of ``/datasets`` (see :mod:`atoll.service.http.datasets`)."""
    dataset_id = {"name": "dataset_id", "in": "path", "required": True, "schema": {"type": "string"}}
    upload_id = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
    missing = _error("No such dataset (never stored here, deleted or expired)")
    no_upload = _error("No such upload (never started, completed, aborted or expired)")
    store_down = _unavailable("The dataset store is unavailable")
    lines = {"schema": {"type": "string"}}
    body_answers = {
        "201": {**_json(_ref("Dataset"), "Stored"),
                "headers": {"Location": {"schema": {"type": "string"}}}},
        **_COMMON_ERRORS,
        "404": no_upload,
        "413": _error("Larger than dataset_max_bytes, sent or decompressed"),
        "415": _error("A Content-Type or Content-Encoding that is not a dataset format"),
        "422": _error("A record that is not what the format says (its line or element named), "
                      "broken or truncated gzip, or no record at all; nothing was kept"),
        "503": store_down,
        "429": _unavailable(f"{_RATE_LIMITED}, or its datasets would take more than its "
                            f"max_stored_bytes (caller_max_stored_bytes; QuotaExceeded: limit names the "
                            f"key); nothing was kept"),
        "507": _error("The store's quota (datasets_max_total_bytes) would be exceeded"),
    }
    return {
        "/datasets": {
            "get": {
                "operationId": "list_datasets", "summary": "Datasets, newest first", "tags": ["datasets"],
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                "maximum": LIST_LIMIT_MAX,
                                                                "default": LIST_LIMIT_DEFAULT}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"},
                     "description": "the next of the previous page"}],
                "responses": {
                    "200": _json({"type": "object", "required": ["datasets", "next"], "properties": {
                        "datasets": {"type": "array", "items": _ref("Dataset")},
                        "next": {"type": ["string", "null"]}}}, "A page of datasets"),
                    "400": _error("A bad limit or cursor"), **_COMMON_ERRORS, "503": store_down},
            },
            "post": {
                "operationId": "upload_dataset",
                "summary": "Upload a dataset: JSON lines, text lines or a JSON array, maybe gzip",
                "description": "The body is streamed and checked as it arrives; it is bounded by "
                               "dataset_max_bytes, not max_request_bytes.",
                "tags": ["datasets"],
                "parameters": [
                    {"name": "Content-Encoding", "in": "header", "schema": {"enum": ["identity", "gzip"]}},
                    {"name": "name", "in": "query", "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {
                    "application/x-ndjson": lines, "application/jsonl": lines, "text/plain": lines,
                    "application/json": {"schema": {"type": "array"}}}},
                "responses": {k: v for k, v in body_answers.items() if k != "404"},
            },
        },
        "/datasets/{dataset_id}": {
            "get": {
                "operationId": "get_dataset", "summary": "A dataset's metadata and the jobs that read it",
                "tags": ["datasets"], "parameters": [dataset_id],
                "responses": {"200": _json(_ref("Dataset"), "The dataset"), **_COMMON_ERRORS,
                              "404": missing, "503": store_down},
            },
            "delete": {
                "operationId": "delete_dataset", "summary": "Delete a dataset", "tags": ["datasets"],
                "parameters": [dataset_id],
                "responses": {"204": {"description": "Deleted"}, **_COMMON_ERRORS, "404": missing,
                              "409": _error("A queued or running job reads it"), "503": store_down},
            },
        },
        "/datasets/{dataset_id}/data": {"get": {
            "operationId": "get_dataset_data", "summary": "The dataset's records, streamed; Range supported",
            "tags": ["datasets"],
            "parameters": [dataset_id, {"name": "Range", "in": "header", "schema": {"type": "string"},
                                        "description": "bytes=first-last (one range)"}],
            "responses": {
                "200": {"description": "The records, one a line",
                        "content": {"application/x-ndjson": lines, "text/plain": lines}},
                "206": {"description": "The part of the records asked for",
                        "content": {"application/x-ndjson": lines, "text/plain": lines}},
                **_COMMON_ERRORS, "404": missing,
                "416": _error("The range is outside the dataset"), "503": store_down},
        }},
        "/datasets/uploads": {"post": {
            "operationId": "start_upload", "summary": "Start a resumable upload", "tags": ["datasets"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"format": {"enum": ["jsonl", "text", "json"]},
                                                 "gzip": {"type": "boolean"},
                                                 "name": {"type": "string"}}}}}},
            "responses": {"201": _json(_ref("Upload"), "Started; PATCH its upload_url with parts"),
                          "400": _error("A bad format or gzip"), **_COMMON_ERRORS,
                          "429": body_answers["429"], "503": store_down},
        }},
        "/datasets/uploads/{upload_id}": {
            "get": {
                "operationId": "get_upload", "summary": "A resumable upload and its offset",
                "tags": ["datasets"], "parameters": [upload_id],
                "responses": {"200": {**_json(_ref("Upload"), "The upload"), "headers": {
                    "Upload-Offset": {"schema": {"type": "integer"}}}}, **_COMMON_ERRORS, "404": no_upload},
            },
            "patch": {
                "operationId": "append_upload", "summary": "Send the part starting at Upload-Offset",
                "tags": ["datasets"],
                "parameters": [upload_id, {"name": "Upload-Offset", "in": "header", "required": True,
                                           "schema": {"type": "integer", "minimum": 0}}],
                "requestBody": {"required": True, "content": {
                    "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"204": {"description": "Stored; Upload-Offset is the new offset"},
                              "400": _error("No Upload-Offset"), **_COMMON_ERRORS, "404": no_upload,
                              "409": _error("The part does not start at the upload's offset"),
                              "413": _error("Larger than dataset_max_bytes"), "429": body_answers["429"],
                              "503": store_down},
            },
            "delete": {
                "operationId": "abort_upload", "summary": "Abandon an upload, removing its parts",
                "tags": ["datasets"], "parameters": [upload_id],
                "responses": {"204": {"description": "Removed"}, **_COMMON_ERRORS, "404": no_upload},
            },
        },
        "/datasets/uploads/{upload_id}/complete": {"post": {
            "operationId": "complete_upload", "summary": "Check the whole upload and store it as a dataset",
            "tags": ["datasets"], "parameters": [upload_id], "responses": body_answers,
        }},
    }


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.1 document of this service."""
    return current_app.json.response(build_spec(current_app.extensions["atoll"]))
