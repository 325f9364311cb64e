"""Deprecated: the interpreter moved to :mod:`atoll.executors.interpreter`.

Every name is read from there when asked for: the same objects and their current state."""

import warnings
from typing import Any

from atoll.executors import interpreter as _new

warnings.warn("atoll.executors.base is deprecated; import atoll.executors.interpreter", DeprecationWarning,
              stacklevel=2)


def __getattr__(name: str) -> Any:
    """Return the renamed module's attribute ``name``."""
    return getattr(_new, name)


def __dir__() -> list[str]:
    """Return the renamed module's names."""
    return dir(_new)
