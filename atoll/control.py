"""Deprecated: renamed :mod:`atoll.progress` (a run's progress reports).

Every name is read from there when asked for: the same objects and their current state."""

import warnings
from typing import Any

from atoll import progress as _new

warnings.warn("atoll.control is deprecated; import atoll.progress", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    """Return the renamed module's attribute ``name``."""
    return getattr(_new, name)


def __dir__() -> list[str]:
    """Return the renamed module's names."""
    return dir(_new)
