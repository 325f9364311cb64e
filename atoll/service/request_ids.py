"""Request ids: follow one call through the web process's log lines.

Every response carries ``X-Request-ID``: the caller's own when it sent a well-formed one (letters,
digits and ``._:-``, at most 128 characters), a new one otherwise — a malformed id is replaced rather
than echoed, so nothing a caller sends reaches a header or a log line unchecked. While a request is
served, every log record has a ``request_id`` attribute (``-`` outside a request), for a format such
as ``%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s``.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from flask import Flask, Response, request

__all__ = ["HEADER", "install", "current", "accept"]

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_current: contextvars.ContextVar[str] = contextvars.ContextVar("atoll_request_id", default="-")
_factory_installed = False


def accept(given: str | None) -> str:
    """Return ``given`` when it is a well-formed request id, else a new random one.

    >>> accept("checkout-42")
    'checkout-42'
    >>> len(accept("<script>")), len(accept(None))
    (32, 32)
    """
    if given and _VALID.match(given):
        return given
    return uuid.uuid4().hex


def current() -> str:
    """Return the id of the request being served in this context, or ``"-"``."""
    return _current.get()


def _install_log_context() -> None:
    """Give every log record a ``request_id`` attribute (once per process)."""
    global _factory_installed
    if _factory_installed:
        return
    make_record = logging.getLogRecordFactory()

    def record_with_request_id(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = _current.get()
        return record

    logging.setLogRecordFactory(record_with_request_id)
    _factory_installed = True


def install(app: Flask) -> None:
    """Make ``app`` take or make a request id per request and answer it in ``X-Request-ID``."""
    _install_log_context()

    @app.before_request
    def _take_request_id() -> None:
        request.environ["atoll.request_id_token"] = _current.set(accept(request.headers.get(HEADER)))

    @app.after_request
    def _answer_request_id(response: Response) -> Response:
        response.headers[HEADER] = _current.get()
        return response

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        token = request.environ.pop("atoll.request_id_token", None)
        if token is not None:
            _current.reset(token)
