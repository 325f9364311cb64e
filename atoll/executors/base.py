"""Deprecated: the interpreter moved to :mod:`atoll.executors.interpreter`."""

from atoll._moved import forward

__getattr__ = forward(__name__, "atoll.executors.interpreter")
