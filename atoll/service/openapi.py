"""``GET /openapi.json``: the OpenAPI 3.1 description of the service, with every registered pipeline as
a path of its own and its runtime kwargs as required properties of ``kwargs``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from atoll import __version__

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
    "ErrorDetail": {
        "type": "object",
        "required": ["name", "message"],
        "properties": {
            "name": {"type": "string", "description": "error type, e.g. MissingData or KeyError"},
            "message": {"type": "string"},
            "traceback": {"type": "string", "description": "worker-side traceback of a failure, "
                                                         "absent when expose_tracebacks is false"},
            "stage": {"oneOf": [_ref("Stage"), {"type": "null"}]},
            "item": {"description": "the element that failed, or null; absent when "
                                    "expose_tracebacks is false"},
        },
        "additionalProperties": True,
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
    "Job": {
        "type": "object",
        "required": ["job_id", "status"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
            "pipeline": {"type": "string"},
            "results": {"description": "present once the job succeeded"},
            "error": {"oneOf": [_ref("ErrorDetail"), {"type": "null"}]},
            "callback": {"oneOf": [_ref("CallbackState"), {"type": "null"}]},
        },
        "additionalProperties": True,
    },
    "CallbackState": {
        "type": "object",
        "description": "Delivery of a job's callback: pending until delivered, failed when the URL was "
                       "refused at delivery, abandoned after the last retry.",
        "required": ["url", "state", "attempts", "last_error"],
        "properties": {
            "url": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "failed", "abandoned"]},
            "attempts": {"type": "integer", "minimum": 0},
            "last_error": {"type": ["string", "null"]},
        },
    },
    "CallbackPayload": {
        "type": "object",
        "required": ["job_id", "pipeline", "results", "error"],
        "properties": {
            "job_id": {"type": "string"},
            "pipeline": {"type": "string"},
            "results": {"description": "the results, or null when the job failed"},
            "error": {"oneOf": [_ref("ErrorDetail"), {"type": "null"}]},
        },
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
            "operator": {"type": "string"},
            "function": {"type": "string"},
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

_COMMON_ERRORS = {"401": _error("A bearer token is required or was not valid")}


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
            "responses": {
                "200": _json(_ref("Results"), "The pipeline ran; its results"),
                "202": _json(_ref("JobAccepted"), "Queued as a job (callback or async was given)"),
                "400": _error("Malformed JSON, missing data, wrong kwargs/callback/async, or data "
                              "nested deeper than max_json_depth"),
                **_COMMON_ERRORS,
                "413": _error("The body is larger than max_request_bytes"),
                "415": _error("The body is not JSON"),
                "422": _error("The pipeline rejected the input (name, message, stage)"),
                "500": _error("A stage failed (name, message, traceback, stage, item) or the "
                              "results are not JSON"),
                "503": _error("Asynchronous jobs are unavailable (broker down)"),
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
    paths["/jobs/{job_id}"] = {"get": {
        "operationId": "get_job", "summary": "Status and results of an asynchronous job",
        "tags": ["jobs"],
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": _json(_ref("Job"), "The job's status, with results or error once finished"),
            **_COMMON_ERRORS,
            "404": _error("No such job"),
            "503": _error("The result backend is unavailable"),
        },
    }}
    paths["/health"] = {"get": {
        "operationId": "health", "summary": "Service, broker and worker status", "tags": ["service"],
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
        "operationId": "readyz", "summary": "Readiness: broker reachable and a worker alive (cached)",
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
