"""The web server of ``atoll serve``: a gunicorn worker that reads whole requests before a thread
serves them.

gunicorn's threaded worker (``gthread``) gives a connection a thread as soon as its first byte
arrives, and the thread then reads the headers and the body with no deadline: a few clients sending a
byte every few seconds hold every thread, and nobody else is answered. gunicorn's docs put a
buffering proxy (nginx) in front for that reason. :class:`BufferingWorker` does the proxy's part
itself, so ``atoll serve`` is safe on its own:

- Its main loop reads each request -- the request line, the headers and the body -- without blocking,
  and hands only a complete request to a thread. Slow or idle clients cost a socket and a buffer,
  never a thread.
- Deadlines, from the service's configuration: a request's line and headers must arrive within
  ``client_header_timeout`` seconds of its first byte, and its body within ``client_body_timeout``
  seconds after the headers; past either the client is answered 408 and the connection is closed. A
  kept-alive connection is closed after gunicorn's ``keepalive`` seconds without a new request.
- Answers are written with ``client_send_timeout``: a client that does not take each 64 KiB of the
  answer within that many seconds has its connection closed, and the thread is free again.
- A body longer than the service's ``max_request_bytes`` is not read here: the request goes to a thread
  at once and the service answers 413 without reading it.
- An upload (the app's ``ATOLL_SERVER["streamed"]`` methods and paths: ``POST /datasets``) goes to a
  thread once its headers are in, and the app reads the body from the socket as it arrives, each read
  within ``client_send_timeout``: datasets of any size pass without being held in memory. Such a
  request holds a thread while its body arrives; put a buffering proxy in front when many slow
  uploaders are expected.
- A thread stuck in a synchronous call that the watchdog could not stop (a call blocked in C code, see
  ``atoll.service.watchdog``) is given up: the watchdog has answered its caller 504, a new thread
  takes its place and the process goes on serving the requests queued behind it. Only when
  :data:`STUCK_THREADS_PER_THREAD` times ``threads`` stuck threads pile up in one process does it stop
  gracefully -- every request it has accepted is answered first -- and gunicorn starts another.

Everything else is gunicorn's: its arbiter, request parser, WSGI environ, response writer, access log,
hooks and settings (``workers``, ``threads``, ``keepalive``, ``worker_connections``, ``max_requests``,
``graceful_timeout``). Use it with ``worker_class = "atoll.service.server.BufferingWorker"``; TLS and
HTTP/2 belong to a proxy in front.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gunicorn import http
from gunicorn.http import wsgi
from gunicorn.workers import base

__all__ = ["BufferingWorker", "ServerLimits", "request_end", "chunked_end", "STUCK_THREADS_PER_THREAD"]

#: most bytes of request line and headers buffered here; beyond, gunicorn's parser reads on and
#: enforces its own limits (limit_request_line, limit_request_fields, limit_request_field_size)
HEAD_MAX = 64 * 1024
#: bytes an answer is written in, each within client_send_timeout
SEND_SLICE = 64 * 1024
#: a process stops gracefully once this many times ``threads`` of its threads are stuck
STUCK_THREADS_PER_THREAD = 2
#: seconds between two sweeps of the connections' deadlines
SWEEP = 0.25
#: seconds a stopping process still waits for a request on an idle connection (answered with
#: ``Connection: close``), so that one a client is sending just then is not dropped
STOP_LINGER = 2.0
#: the largest body a WSGI app without ``MAX_CONTENT_LENGTH`` gets buffered
DEFAULT_MAX_BODY = 16 * 1024 * 1024

_QUIET_ERRNOS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)


class ServerLimits:
    """The deadlines and sizes the worker applies, read from the WSGI app's ``config`` (Flask) when it
    has them (``create_app`` puts the service's keys there), else the defaults below."""

    def __init__(self, header_timeout: float = 10.0, body_timeout: float = 60.0,
                 send_timeout: float = 30.0, max_body: int = DEFAULT_MAX_BODY,
                 streamed: tuple = ()):
        self.header_timeout = header_timeout
        #: (method, path prefix) pairs whose bodies are streamed to the app, not buffered
        self.streamed = tuple((m.encode("ascii"), p.encode("ascii")) for m, p in streamed)
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.max_body = max_body

    @classmethod
    def of(cls, app: Any) -> ServerLimits:
        """Return the limits of WSGI ``app``: its ``config["ATOLL_SERVER"]`` and ``MAX_CONTENT_LENGTH``."""
        config = getattr(app, "config", None) or {}
        limits = cls(**config.get("ATOLL_SERVER", {}))
        if config.get("MAX_CONTENT_LENGTH"):
            limits.max_body = config["MAX_CONTENT_LENGTH"]
        return limits


# -- where a request ends ----------------------------------------------------------------------


def request_end(buf: bytes | bytearray, max_body: int) -> tuple[int | None, bool, bool]:
    """Return ``(end, complete, expects_continue)`` for the request at the start of ``buf``.

    ``end`` is the index just past the request when all of it is buffered, or ``None`` when more bytes
    are to come. ``complete`` False means "hand it over as it is": headers too long or malformed, a
    body over ``max_body``; gunicorn's parser and the app answer those. ``expects_continue`` says the
    client waits for ``100 Continue`` before it sends the body.

    >>> request_end(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\nGET /next", 100)
    (27, True, False)
    >>> request_end(b"POST / HTTP/1.1\\r\\nContent-Length: 5\\r\\n\\r\\nab", 100)
    (None, True, False)
    >>> request_end(b"POST / HTTP/1.1\\r\\nContent-Length: 500\\r\\n\\r\\n", 100)
    (0, False, False)
    >>> request_end(b"POST / HTTP/1.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n", 100)
    (52, True, False)
    """
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buf) > HEAD_MAX or b"\n\n" in buf:
            return 0, False, False
        return None, True, False
    body_start = head_end + 4
    length, chunked, expects = None, False, False
    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if length is not None or not value.strip().isdigit():
                return 0, False, False  # repeated or not a number: the parser answers 400
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True  # chunked, or a coding the parser refuses
        elif name == b"expect":
            expects = value.strip().lower() == b"100-continue"
    if chunked:
        if length is not None:
            return 0, False, False  # both: request smuggling; the parser answers 400
        end = chunked_end(buf, body_start)
        if end is None and len(buf) - body_start > max_body:
            return 0, False, expects
        if end == -1:
            return 0, False, False
        return end, True, expects and end is None
    length = length or 0
    if length > max_body:
        return 0, False, False
    end = body_start + length
    return (end, True, False) if len(buf) >= end else (None, True, expects)


def chunked_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Return the index just past a chunked body starting at ``pos`` in ``buf``, None while it is
    incomplete, -1 when it is not chunked encoding.

    >>> chunked_end(b"4\\r\\nwiki\\r\\n0\\r\\n\\r\\n", 0), chunked_end(b"4\\r\\nwi", 0)
    (14, None)
    >>> chunked_end(b"x\\r\\n", 0)
    -1
    >>> chunked_end(b"0\\r\\nTrailer: 1\\r\\n\\r\\n", 0)
    17
    """
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1 if len(buf) - pos > 1024 else None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return -1
        if size < 0:
            return -1
        if size == 0:  # the last chunk, then trailer lines up to an empty one
            end = buf.find(b"\r\n\r\n", eol)
            return None if end < 0 else end + 4
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return None


# -- connections ---------------------------------------------------------------------------------


class _ClientSocket(socket.socket):
    """A client connection whose ``sendall`` writes in slices, each within the socket's timeout (a
    plain ``sendall`` with a timeout bounds the whole answer, however large)."""

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), SEND_SLICE):
            super().sendall(view[start:start + SEND_SLICE], flags)


class _Source:
    """What gunicorn's request parser reads: the bytes buffered here, then -- only for a request handed
    over before it was complete -- the socket itself."""

    def __init__(self, data: bytes, sock: socket.socket | None):
        self._data = memoryview(data)
        self._at = 0
        self._sock = sock

    def recv(self, size: int) -> bytes:
        if self._at < len(self._data):
            chunk = bytes(self._data[self._at:self._at + size])
            self._at += len(chunk)
            return chunk
        return self._sock.recv(size) if self._sock is not None else b""


_IDLE, _READING, _BUSY = "idle", "reading", "busy"


class _Connection:
    """One client connection, read by the main loop while not busy in a thread."""

    __slots__ = ("sock", "client", "server", "buf", "state", "deadline", "head_done", "continued",
                 "abandoned")

    def __init__(self, sock: socket.socket, client: Any, server: Any):
        self.sock = sock
        self.client = client
        self.server = server
        self.buf = bytearray()
        self.state = _IDLE
        self.deadline = 0.0
        self.head_done = False  # the headers are in, the body is being read
        self.continued = False  # 100 Continue sent for this request
        self.abandoned = False  # its thread is stuck; the watchdog answered it

    def start_request(self) -> None:
        self.head_done = self.continued = False


class _Threads:
    """The request threads of one web process; a stuck thread can be replaced by a new one."""

    def __init__(self, size: int, log: Any):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._retiring: set[int] = set()
        self._lock = threading.Lock()
        self._log = log
        self.size = size
        for _ in range(size):
            self._start()

    def _start(self) -> None:
        threading.Thread(target=self._serve, name="atoll-request", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._tasks.put((fn, args))

    def replace(self, ident: int) -> None:
        """Start a thread in place of thread ``ident``, which leaves once its task returns, if ever."""
        with self._lock:
            self._retiring.add(ident)
            self.size += 1  # shutdown() owes the new thread its sentinel too
        self._start()

    def shutdown(self) -> None:
        """Let every thread leave once the tasks queued before this call are done (a stuck one leaves
        with the process)."""
        for _ in range(self.size):
            self._tasks.put(None)

    def _serve(self) -> None:
        me = threading.get_ident()
        while True:
            try:
                task = self._tasks.get()
                if task is None:
                    return
                fn, args = task
                fn(*args)
            except BaseException:  # noqa: BLE001 - a late time-limit exception of a stuck call
                self._log.debug("a request thread's task ended with an exception", exc_info=True)
            with self._lock:
                if me in self._retiring:
                    self._retiring.discard(me)
                    return


class BufferingWorker(base.Worker):
    """A gunicorn worker that serves complete requests only (module docstring)."""

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            self.log.error("atoll's worker does not serve TLS: terminate TLS in a proxy in front")
            sys.exit(1)
        self.selector = selectors.DefaultSelector()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.connections: set[_Connection] = set()
        self.accepting = False
        self.busy = 0  # requests handed to threads (running or queued), stuck ones not counted
        self.stuck = 0
        super().init_process()

    # -- the main loop (one thread: every _Connection not busy is touched only here) ------------

    def run(self) -> None:
        self.limits = ServerLimits.of(self.wsgi)
        self.threads = _Threads(self.cfg.threads, self.log)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._woken)
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, self._woken)  # signals
        self._accept_from(True)
        next_sweep = 0.0
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            # a process whose threads are all busy leaves new connections to the other processes
            self._accept_from(len(self.connections) < self.cfg.worker_connections
                              and self.busy < self.cfg.threads)
            self._dispatch(1.0)
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + SWEEP
        self._stop_gracefully()

    def _dispatch(self, timeout: float) -> None:
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            return
        for key, _ in events:
            key.data(key.fileobj)

    def _accept_from(self, enabled: bool) -> None:
        if enabled == self.accepting:
            return
        for listener in self.sockets:
            if enabled:
                listener.setblocking(False)
                self.selector.register(listener, selectors.EVENT_READ, self._accept)
            else:
                self.selector.unregister(listener)
        self.accepting = enabled

    def _accept(self, listener: Any) -> None:
        try:
            raw, client = listener.accept()
        except OSError as exc:  # another worker took it, or the client left
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        sock = _ClientSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(sock, client, listener.getsockname())
        self.connections.add(conn)
        self._wait_for_request(conn, time.monotonic() + self.limits.header_timeout)

    def _wait_for_request(self, conn: _Connection, deadline: float) -> None:
        conn.state, conn.deadline = _IDLE, deadline
        conn.start_request()
        self.selector.register(conn.sock, selectors.EVENT_READ, self._readable_of(conn))

    def _readable_of(self, conn: _Connection) -> Callable[[Any], None]:
        return lambda _sock: self._read(conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # the client closed its side
            self._close(conn)
            return
        if conn.state == _IDLE:
            conn.state, conn.deadline = _READING, time.monotonic() + self.limits.header_timeout
        conn.buf += data
        self._advance(conn)

    def _advance(self, conn: _Connection) -> None:
        """Hand ``conn``'s request to a thread once it is all here (or cannot be read here)."""
        end, complete, expects = request_end(conn.buf, self.limits.max_body)
        if end is None:
            if not conn.head_done and conn.buf.find(b"\r\n\r\n") >= 0:
                conn.head_done = True
                conn.deadline = time.monotonic() + self.limits.body_timeout
                if self._streamed(conn.buf):  # an upload: the app reads its body as it arrives
                    end, complete = 0, False
            if end is None and expects and not conn.continued:
                conn.continued = True
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            if end is None:
                return
        self._hand_over(conn, end, complete)

    def _streamed(self, buf: bytearray) -> bool:
        """True when the request at the start of ``buf`` is one whose body the app streams (an upload)."""
        method, _, rest = bytes(buf[:buf.find(b"\r\n")]).partition(b" ")
        target = rest.split(b" ", 1)[0]
        return any(method == m and target.startswith(p) for m, p in self.limits.streamed)

    def _hand_over(self, conn: _Connection, end: int, complete: bool) -> None:
        """Give ``conn``'s request to a thread: the first ``end`` bytes when complete, else all that is
        buffered, the rest read from the socket by the thread."""
        self.selector.unregister(conn.sock)
        conn.state = _BUSY
        self.busy += 1
        if complete:
            data, conn.buf = bytes(conn.buf[:end]), conn.buf[end:]
        else:
            data, conn.buf = bytes(conn.buf), bytearray()
        self.threads.submit(self._serve, conn, data, complete)

    def _sweep(self, now: float) -> None:
        """Close the connections past their deadline: 408 to a request under way, nothing to an idle one."""
        for conn in [c for c in self.connections if c.state != _BUSY and c.deadline <= now]:
            if conn.state == _READING:
                self._time_out(conn)
            self._close(conn)

    def _time_out(self, conn: _Connection) -> None:
        if conn.head_done:
            what, limit = "body", ("client_body_timeout", self.limits.body_timeout)
        else:
            what, limit = "line and headers", ("client_header_timeout", self.limits.header_timeout)
        message = (f"the request's {what} did not arrive within {limit[0]} ({limit[1]:g} s); the "
                   f"connection is closed")
        body = json.dumps({"error": {"name": "RequestTimeout", "message": message}}).encode()
        head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: "
                f"{len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
        try:
            conn.sock.send(head + body)
        except OSError:
            pass
        self.log.info("closed a connection from %s: %s", _peer(conn.client), message)

    def _close(self, conn: _Connection) -> None:
        if conn.state != _BUSY:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        self.connections.discard(conn)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _woken(self, fileobj: Any) -> None:
        try:
            while os.read(fileobj if isinstance(fileobj, int) else fileobj.fileno(), 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                conn, keep = self.done.get_nowait()
            except queue.Empty:
                return
            if keep is None:
                self._given_up(conn)
            else:
                self._served(conn, keep)

    def _given_up(self, conn: _Connection) -> None:
        """Forget ``conn``, whose thread is stuck; stop this process once too many threads are."""
        self.connections.discard(conn)
        self.busy -= 1
        self.stuck += 1
        limit = STUCK_THREADS_PER_THREAD * self.cfg.threads
        if self.stuck >= limit and self.alive:
            self.log.error("%d request threads of this web process are stuck in calls past their time "
                           "limit; it stops once the requests it accepted are answered, and a new "
                           "process takes its place", self.stuck)
            self.alive = False

    def _served(self, conn: _Connection, keep: bool) -> None:
        """Take back ``conn`` from its thread: wait for its next request, or close it."""
        if conn.abandoned:  # a stuck thread came back, at last: its caller had its 504
            self.stuck -= 1
            self.connections.discard(conn)
            try:
                conn.sock.close()
            except OSError:
                pass
            return
        self.busy -= 1
        if not keep:
            conn.state = _IDLE  # not busy any more: _close unregisters nothing
            self._close(conn)
            return
        try:
            conn.sock.setblocking(False)
        except OSError:
            conn.state = _IDLE
            self._close(conn)
            return
        linger = self.cfg.keepalive if self.alive else min(self.cfg.keepalive, STOP_LINGER)
        self._wait_for_request(conn, time.monotonic() + linger)
        if conn.buf:  # the client sent its next request already (pipelining)
            conn.state, conn.deadline = _READING, time.monotonic() + self.limits.header_timeout
            self._advance(conn)

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: the main loop wakes anyway

    def _abandon(self, conn: _Connection, thread_id: int) -> bool:
        """Give up the request of ``conn`` whose thread ``thread_id`` is stuck (the watchdog answered
        it): a new thread takes that one's place. Called from the watchdog's thread."""
        conn.abandoned = True
        self.threads.replace(thread_id)
        self.done.put((conn, None))
        self._wake()
        return True

    def _stop_gracefully(self) -> None:
        """Answer what was accepted, then leave: gunicorn starts another process in this one's place."""
        self._accept_from(False)
        now = time.monotonic()
        deadline = now + self.cfg.graceful_timeout
        for conn in self.connections:
            if conn.state == _IDLE:
                conn.deadline = min(conn.deadline, now + STOP_LINGER)
        while time.monotonic() < deadline:
            if not self.connections:
                break
            self.notify()
            self._dispatch(0.2)
            self._sweep(time.monotonic())
        self.threads.shutdown()
        for conn in list(self.connections):
            if conn.state != _BUSY:
                self._close(conn)

    # -- in a request thread --------------------------------------------------------------------

    def _serve(self, conn: _Connection, data: bytes, complete: bool) -> None:
        keep = False
        req = None
        try:
            conn.sock.settimeout(self.limits.send_timeout)  # blocking, each read and write bounded
            parser = http.RequestParser(self.cfg, _Source(data, None if complete else conn.sock),
                                        conn.client)
            req = next(parser)
            keep = self._handle(req, conn, complete) and complete
            if keep:
                while req.body.read(64 * 1024):  # what the app left unread, from memory
                    pass
        except (StopIteration, http.errors.NoMoreData):
            pass
        except TimeoutError:
            self.log.info("closed a connection from %s: it did not take the answer within "
                          "client_send_timeout (%g s)", _peer(conn.client), self.limits.send_timeout)
        except OSError as exc:
            if exc.errno not in _QUIET_ERRNOS:
                self.log.exception("Socket error processing request.")
        except Exception as exc:  # noqa: BLE001 - gunicorn's answer to what its parser refused
            if not conn.abandoned:
                self.handle_error(req, conn.sock, conn.client, exc)
        finally:
            self.done.put((conn, keep))
            self._wake()

    def _handle(self, req: Any, conn: _Connection, complete: bool = True) -> bool:
        """Serve one parsed request (gunicorn's threaded worker does the same); return True to keep
        the connection open for another. A request handed over before its body was all here (an
        upload, or a body over the limit) is answered with ``Connection: close``: what the app left
        unread is not drained, so the connection cannot carry another request."""
        environ: dict = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            environ["atoll.abandon"] = lambda thread_id: self._abandon(conn, thread_id)
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                    self._wake()
            if not self.alive or not self.cfg.keepalive or not complete:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                if not conn.abandoned:
                    self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except Exception:
            if resp is not None and resp.headers_sent:  # a 500 now would corrupt the answer
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - a hook's failure is logged, the answer stands
                self.log.exception("Exception in post_request hook")


def _peer(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if isinstance(client, tuple) and len(client) >= 2 else str(client)
