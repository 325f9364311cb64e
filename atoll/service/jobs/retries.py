"""Job retries: a registered pipeline's ``retries`` policy, run on Celery's ``Task.retry``.

A job whose run raises one of the policy's exceptions (``on``: names of exception classes, matched
against the class and its bases, as Celery's ``autoretry_for`` matches with ``isinstance``) is queued
again after a backoff, until it has made ``max`` attempts. Its record is ``retrying`` while it waits;
``attempts`` counts the runs started (a run whose worker was killed counts too) and ``attempt_errors``
keeps the error of each failed attempt. A cancelled job is never retried.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atoll.errors import StageFailure

__all__ = ["RetryPolicy", "InvalidRetryPolicy"]


class InvalidRetryPolicy(ValueError):
    """A ``retries`` policy given at registration that cannot be used; the text says which key."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a pipeline's jobs are retried.

    ``max`` is the most attempts a job makes (the first run included: ``max=3`` is two retries);
    ``on`` the exception names retried (an empty tuple retries nothing); the n-th retry waits
    ``backoff * 2 ** (n - 1)`` seconds, at most ``backoff_max``, and with ``jitter`` a random time
    between 0 and that (Celery's ``retry_jitter``, "full jitter")."""

    max: int = 3
    on: tuple[str, ...] = ()
    backoff: float = 1.0
    backoff_max: float = 600.0
    jitter: bool = True

    _KEYS = ("max", "on", "backoff", "backoff_max", "jitter")

    @classmethod
    def parse(cls, value: Any) -> RetryPolicy | None:
        """Return the policy of ``value`` (a RetryPolicy, a mapping of its keys, or None), or raise
        :class:`InvalidRetryPolicy` naming the key at fault."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if not isinstance(value, Mapping):
            raise InvalidRetryPolicy(f"retries must be a mapping of {', '.join(cls._KEYS)}; got "
                                     f"{type(value).__name__}")
        unknown = sorted(set(value) - set(cls._KEYS))
        if unknown:
            raise InvalidRetryPolicy(f"retries: unknown key(s) {unknown}; known: {', '.join(cls._KEYS)}")
        most = value.get("max", cls.max)
        if isinstance(most, bool) or not isinstance(most, int) or most < 1:
            raise InvalidRetryPolicy(f"retries.max must be an integer >= 1 (attempts, the first "
                                     f"included); got {most!r}")
        on = value.get("on", ())
        if isinstance(on, str):
            on = (on,)
        if not isinstance(on, list | tuple) or not all(isinstance(n, str) and n for n in on):
            raise InvalidRetryPolicy(f"retries.on must be a list of exception class names; got {on!r}")
        numbers = {}
        for key in ("backoff", "backoff_max"):
            number = value.get(key, getattr(cls, key))
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise InvalidRetryPolicy(f"retries.{key} must be a number of seconds >= 0; got {number!r}")
            numbers[key] = float(number)
        jitter = value.get("jitter", cls.jitter)
        if not isinstance(jitter, bool):
            raise InvalidRetryPolicy(f"retries.jitter must be true or false; got {jitter!r}")
        return cls(most, tuple(on), numbers["backoff"], numbers["backoff_max"], jitter)

    def retries(self, error: BaseException) -> bool:
        """True when ``error`` (a stage's failure is judged by the exception the stage raised) is one
        of the exceptions retried."""
        original = error.original if isinstance(error, StageFailure) else error
        if isinstance(original, BaseException):
            names = {klass.__name__ for klass in type(original).__mro__}
        else:  # a failure in a worker process of another executor: only its name travelled
            names = {getattr(error, "name", type(error).__name__)}
        return bool(names & set(self.on))

    def delay(self, retry: int) -> float:
        """Return the seconds to wait before retry number ``retry`` (1 for the first)."""
        countdown = min(self.backoff_max, self.backoff * 2 ** (retry - 1))
        return random.uniform(0, countdown) if self.jitter else countdown

    def describe(self) -> dict:
        """Return the policy as JSON (``GET /pipelines``)."""
        return {"max": self.max, "on": list(self.on), "backoff": self.backoff,
                "backoff_max": self.backoff_max, "jitter": self.jitter}
