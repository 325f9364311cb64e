"""Deprecated: renamed :mod:`atoll.capture` (what a run printed and logged); this name is that module."""

import sys
import warnings

from atoll import capture

warnings.warn("atoll.output is deprecated; import atoll.capture", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = capture
