"""A service with pipelines that never end, for the synchronous time-limit tests
(``atoll serve stuck_service:service`` with ``ATOLL_CONF`` written by the tests)."""

from __future__ import annotations

import os
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
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    return service


service = build_service()
