"""The registry's refusals: a pipeline that cannot be registered, a name that is not registered.

The job system's are :mod:`atoll.service.jobs.errors`; the HTTP answer to each is in the table of
:mod:`atoll.service.http.errors` (whose names this module forwarded before, with a deprecation warning).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from atoll.errors import AtollError

__all__ = ["RegistrationError", "UnknownPipeline"]


class RegistrationError(AtollError):
    """A pipeline cannot be registered: bad endpoint, duplicate name, or the app already exists."""


class UnknownPipeline(AtollError, KeyError):
    """No pipeline is registered under this name."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"no pipeline named {name!r}; registered: {listed}")

    def __str__(self) -> str:
        return str(self.args[0])


def __getattr__(name: str) -> Any:
    """Forward the HTTP error helpers this module held before (deprecated)."""
    moved = None if name.startswith("__") else importlib.import_module("atoll.service.http.errors")
    if moved is None or not hasattr(moved, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"atoll.service.errors.{name} is deprecated: import it from atoll.service.http.errors",
                  DeprecationWarning, stacklevel=2)
    return getattr(moved, name)
