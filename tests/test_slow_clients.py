"""Slow and idle clients hold no thread of ``atoll serve``: its web server reads whole requests, with
deadlines, before a thread serves them (:mod:`atoll.service.server`), and writes answers with one.

Real parts only: ``atoll serve`` on a loopback port, raw sockets as the slow clients.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import serve, write_config

pytestmark = pytest.mark.slow


def config(folder: Path, **values) -> Path:
    return write_config(folder, embedded_worker=False, log_level="WARNING", **values)


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Return what the server sends until it closes the connection (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def error_of(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def test_a_hundred_slow_clients_hold_no_thread_and_are_closed_after_the_header_deadline(tmp_path):
    """100 sockets trickle a request line one byte every 2 s for 30 s (reconnecting when closed):
    meanwhile /livez and a synchronous call answer within 1 s every time, and the server closes
    every slow socket with 408 within client_header_timeout (10 s by default) + 2 s."""
    trickles, seconds, header_timeout = 100, 30, 10.0
    stop = threading.Event()
    lived: list[tuple[float, bytes]] = []
    with serve("stuck_service:service", config(tmp_path), workers=2, threads=4) as (url, _):
        address = host_port(url)

        def slow_client() -> None:
            request = b"POST /pipelines/double HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            while not stop.is_set():
                with socket.create_connection(address) as sock:
                    sock.settimeout(2)
                    started = time.monotonic()
                    for byte in request * 100:
                        try:
                            sock.send(bytes([byte]))
                            answer = sock.recv(65536)  # waits 2 s, unless the server speaks
                        except TimeoutError:
                            if stop.is_set():
                                return
                            continue
                        except OSError:
                            answer = b""
                        lived.append((time.monotonic() - started, answer + read_until_closed(sock, 2)))
                        break

        attackers = [threading.Thread(target=slow_client, daemon=True) for _ in range(trickles)]
        for attacker in attackers:
            attacker.start()
        time.sleep(1)  # every slow socket has sent its first bytes
        slowest, rounds = 0.0, 0
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert requests.get(f"{url}/livez", timeout=5).status_code == 200
                livez = time.monotonic() - started
                started = time.monotonic()
                answer = requests.post(f"{url}/pipelines/double", json={"data": [rounds]}, timeout=5)
                assert answer.json() == {"results": [2 * rounds]}
                slowest = max(slowest, livez, time.monotonic() - started)
                assert slowest < 1.0, f"a request waited {slowest:.2f} s behind the slow clients"
                rounds += 1
                time.sleep(0.2)
        finally:
            stop.set()
        for attacker in attackers:
            attacker.join(15)
    assert len(lived) >= trickles * 2  # every slow socket was closed at least twice in 30 s
    for age, answer in lived:
        assert header_timeout - 1 <= age <= header_timeout + 2, age
        status, error = error_of(answer)
        assert status == 408 and error["name"] == "RequestTimeout"
        assert "client_header_timeout" in error["message"]
    print(f"\n{trickles} slow sockets for {seconds} s: {rounds} /livez + sync rounds, slowest "
          f"{slowest * 1000:.0f} ms; {len(lived)} slow connections closed after "
          f"{min(a for a, _ in lived):.1f}-{max(a for a, _ in lived):.1f} s")


def test_a_slow_body_and_an_idle_connection_are_closed_after_their_deadlines(tmp_path):
    with serve("stuck_service:service", config(tmp_path, client_header_timeout=2, client_body_timeout=3),
               workers=1, threads=1) as (url, _):
        address = host_port(url)
        idle = socket.create_connection(address)
        slow_body = socket.create_connection(address)
        slow_body.sendall(b"POST /pipelines/double HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"data\": [")
        started = time.monotonic()
        # the only thread answers others meanwhile
        assert requests.post(f"{url}/pipelines/double", json={"data": [1]}, timeout=5).json() == \
            {"results": [2]}
        assert read_until_closed(idle, 10) == b""  # nothing was asked: closed without a word
        idle_for = time.monotonic() - started
        answer = read_until_closed(slow_body, 10)
        body_for = time.monotonic() - started
        idle.close()
        slow_body.close()
    assert 1.5 <= idle_for <= 4.5
    assert 2.5 <= body_for <= 5.5
    status, error = error_of(answer)
    assert status == 408 and error["name"] == "RequestTimeout"
    assert "client_body_timeout (3 s)" in error["message"]


def test_a_client_that_does_not_read_its_answer_frees_the_thread_after_the_send_deadline(tmp_path):
    with serve("stuck_service:service", config(tmp_path, client_send_timeout=1), workers=1,
               threads=1) as (url, _):
        reader = socket.create_connection(host_port(url))
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = b'{"data": 50000000}'
        reader.sendall(b"POST /pipelines/repeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.5)  # its 50 MB answer fills the socket buffers; the only thread waits to write
        started = time.monotonic()
        answer = requests.post(f"{url}/pipelines/double", json={"data": [3]}, timeout=30)
        waited = time.monotonic() - started
        assert answer.json() == {"results": [6]}
        received = read_until_closed(reader, 10)
        reader.close()
    assert waited < 10
    assert 0 < len(received) < 50_000_000  # cut off, the connection closed


def test_pipelined_chunked_and_expect_continue_requests_are_answered(tmp_path):
    with serve("stuck_service:service", config(tmp_path), workers=1, threads=2) as (url, _):
        address = host_port(url)
        body = b'{"data": [1, 2]}'
        one = (b"POST /pipelines/double HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        with socket.create_connection(address) as sock:  # two requests in one write
            sock.sendall(one + one.replace(b"Host: x", b"Host: x\r\nConnection: close"))
            answers = read_until_closed(sock, 10)
        assert answers.count(b"HTTP/1.1 200 OK") == 2 and answers.count(b'{"results":[2,4]}') == 2

        chunked = requests.post(f"{url}/pipelines/double", data=iter([b'{"data": ', b"[5, 6]}"]),
                                headers={"Content-Type": "application/json"}, timeout=10)
        assert chunked.json() == {"results": [10, 12]}

        with socket.create_connection(address) as sock:
            sock.settimeout(5)
            sock.sendall(b"POST /pipelines/double HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                         % len(body))
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")  # before any body
            sock.sendall(body)
            assert b'{"results":[2,4]}' in read_until_closed(sock, 10)

        with requests.Session() as session:  # one kept-alive connection, many requests
            for i in range(50):
                assert session.post(f"{url}/pipelines/double", json={"data": [i]},
                                    timeout=10).json() == {"results": [2 * i]}
