"""Every error answer of the service is JSON ``{"error": {"name", "message", ...}}``, never an HTML page.

:class:`ApiError` is the one refusal of the HTTP layer (a request it parses and refuses itself);
the job system and the registry raise their own domain exceptions, which :data:`STATUSES` (the one
table) gives a status and an error name. :func:`register_handlers` turns both, Werkzeug's HTTP errors
and pipeline errors into JSON with the right status.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g
from werkzeug.exceptions import HTTPException

from atoll.encoding import EncodingError, to_json
from atoll.errors import PipelineError, StageFailure
from atoll.service.datasets import errors as datasets
from atoll.service.errors import UnknownPipeline
from atoll.service.jobs import errors as jobs
from atoll.service.jobs.model import ErrorBody, shorten_paths
from atoll.service.metrics import observe_rejection

__all__ = ["ApiError", "STATUSES", "answer_of", "error_json", "error_response", "shorten_paths",
           "register_handlers", "RETRY_AFTER_UNAVAILABLE", "RETRY_AFTER_ACCEPTED"]

log = logging.getLogger("atoll.service")

#: seconds a client should wait before retrying an answer 503
RETRY_AFTER_UNAVAILABLE = 5
#: seconds a client should wait before polling a job it was just given (the 202's Retry-After)
RETRY_AFTER_ACCEPTED = 1

#: the HTTP answer to each domain exception: status, error name and headers (a 503 without
#: Retry-After gets :data:`RETRY_AFTER_UNAVAILABLE`); a subclass answers as its nearest listed base
STATUSES: dict[type[Exception], tuple[int, str, dict[str, str]]] = {
    UnknownPipeline: (404, "PipelineNotFound", {}),
    jobs.JobNotFound: (404, "UnknownJob", {}),
    jobs.ResultsExpired: (404, "ResultsExpired", {}),
    jobs.JobFinished: (409, "JobFinished", {}),
    jobs.NoResults: (409, "NoResults", {}),
    jobs.JobNotFinished: (409, "JobNotFinished", {}),
    jobs.RequestExpired: (410, "RequestExpired", {}),
    jobs.IdempotencyKeyInUse: (409, "IdempotencyKeyInUse", {"Retry-After": str(RETRY_AFTER_ACCEPTED)}),
    jobs.IdempotencyKeyReused: (422, "IdempotencyKeyReused", {}),
    jobs.CallbackRefused: (400, "CallbackRefused", {}),
    jobs.BadCursor: (400, "InvalidCursor", {}),
    jobs.QuotaExceeded: (429, "QuotaExceeded", {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}),
    jobs.ListingUnsupported: (501, "ListingUnsupported", {}),
    jobs.BrokerUnavailable: (503, "BrokerUnavailable", {}),
    jobs.JobStoreUnavailable: (503, "ResultStoreUnavailable", {}),
    jobs.AsyncUnavailable: (503, "AsyncUnavailable", {}),
    datasets.DatasetNotFound: (404, "DatasetNotFound", {}),
    datasets.UploadNotFound: (404, "UploadNotFound", {}),
    datasets.DatasetEmpty: (422, "EmptyDataset", {}),
    datasets.DatasetInvalid: (422, "InvalidDataset", {}),
    datasets.DatasetTooLarge: (413, "DatasetTooLarge", {}),
    datasets.DatasetQuotaExceeded: (507, "DatasetQuotaExceeded", {}),
    datasets.StoredBytesExceeded: (429, "QuotaExceeded", {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}),
    datasets.DatasetInUse: (409, "DatasetInUse", {}),
    datasets.UploadConflict: (409, "UploadOffsetMismatch", {}),
    datasets.DatasetFormatUnsupported: (415, "UnsupportedMediaType", {}),
    datasets.DataRefRefused: (400, "DataRefRefused", {}),
    datasets.DatasetStoreUnavailable: (503, "DatasetStoreUnavailable", {}),
}

#: the ``name`` given to Werkzeug's HTTP errors, by status
_HTTP_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestTooLarge",
    415: "UnsupportedMediaType",
    416: "RangeNotSatisfiable",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """A refused request: HTTP ``status``, an error ``name``, a ``message`` and extra JSON fields."""

    def __init__(self, status: int, name: str, message: str, headers: dict | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_json(name: str, message: str, **extra: Any) -> str:
    """Return the JSON text ``{"error": {"name", "message", ...}}`` of an error answer."""
    body = {"error": {"name": name, "message": message, **extra}}
    try:
        return to_json(body, path="error")
    except EncodingError as exc:  # an odd item in extra: keep the error readable
        body["error"] = {"name": name, "message": message, "encoding_error": str(exc)}
        return to_json(body)


def error_response(status: int, name: str, message: str, headers: dict | None = None,
                   **extra: Any) -> Response:
    """Return the JSON error answer ``{"error": {"name", "message", ...}}`` with ``status``."""
    return Response(error_json(name, message, **extra), status=status, mimetype="application/json",
                    headers=headers)


def exposes_tracebacks() -> bool:
    """Return the ``expose_tracebacks`` setting of the app serving this request."""
    return bool(current_app.extensions["atoll"].config.expose_tracebacks)


def pipeline_error_status(exc: PipelineError) -> int:
    """Return 500 for a failing user function (StageFailure), 422 for input a pipeline rejected."""
    return 500 if isinstance(exc, StageFailure) else 422


def answer_of(exc: Exception) -> ApiError | None:
    """Return the HTTP answer :data:`STATUSES` gives domain exception ``exc``, or None when unlisted."""
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            status, name, headers = STATUSES[cls]
            return ApiError(status, name, getattr(exc, "message", None) or str(exc), dict(headers),
                            **getattr(exc, "extra", {}))
    return None


def register_handlers(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.name, exc.message, exc.headers, **exc.extra)

    def _domain_error(exc: Exception) -> Response:
        answer = answer_of(exc)
        assert answer is not None  # registered for the table's classes only
        reason = getattr(exc, "rejection", None)  # a caller's quota refused it
        if reason is not None:
            caller = g.get("caller")
            observe_rejection(caller.name if caller is not None else None, reason)
        return _api_error(answer)

    for cls in STATUSES:
        app.register_error_handler(cls, _domain_error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type",
                                                                            "content-length")}
        message = exc.description or ""
        if status == 413:
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is larger than max_request_bytes = {limit} bytes"
        elif status == 405:
            message = f"method not allowed here; allowed: {headers.get('Allow', '')}"
        name = _HTTP_NAMES.get(status) or type(exc).__name__
        return error_response(status, name, message, headers)

    @app.errorhandler(PipelineError)
    def _pipeline_error(exc: PipelineError) -> Response:
        return error_response(pipeline_error_status(exc),
                              **ErrorBody.from_exception(exc, expose=exposes_tracebacks())
                              .public(exposes_tracebacks()))

    @app.after_request
    def _retry_after(response: Response) -> Response:
        """Tell a client when to retry an answer 503 (broker, job store or a required part down)."""
        if response.status_code == 503 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error while serving a request")
        return error_response(500, "InternalServerError",
                              f"{type(exc).__name__}: {exc}" if current_app.debug
                              else "the server failed to answer; its log has the details")
