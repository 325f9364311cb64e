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
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

__all__ = ["HEADER", "install", "current", "accept", "RequestIdMiddleware"]

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_current: contextvars.ContextVar[str] = contextvars.ContextVar("atoll_request_id", default="-")
_factory_installed = False
#: the WSGI environ key of the X-Request-ID header
_ENVIRON_KEY = "HTTP_" + HEADER.upper().replace("-", "_")
#: the bits of a random 128-bit number that make it a UUID version 4 (RFC 4122 variant)
_UUID4_KEEP = ~(0xF000 << 64 | 0xC000 << 48) & (1 << 128) - 1
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


def accept(given: str | None) -> str:
    """Return ``given`` when it is a well-formed request id, else a new random one.

    >>> accept("checkout-42")
    'checkout-42'
    >>> len(accept("<script>")), len(accept(None))
    (32, 32)
    """
    if given and _VALID.fullmatch(given):
        return given
    # uuid.uuid4().hex, built without the UUID object (a third of the time per request)
    return "%032x" % (int.from_bytes(os.urandom(16), "big") & _UUID4_KEEP | _UUID4_SET)


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
    """Make ``app`` take or make a request id per request and answer it in ``X-Request-ID``.

    The id is set before Flask sees the request (a WSGI middleware around ``app.wsgi_app``), so
    every answer carries it, a refused or failed one too, and every log line written while the
    request is served has it.
    """
    _install_log_context()
    app.wsgi_app = RequestIdMiddleware(app.wsgi_app)  # type: ignore[method-assign]


class RequestIdMiddleware:
    """WSGI middleware: the request id of each request is :func:`current` while the wrapped app
    serves it, and its answer carries the id in ``X-Request-ID`` (replacing any the app set)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = accept(environ.get(_ENVIRON_KEY))
        token = _current.set(request_id)

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [h for h in headers if h[0].lower() != "x-request-id"]
            headers.append((HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start_with_id)
        finally:
            _current.reset(token)
