"""What a pipeline's functions print and log, captured for the job that runs them.

``with capture(max_bytes) as log:`` records, while the block runs:

- text written to ``sys.stdout`` and ``sys.stderr``, one entry per line (a line becomes an entry when
  its newline arrives; a partial last line becomes one when the capture ends). The text still reaches
  the streams it went to before, so a worker's own log keeps showing it. Bytes written to
  ``sys.stdout.buffer`` or straight to a file descriptor (a subprocess's output too) are not seen.
- log records at ``level`` and above from any logger (the message formatted with its arguments, the
  exception's traceback appended when the record carries one), except those of loggers named
  ``celery*``, ``kombu*`` and ``amqp*`` (:data:`EXCLUDED_LOGGERS`): that is the worker's bookkeeping,
  and Celery's copy of redirected output (``celery.redirected``) would repeat each printed line. While
  a capture at ``level`` is active the root logger lets records at ``level`` through even when it is
  set higher; the handlers already on the root logger still get only what they got before. A logger
  set to a level of its own keeps it: its records below that level are not made, so not captured.

**Whose output.** A capture records what is printed and logged in the context that entered it (a
:class:`contextvars.ContextVar`): the thread that entered it, and work that thread runs in a copy of
its context (``asyncio`` tasks, ``asyncio.to_thread``, ``contextvars.copy_context().run``). Threads
started with ``threading.Thread`` or a ``concurrent.futures.ThreadPoolExecutor`` begin with an empty
context: what they print and log is not recorded (it still reaches the streams and handlers it reached
before). So two jobs running at once in one process (Celery's ``threads`` pool) each get their own
output only, and a thread of the worker that logs meanwhile is not mixed into a job. A capture entered
inside another one records in place of the outer one until it ends.

**Local executor workers.** A pass run by :class:`~atoll.executors.local.LocalExecutor` inside a
capture sends its chunks to the workers with the capture's settings: each chunk captures its own output
in its worker process (same rules, same bound) and returns the entries with its result, which are added
to the capture here when the chunk's result is taken, so they appear in chunk order, after what this
process printed meanwhile, with the time each line was printed in the worker. The chunks this process
runs alongside its workers are captured each in a capture of its own and added the same way, so the
output of a pass is in input order. Outside a capture chunks run as before. The Spark executor's
output stays in Spark's executor logs.

**The log.** :meth:`JobLog.text` gives the entries as JSON lines, one object per line::

    {"time": "2026-12-02T11:19:58.123Z", "stream": "stdout", "message": "read 120 files"}
    {"time": "2026-12-02T11:19:58.140Z", "stream": "log", "level": "WARNING", "logger": "etl",
     "message": "3 rows skipped"}

(each object on one line). ``stream`` is ``stdout``, ``stderr`` or ``log``; ``level`` and ``logger``
are there for log records only. The whole text is at most ``max_bytes`` bytes (UTF-8, newlines
included): the oldest entries are dropped first, and when anything was dropped the first line says how
much::

    {"time": "...", "stream": "atoll",
     "message": "N earlier bytes of output were dropped (job_log_max_bytes = M)"}

with the time of the first entry of the capture. N counts the bytes of the dropped lines, and of the text
cut from an entry longer than the limit (such an entry keeps its end). Memory stays bounded while the
job runs, whatever it prints: the entries are kept in a deque with a running byte count, a line that
has not ended yet is cut to its last ``max_bytes`` characters whenever it grows past twice that, and a
local executor's chunk keeps to the same bound in its worker.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["capture", "JobLog", "EXCLUDED_LOGGERS", "MIN_MAX_BYTES", "current"]

#: loggers (and their children) whose records are never captured
EXCLUDED_LOGGERS = ("celery", "kombu", "amqp")

#: the least ``max_bytes`` of a capture that records anything (0 records nothing)
MIN_MAX_BYTES = 1024

_STREAMS = ("stdout", "stderr")

#: the capture recording in this context
_current: ContextVar[JobLog | None] = ContextVar("atoll_job_log", default=None)


def current() -> JobLog | None:
    """Return the :class:`JobLog` recording what this context prints and logs, or None."""
    return _current.get()


def _iso(moment: float) -> str:
    """``2026-12-02T11:19:58.123Z`` for a ``time.time()`` value."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"


def _line(entry: dict) -> bytes:
    """One entry as a JSON line (without its newline), UTF-8."""
    try:
        return json.dumps(entry, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (text decoded with surrogateescape): escape it
        return json.dumps(entry).encode("ascii")


class _Pending:
    """The text of a line that has not ended yet, and when it began."""

    __slots__ = ("pieces", "chars", "began")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.chars = 0
        self.began = 0.0

    def take(self) -> str:
        text = "".join(self.pieces)
        self.pieces, self.chars = [], 0
        return text


class JobLog:
    """What a capture recorded: entries kept as JSON lines, the newest ``max_bytes`` bytes of them.

    Safe to use from several threads. ``max_bytes`` 0 records nothing.
    """

    def __init__(self, max_bytes: int, level: int = logging.INFO):
        if max_bytes != 0 and max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be 0 (record nothing) or at least {MIN_MAX_BYTES}; "
                             f"got {max_bytes}")
        self.max_bytes = max_bytes
        self.level = level
        self._lines: deque[bytes] = deque()
        self._size = 0  # bytes of self._lines, a newline each
        self._dropped = 0
        self._began: float | None = None  # time of the first entry
        self._pending = {name: _Pending() for name in _STREAMS}
        self._lock = threading.Lock()
        # the longest line kept: room is left for the line that says what was dropped
        self._longest = max(0, max_bytes - len(self._header(10 ** 20 - 1, 0.0)) - 1)

    def __repr__(self) -> str:
        return f"JobLog(max_bytes={self.max_bytes}, entries={len(self._lines)}, dropped={self._dropped})"

    @property
    def empty(self) -> bool:
        """True when nothing was recorded (nothing printed or logged, not even dropped)."""
        with self._lock:
            return not self._lines and not self._dropped and not any(
                p.chars for p in self._pending.values())

    @property
    def dropped_bytes(self) -> int:
        """Bytes of output dropped so far to keep within ``max_bytes``."""
        return self._dropped

    def text(self) -> str:
        """The entries as JSON lines (each ends with a newline), at most ``max_bytes`` bytes in all.

        A line that has not ended yet is not included (:func:`capture` adds it when it ends).
        """
        with self._lock:
            lines, size, dropped, began = list(self._lines), self._size, self._dropped, self._began
        if not dropped:
            return b"".join(line + b"\n" for line in lines).decode("utf-8")
        skip = 0
        while True:  # make room for the line that says what was dropped
            header = self._header(dropped, began or time.time())
            if len(header) + 1 + size <= self.max_bytes or skip == len(lines):
                break
            size -= len(lines[skip]) + 1
            dropped += len(lines[skip]) + 1
            skip += 1
        return b"".join(line + b"\n" for line in [header, *lines[skip:]]).decode("utf-8")

    def _header(self, dropped: int, began: float) -> bytes:
        return _line({"time": _iso(began), "stream": "atoll",
                      "message": f"{dropped} earlier bytes of output were dropped "
                                 f"(job_log_max_bytes = {self.max_bytes})"})

    # -- recording -----------------------------------------------------------------------------

    def add(self, stream: str, message: str, *, level: str | None = None, logger: str | None = None,
            moment: float | None = None) -> None:
        """Record one entry (``level`` and ``logger`` for a ``log`` entry)."""
        if not self.max_bytes:
            return
        moment = time.time() if moment is None else moment
        entry: dict[str, Any] = {"time": _iso(moment), "stream": stream}
        if level is not None:
            entry["level"], entry["logger"] = level, logger
        entry["message"] = message
        line = _line(entry)
        cut = 0
        while len(line) > self._longest and message:  # keep the end of the message
            over = len(line) - self._longest  # each character is a byte at least: enough to cut
            message = message[over:]
            entry["message"] = message
            shorter = _line(entry)
            cut += len(line) - len(shorter)
            line = shorter
        with self._lock:
            if len(line) > self._longest:  # a logger's name longer than the limit: nothing to keep
                cut, line = cut + len(line) + 1, None
            self._dropped += cut
            if line is None:
                self._began = moment if self._began is None else self._began
            else:
                self._keep(line, moment)

    def _keep(self, line: bytes, moment: float) -> None:
        """Append a line, dropping the oldest while over the bound (the lock held)."""
        if self._began is None:
            self._began = moment
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.max_bytes:
            oldest = self._lines.popleft()
            self._size -= len(oldest) + 1
            self._dropped += len(oldest) + 1

    def write(self, stream: str, text: str) -> None:
        """Record ``text`` written to ``stream`` (``stdout`` or ``stderr``), a line an entry."""
        if not self.max_bytes or not text:
            return
        now = time.time()
        pending = self._pending[stream]
        if len(text) > 2 * self.max_bytes:  # only its last max_bytes characters could be kept
            with self._lock:
                head = pending.take() + text[:-self.max_bytes]
                self._began = now if self._began is None else self._began
                self._dropped += len(head.encode("utf-8", "replace"))
            text = text[-self.max_bytes:]
        *lines, rest = text.split("\n")
        with self._lock:
            if lines:
                if pending.chars:
                    lines[0] = pending.take() + lines[0]
                    began = pending.began
                else:
                    began = now
            if rest:
                if not pending.chars:
                    pending.began = now
                pending.pieces.append(rest)
                pending.chars += len(rest)
                if pending.chars > 2 * self.max_bytes:
                    whole = pending.take()
                    self._dropped += len(whole[:-self.max_bytes].encode("utf-8", "replace"))
                    pending.pieces, pending.chars = [whole[-self.max_bytes:]], self.max_bytes
        for i, line in enumerate(lines):
            self.add(stream, line, moment=began if i == 0 else now)

    def end_lines(self) -> None:
        """Record each stream's line that has not ended yet as an entry."""
        for stream, pending in self._pending.items():
            with self._lock:
                if not pending.chars:
                    continue
                began, text = pending.began, pending.take()
            self.add(stream, text, moment=began)

    # -- the local executor's workers ----------------------------------------------------------

    def export(self) -> tuple[list[bytes], int, float | None]:
        """What this log holds, to be :meth:`merge`-d into another (lines, dropped bytes, first time)."""
        self.end_lines()
        with self._lock:
            return list(self._lines), self._dropped, self._began

    def merge(self, exported: tuple[list[bytes], int, float | None]) -> None:
        """Add what another log :meth:`export`-ed (a worker's, with the same ``max_bytes``) after these
        entries."""
        lines, dropped, began = exported
        with self._lock:
            self._dropped += dropped
            if began is not None and (self._began is None or began < self._began):
                self._began = began
            for line in lines:
                if len(line) <= self._longest:
                    self._keep(line, began or time.time())
                else:  # another bound: cut it here
                    self._dropped += len(line)


# -- the process-wide parts: stream writers and a root handler, installed while a capture is active --


class _Passing(threading.local):
    on = False  # a log record is being passed to logging's last resort, which writes to sys.stderr


_passing = _Passing()


class _Tee:
    """Stands in for ``sys.stdout`` or ``sys.stderr``: passes text through to the stream it replaced
    and records it in the capture of the writing context."""

    def __init__(self, stream: Any, name: str):
        self._stream = stream
        self._name = name

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        log = _current.get()
        if log is not None and not _passing.on:
            log.write(self._name, text)
        return len(text) if written is None else written

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, buffer, ...
        return getattr(self._stream, name)


class _KeepLevel(logging.Filter):
    """On the root logger's other handlers while captures lower its level: lets through only the
    records they got before (those at the root's own level, or made by a logger set to a level of its
    own)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        logger = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            if logger.level:
                return True
            logger = logger.parent
        return False


class _Handler(logging.Handler):
    """On the root logger: records each record in the capture of the logging context."""

    def __init__(self, root_level: int) -> None:
        super().__init__(logging.NOTSET)
        self._traceback = logging.Formatter()
        self._made_before = _KeepLevel(root_level)  # made with the root logger's own level

    def handle(self, record: logging.LogRecord) -> bool:
        if (self._alone(record) and record.levelno >= logging.lastResort.level
                and self._made_before.filter(record)):
            _passing.on = True  # what logging does when no handler is configured; recorded once
            try:
                logging.lastResort.handle(record)
            finally:
                _passing.on = False
        return super().handle(record)

    def _alone(self, record: logging.LogRecord) -> bool:
        """True when no other handler sees ``record`` (logging would hand it to its last resort)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return False
            logger = logger.parent if logger.propagate else None
        return logging.lastResort is not None

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is None or record.levelno < log.level:
            return
        if record.name.split(".", 1)[0] in EXCLUDED_LOGGERS:
            return
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = self._traceback.formatException(record.exc_info)
            if record.exc_text:
                message = f"{message}\n{record.exc_text}"
            if record.stack_info:
                message = f"{message}\n{self._traceback.formatStack(record.stack_info)}"
            log.add("log", message, level=record.levelname, logger=record.name, moment=record.created)
        except Exception:
            self.handleError(record)


class _Installed:
    """The stream writers and the handler, while at least one capture is active in the process."""

    def __init__(self) -> None:
        root = logging.getLogger()
        self.stdout = sys.stdout = _Tee(sys.stdout, "stdout")
        self.stderr = sys.stderr = _Tee(sys.stderr, "stderr")
        self.root_level = root.level
        self.handler = _Handler(root.level)
        self.lowered_to: int | None = None
        self.filtered: list[logging.Handler] = []
        self.keep: _KeepLevel | None = None
        root.addHandler(self.handler)

    def allow(self, level: int) -> None:
        """Let records at ``level`` through the root logger."""
        root = logging.getLogger()
        if root.level <= level or root.level != (self.lowered_to or self.root_level):
            return  # low enough, or someone else set it meanwhile: theirs
        if self.lowered_to is None:
            keep = _KeepLevel(self.root_level)
            self.filtered = [h for h in root.handlers if h is not self.handler]
            for handler in self.filtered:
                handler.addFilter(keep)
            self.keep = keep
        root.setLevel(level)
        self.lowered_to = level

    def remove(self) -> None:
        """Put back what was replaced (what someone else replaced since stays theirs)."""
        root = logging.getLogger()
        root.removeHandler(self.handler)
        if self.lowered_to is not None:
            for handler in self.filtered:
                handler.removeFilter(self.keep)
            if root.level == self.lowered_to:
                root.setLevel(self.root_level)
        if sys.stdout is self.stdout:
            sys.stdout = self.stdout._stream
        if sys.stderr is self.stderr:
            sys.stderr = self.stderr._stream


_installed: _Installed | None = None
_users = 0
_install_lock = threading.Lock()


@contextmanager
def paused() -> Iterator[None]:
    """Record nothing while the block runs (its output still reaches the streams and handlers).

    A fused pass that failed is run again stage by stage to locate the failure; what the user's
    functions print the second time was recorded the first time already.
    """
    if _current.get() is None:
        yield
        return
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def capture(max_bytes: int, level: int = logging.INFO) -> Iterator[JobLog]:
    """Record what the block prints and logs at ``level`` and above; yield the :class:`JobLog`.

    See the module's documentation for what is recorded, from which threads, and the bound. The
    streams, the root logger's level and its handlers are put back when the block ends, also when it
    raises. ``max_bytes`` 0 records nothing and changes nothing.
    """
    log = JobLog(max_bytes, level)
    if not max_bytes:
        yield log
        return
    global _installed, _users
    with _install_lock:
        if _installed is None:
            _installed = _Installed()
        _users += 1
        _installed.allow(level)
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)
        log.end_lines()
        with _install_lock:
            _users -= 1
            if _users == 0:
                _installed.remove()
                _installed = None


# -- used by the local executor ----------------------------------------------------------------


class Captured:
    """A worker's result with the output its chunk printed and logged."""

    __slots__ = ("value", "output")

    def __init__(self, value: Any, output: tuple):
        self.value, self.output = value, output

    def __reduce__(self):
        return (Captured, (self.value, self.output))


def settings() -> tuple[int, int] | None:
    """``(max_bytes, level)`` of the capture active in this context, for a worker; None outside one."""
    log = _current.get()
    return None if log is None or not log.max_bytes else (log.max_bytes, log.level)


def run_captured(settings: tuple[int, int], function, *args: Any) -> Captured:
    """Worker side: call ``function(*args)`` inside a capture with ``settings``; return its result and
    what it printed and logged."""
    with capture(*settings) as log:
        value = function(*args)
    return Captured(value, log.export())


def unmerged(result: Any) -> Any:
    """Return the value of a :class:`Captured` result without taking its output (anything else as
    it is)."""
    return result.value if type(result) is Captured else result


def merged(result: Any) -> Any:
    """Caller side: add a :class:`Captured` result's output to the capture of this context; return the
    result itself (anything else is returned as it is)."""
    return merged_into(_current.get(), result)


def merged_into(log: JobLog | None, result: Any) -> Any:
    """Add a :class:`Captured` result's output to ``log`` (to nothing when None); return the result
    itself (anything else is returned as it is)."""
    if type(result) is not Captured:
        return result
    if log is not None:
        log.merge(result.output)
    return result.value
