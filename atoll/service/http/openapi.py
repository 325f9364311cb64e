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
                       "branch's own stages in branches (empty for every other operator).",
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
        },
    },
}

_SCHEMAS.update(openapi_schemas())  # the job model's components come from its dataclasses

_COMMON_ERRORS = {"401": _error("A bearer token is required or was not valid")}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before polling or retrying",
                                "schema": {"type": "integer"}}}
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
                "200": _json(_ref("Results"), "The pipeline ran; its results"),
                "202": {**_json(_ref("JobAccepted"), "Queued as a job (callback or async was given)"),
                        "headers": _RETRY_AFTER},
                "400": _error("Malformed JSON, missing data, wrong kwargs/callback/async, or data "
                              "nested deeper than max_json_depth"),
                **_COMMON_ERRORS,
                "413": _error("The body is larger than max_request_bytes"),
                "415": _error("The body is not JSON"),
                "409": _error("The Idempotency-Key's job is still being queued (retry)"),
                "422": _error("The pipeline rejected the input (name, message, stage), or the "
                              "Idempotency-Key was used with another body"),
                "500": _error("A stage failed (name, message, traceback, stage, item) or the "
                              "results are not JSON"),
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
    paths["/jobs/{job_id}/logs"] = {"get": {
        "operationId": "get_job_logs", "summary": "What the job's pipeline printed and logged",
        "tags": ["jobs"], "parameters": [_JOB_ID_PARAM],
        "responses": {
            "200": {"description": 'JSON lines: {"time", "stream": stdout|stderr|log|atoll, "message"} '
                                   'and "level", "logger" for log records; at most job_log_max_bytes, '
                                   "the tail kept; empty while it runs",
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
            **_COMMON_ERRORS, "404": job_404, "503": store_down,
        },
    }}
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
    if service.config.auth_tokens:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.1 document of this service."""
    return current_app.json.response(build_spec(current_app.extensions["atoll"]))
