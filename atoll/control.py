"""Deprecated: renamed :mod:`atoll.progress`(a run's progress reports)."""

from atoll._moved import forward

__getattr__ = forward(__name__, "atoll.progress")
