"""Deprecated alias: callback delivery is :mod:`atoll.service.jobs.delivery`."""

from atoll._moved import forward

__getattr__ = forward(__name__, "atoll.service.jobs.delivery")
