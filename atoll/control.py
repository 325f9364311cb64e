"""Deprecated: renamed :mod:`atoll.progress` (a run's progress reports); this name is that module."""

import sys
import warnings

from atoll import progress

warnings.warn("atoll.control is deprecated; import atoll.progress", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = progress
