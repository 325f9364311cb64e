"""Every error answer of the service is JSON ``{"error": {"name", "message", ...}}``, never an HTML page.

:class:`ApiError` is raised by handlers for a request the service refuses; :func:`register_handlers`
turns it, Werkzeug's HTTP errors and pipeline errors into JSON with the right status.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from atoll.errors import PipelineError, StageFailure
from atoll.service.encoding import EncodingError, to_json
from atoll.service.model import ErrorBody

__all__ = ["ApiError", "error_json", "error_response", "shorten_paths", "register_handlers",
           "RETRY_AFTER_UNAVAILABLE"]

log = logging.getLogger("atoll.service")

#: seconds a client should wait before retrying an answer 503
RETRY_AFTER_UNAVAILABLE = 5

#: the ``name`` given to Werkzeug's HTTP errors, by status
_HTTP_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestTooLarge",
    415: "UnsupportedMediaType",
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


_FILE = re.compile(r'File "([^"]+)"')
#: folders under which a file's module path starts, wherever the interpreter was installed
_PACKAGE_DIRS = re.compile(r"^.*[/\\](?:site|dist)-packages[/\\]")


def _roots() -> list[str]:
    """Return the import roots of this process (sys.path and the working folder), longest first."""
    roots = {os.path.abspath(p or os.curdir) for p in sys.path if isinstance(p, str)}
    roots.add(os.getcwd())
    return sorted((os.path.join(r, "") for r in roots if r != os.sep), key=len, reverse=True)


def _module_path(path: str) -> str:
    """Return ``path`` as the module path a user knows (``mymod/stages.py``), never absolute."""
    if not os.path.isabs(path):
        return path
    packaged = _PACKAGE_DIRS.sub("", path)
    if packaged != path:
        return packaged
    for root in _roots():
        if path.startswith(root):
            return path[len(root):]
    return os.path.basename(path)


def shorten_paths(text: str) -> str:
    """Return traceback ``text`` with each absolute file path cut to its module path.

    A caller learns which module and line failed, not where the server keeps its files:

    >>> shorten_paths('File "/opt/venv/lib/python3.11/site-packages/atoll/operators.py", line 9')
    'File "atoll/operators.py", line 9'
    >>> shorten_paths('File "/somewhere/else/job.py", line 3')
    'File "job.py", line 3'
    """
    return _FILE.sub(lambda m: f'File "{_module_path(m.group(1))}"', text)


def exposes_tracebacks() -> bool:
    """Return the ``expose_tracebacks`` setting of the app serving this request."""
    return bool(current_app.extensions["atoll"].config.expose_tracebacks)


def pipeline_error_status(exc: PipelineError) -> int:
    """Return 500 for a failing user function (StageFailure), 422 for input a pipeline rejected."""
    return 500 if isinstance(exc, StageFailure) else 422


def register_handlers(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.name, exc.message, exc.headers, **exc.extra)

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
