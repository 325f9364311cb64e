"""Polling until something holds, failing with what was waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str | None = None,
               ignoring: tuple[type[BaseException], ...] = (), detail: Callable[[], str] | None = None) -> T:
    """Return the first truthy value of ``check()``, called every ``interval`` s; raise AssertionError
    naming ``what`` (and the last value) when none came within ``timeout`` s.

    An exception of a type in ``ignoring`` counts as "not yet" (a server not listening yet); any other
    propagates at once, so a check can fail early (a process that exited). ``detail()`` is added to the
    failure (the tail of a log).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: Any = check()
        except ignoring as error:
            value = error
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            name = what or getattr(check, "__name__", repr(check))
            more = f"\n{detail()}" if detail else ""
            raise AssertionError(f"waited {timeout:g} s for {name}; last: {value!r}{more}")
        time.sleep(interval)
