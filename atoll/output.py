"""Deprecated: renamed :mod:`atoll.capture`(what a run printed and logged)."""

from atoll._moved import forward

__getattr__ = forward(__name__, "atoll.capture")
