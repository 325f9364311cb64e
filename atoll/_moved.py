"""Aliases of modules that moved or were renamed: each warns once when imported, then forwards every
name to where it lives now (the same objects, in their current state)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forward(old: str, *new: str, renamed: dict[str, str] | None = None) -> Callable[[str], Any]:
    """Warn that module ``old`` moved to ``new`` and return the ``__getattr__`` that forwards a name to
    the first of the ``new`` modules that has it (``renamed`` maps old names to new ones)."""
    warnings.warn(f"{old} is deprecated: import from {' or '.join(new)}", DeprecationWarning, stacklevel=3)

    def __getattr__(name: str) -> Any:
        wanted = (renamed or {}).get(name, name)
        for module in () if name.startswith("__") else new:
            found = importlib.import_module(module)
            if hasattr(found, wanted):
                return getattr(found, wanted)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
