"""A service with pipelines that never end, for the synchronous time-limit tests
(``atoll serve stuck_service:service`` with ``ATOLL_CONF`` written by the tests)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from atoll import Atoll, Pipeline
from atoll.config import Config


def never_ends(pid_file: str) -> None:
    """Write this process's pid to ``pid_file``, then loop forever in Python code."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.2)


def never_returns_from_c(pid_file: str) -> None:
    """Write this process's pid to ``pid_file``, then block inside one C call (a 12-day sleep)."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(10**6)


def swallows_everything(_: object) -> None:
    """Loop forever, ignoring every Exception (as careless retry loops do)."""
    while True:
        try:
            time.sleep(0.2)
        except Exception:  # noqa: S112 - the point of this pipeline
            continue


def sleeps(_: object) -> None:
    """Sleep ten minutes in one C call, as a call of a slow external API would wait."""
    time.sleep(600)


def blocks_on_io(port: int) -> bytes:
    """Connect to ``port`` on loopback and wait for a byte that never comes (a blocking socket read)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        return sock.recv(1)


def spins(_: object) -> int:
    """Count for ever in Python code (a CPU loop)."""
    n = 0
    while True:
        n += 1


def repeat(n: int) -> str:
    """Return ``n`` characters (a large answer from a small request)."""
    return "x" * n


def nap(seconds: float) -> float:
    """Sleep ``seconds``, return them."""
    time.sleep(seconds)
    return seconds


def build_service(config: Config | None = None) -> Atoll:
    """Return the service of the time-limit tests."""
    service = Atoll(config)
    service.register_pipeline("/never_ends", Pipeline(name="never_ends").map(never_ends))
    service.register_pipeline("/never_ends_too", Pipeline(name="never_ends_too").map(never_ends))
    service.register_pipeline("/never_returns_from_c",
                              Pipeline(name="never_returns_from_c").map(never_returns_from_c))
    service.register_pipeline("/swallows_everything",
                              Pipeline(name="swallows_everything").to(swallows_everything))
    service.register_pipeline("/nap", Pipeline(name="nap").map(nap))
    service.register_pipeline("/sleeps", Pipeline(name="sleeps").to(sleeps))
    service.register_pipeline("/blocks_on_io", Pipeline(name="blocks_on_io").to(blocks_on_io))
    service.register_pipeline("/spins", Pipeline(name="spins").to(spins))
    service.register_pipeline("/repeat", Pipeline(name="repeat").to(repeat))
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    return service


service = build_service()
