"""Deprecated: the interpreter moved to :mod:`atoll.executors.interpreter`; this name is the same module."""

import sys
import warnings

from atoll.executors import interpreter

warnings.warn("atoll.executors.base is deprecated; import from atoll.executors.interpreter",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = interpreter
