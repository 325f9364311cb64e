"""pytest plugin: a real HTTP callback receiver on a loopback port.

``callback_receiver`` is a threaded ``http.server`` (keep-alive, Nagle off) that records every POST
(path, headers, raw body, parsed JSON). It can be told to answer another status (``fail_with(500)``)
or to be down — its port closed and every open connection cut — and to come back on the same port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Call:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every keep-alive answer stalls ~40 ms

    def setup(self) -> None:
        super().setup()
        self.server.receiver._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.connection, add=False)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        receiver = self.server.receiver
        status = receiver.status
        receiver._record(Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
        answer = b'{"ok":true}' if status < 300 else b'{"ok":false}'
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", f"{receiver.url}/redirected")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CallbackReceiver:
    """A loopback HTTP server recording POSTs; see the module docstring."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.status = 200
        self._lock = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self.port = 0
        self.up()
        self.url = f"http://127.0.0.1:{self.port}"

    # -- control -----------------------------------------------------------------------------

    def up(self) -> None:
        """Listen (again, on the same port)."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def down(self) -> None:
        """Stop listening and cut every open connection: deliveries now fail to connect."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fail_with(self, status: int) -> None:
        """Answer every following POST with ``status`` (200 to recover)."""
        self.status = status

    def reset(self) -> None:
        """Forget the calls recorded so far and answer 200 again."""
        with self._lock:
            self.calls.clear()
        self.status = 200

    # -- what arrived ------------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def accepted(self) -> list[Call]:
        """Return the calls answered with a 2xx status."""
        with self._lock:
            return [c for c in self.calls if 200 <= c.status < 300]

    def job_ids(self) -> set[str]:
        """Return the job ids of the accepted calls."""
        return {c.json["job_id"] for c in self.accepted()}

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        """Wait until ``predicate(receiver)`` is true; return whether it became true in time."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._lock:
                self._lock.wait(min(left, 0.2))
        return True

    def wait_for_jobs(self, job_ids: set[str] | list[str], timeout: float = 60.0) -> set[str]:
        """Wait until every job id has an accepted call; return the ids still missing."""
        wanted = set(job_ids)
        self.wait_for(lambda r: wanted <= r.job_ids(), timeout)
        return wanted - self.job_ids()

    def close(self) -> None:
        """Stop the server for good."""
        self.down()


@pytest.fixture
def callback_receiver():
    """A fresh :class:`CallbackReceiver` on a loopback port, closed after the test."""
    receiver = CallbackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
