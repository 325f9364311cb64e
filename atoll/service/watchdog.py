"""The time limit of synchronous calls: a watchdog that stops a call past its ``sync_time_limit``.

A synchronous call runs in its request thread, as fast as a plain Flask view. Each web process has
one watchdog thread that looks at the calls in progress every :data:`TICK` seconds; a call past its
limit is stopped in two steps:

1. :class:`SyncTimeLimitExceeded` is raised inside the call's thread (``PyThreadState_SetAsyncExc``).
   Python code stops at its next instruction: the call unwinds and answers 504. It derives from
   ``BaseException``, so a pipeline's ``except Exception`` does not swallow it.
2. A thread blocked inside C code (a long ``time.sleep``, a lock, a socket read) never reaches its
   next instruction, and a thread cannot be killed. If the call is still running :data:`GRACE`
   seconds later, the watchdog answers the caller 504 itself on the connection's socket and gives the
   thread up: under ``atoll serve``'s web server (:mod:`atoll.service.server`) a new thread takes its
   place and the process goes on answering the requests queued behind it. Under gunicorn's own
   ``gthread`` worker, which cannot replace a thread, the web process is ended instead: it stops
   accepting connections (SIGTERM, gunicorn's graceful stop), lets the other calls in progress
   finish, then exits, and gunicorn starts a fresh one; requests it had accepted but not yet begun
   are dropped, so run it with ``atoll.service.server.BufferingWorker``. Under another server the
   call is logged as stuck and left running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from atoll.config import Config
from atoll.encoding import to_json
from atoll.service.jobs.model import time_limit_message

__all__ = ["sync_time_limit", "Watchdog", "SyncTimeLimitExceeded", "time_limit_error",
           "CountRequests"]

log = logging.getLogger("atoll.service")

#: seconds between two looks of the watchdog at the calls in progress
TICK = 0.1
#: seconds a call may take to unwind after SyncTimeLimitExceeded before its process is ended
GRACE = 2.0
#: longest wait, seconds, for a doomed web process's other calls to finish before it exits
DRAIN = 30.0


class SyncTimeLimitExceeded(BaseException):
    """A synchronous call ran past its limit (raised inside the call's thread by the watchdog)."""


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Make ``exc_type`` raise in thread ``thread_id`` at its next instruction (None: cancel that)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               None if exc_type is None else ctypes.py_object(exc_type))


def sync_time_limit(config: Config, pipeline: str) -> float | None:
    """Return the seconds a synchronous call of ``pipeline`` may run: its ``pipeline_time_limits``
    entry's ``sync``, else ``sync_time_limit``; None means no limit."""
    own = config.pipeline_time_limits.get(pipeline) or {}
    return own.get("sync", config.sync_time_limit)


def time_limit_error(name: str, limit: float) -> str:
    """Return the JSON text of the 504 answer of a call of ``name`` stopped after ``limit`` s."""
    message = time_limit_message(name, limit, "sync_time_limit",
                                 ' and was stopped; submit it as a job ("async": true) to run longer')
    return to_json({"error": {"name": "TimeLimitExceeded", "message": message, "limit": limit}}, path="error")


@dataclass(eq=False)
class _Call:
    """A synchronous call in progress."""

    thread_id: int
    name: str
    limit: float
    deadline: float
    socket: Any = None  # the client connection, when the server hands it over (gunicorn)
    abandon: Any = None  # atoll's server: abandon(thread_id) gives the thread up for a new one
    interrupted_at: float | None = None
    done: bool = False
    answered: bool = field(default=False)


class Watchdog:
    """Stops the synchronous calls of one web process that run past their limits (module docstring)."""

    def __init__(self) -> None:
        self._calls: set[_Call] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._ending = False
        #: requests of this web process in progress, of every endpoint (for a graceful end)
        self.active = 0

    def request_started(self) -> None:
        """Count a request in (any endpoint): a process ends only once its requests are answered."""
        with self._lock:
            self.active += 1

    def request_finished(self) -> None:
        """Count a request out."""
        with self._lock:
            self.active -= 1

    def run(self, name: str, limit: float, environ: dict, work: Any) -> Any:
        """Return ``work()``, or raise SyncTimeLimitExceeded once it has run ``limit`` seconds."""
        call = _Call(threading.get_ident(), name, limit, time.monotonic() + limit,
                     environ.get("gunicorn.socket"), environ.get("atoll.abandon"))
        self._start(call)
        try:
            result = work()
        except BaseException:
            self._finish(call)
            raise
        if self._finish(call):  # the limit struck between the end of the work and here
            raise SyncTimeLimitExceeded(name)
        return result

    def _start(self, call: _Call) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # none yet, or a forked process
                self._calls, self._pid = set(), os.getpid()
                self._thread = threading.Thread(target=self._watch, name="atoll-watchdog", daemon=True)
                self._thread.start()
            self._calls.add(call)

    def _finish(self, call: _Call) -> bool:
        """Forget ``call``; return True if its SyncTimeLimitExceeded arrived here instead of in the work."""
        struck = False
        while True:
            try:
                with self._lock:
                    call.done = True
                    self._calls.discard(call)
                    if call.interrupted_at is not None:  # cancel it if it has not been raised yet
                        _raise_in(call.thread_id, None)
                return struck
            except SyncTimeLimitExceeded:
                struck = True

    def _watch(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                for call in self._calls:
                    if call.interrupted_at is None and now >= call.deadline:
                        call.interrupted_at = now
                        _raise_in(call.thread_id, SyncTimeLimitExceeded)
                        log.warning("pipeline %r: synchronous call stopped after its limit of %s s",
                                    call.name, call.limit)
                stuck = [c for c in self._calls if c.interrupted_at is not None and not c.answered
                         and now - c.interrupted_at >= GRACE]
                for call in stuck:
                    call.answered = True
            for call in stuck:
                self._abandon(call)

    def _abandon(self, call: _Call) -> None:
        """Answer a call stuck in C code 504 on its socket, then give its thread up (atoll's server)
        or end this web process (gunicorn's gthread worker)."""
        if call.socket is None:
            log.error("pipeline %r: a synchronous call is stuck in C code past its limit and cannot be "
                      "stopped under this web server; it holds its thread until it returns", call.name)
            return
        body = time_limit_error(call.name, call.limit).encode("utf-8")
        head = (f"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
        try:
            call.socket.sendall(head + body)
            call.socket.shutdown(2)
        except OSError as exc:
            log.warning("pipeline %r: could not answer the stuck call: %s", call.name, exc)
        if call.abandon is not None:
            call.abandon(call.thread_id)
            log.error("pipeline %r: a synchronous call is stuck in C code past its limit; answered 504 "
                      "and left its thread to it, a new thread serves in its place", call.name)
            return
        log.error("pipeline %r: a synchronous call is stuck in C code past its limit; answered 504, "
                  "ending web process %d so that it stops (a new one takes its place)", call.name,
                  os.getpid())
        if not self._ending:
            self._ending = True
            threading.Thread(target=self._end_process, name="atoll-watchdog-exit", daemon=True).start()

    def _end_process(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # gunicorn's graceful stop: no new connections
        time.sleep(1.5)  # gunicorn's main loop notices within a second and stops taking requests
        deadline = time.monotonic() + DRAIN
        while time.monotonic() < deadline:
            with self._lock:
                if self.active <= sum(1 for c in self._calls if c.answered):
                    break
            time.sleep(TICK)
        time.sleep(0.2)  # let the last answers leave
        os._exit(0)


class CountRequests:
    """WSGI middleware: counts each request of the wrapped app in and out on ``watchdog`` (every
    endpoint), so that a web process the watchdog ends lets the requests in progress finish first."""

    def __init__(self, app: Callable[..., Iterable[bytes]], watchdog: Watchdog):
        self.app = app
        self.watchdog = watchdog

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        watchdog = self.watchdog
        watchdog.request_started()
        try:
            return self.app(environ, start_response)
        finally:
            watchdog.request_finished()
