"""Log lines of ``atoll serve`` and ``atoll worker``, as text or as JSON (``log_format``).

Each line says which call it belongs to: the web process knows the request id
(:mod:`atoll.service.request_ids`); a worker knows the job it runs, its pipeline and the id of the
request that submitted it (sent along in the task message). A JSON line is one object::

    {"timestamp": "2026-12-01T22:56:16.123Z", "level": "INFO", "logger": "atoll.jobs",
     "message": "...", "request_id": "3f2a...", "job_id": "9b1c...", "pipeline": "wordcount"}

with ``exception`` added when the record carries one.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["JsonFormatter", "TextFormatter", "context", "formatter", "configure", "REQUEST_ID_HEADER"]

#: the task-message header that carries the submitting request's id to the worker
REQUEST_ID_HEADER = "atoll_request_id"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


def context(record: logging.LogRecord) -> dict[str, Any]:
    """Return ``{"request_id", "job_id", "pipeline"}`` of the call ``record`` was logged in."""
    found = {"request_id": getattr(record, "request_id", "-"), "job_id": None, "pipeline": None}
    try:
        from celery._state import get_current_task  # what Celery's own TaskFormatter uses
    except ImportError:
        return found
    task = get_current_task()
    if task is not None and task.request.id is not None and task.name == "atoll.run_pipeline":
        found["job_id"] = task.request.id
        args = task.request.args or ()
        found["pipeline"] = args[0] if args else None
        found["request_id"] = getattr(task.request, REQUEST_ID_HEADER, None) or found["request_id"]
    return found


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request_id job_id]: message``, the brackets only inside a call."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        where = context(record)
        ids = " ".join(str(where[k]) for k in ("request_id", "job_id") if where[k] and where[k] != "-")
        record.context = f" [{ids}]" if ids else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's documentation)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context(record),
        }
        if line["request_id"] == "-":
            line["request_id"] = None
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """Return the formatter of ``log_format`` (``text`` or ``json``)."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str, logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root logger by default) the ``log_format`` formatter."""
    chosen = formatter(log_format)
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(chosen)
