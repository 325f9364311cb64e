"""How many worker processes an ``n_jobs`` value means: joblib's convention, one rule for the DSL, the
registry and the configuration.

``n_jobs`` is a positive number of processes, or a negative one counting back from the cores this
process may use: ``-1`` is every core, ``-2`` all but one, and so on, never fewer than one. ``0``,
booleans and non-integers are refused.

>>> effective_n_jobs(3)
3
>>> effective_n_jobs(-1, cores=8), effective_n_jobs(-2, cores=8), effective_n_jobs(-20, cores=8)
(8, 7, 1)
>>> effective_n_jobs(0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: n_jobs must be a non-zero integer: positive for that many processes, negative ...; got 0
"""

from __future__ import annotations

from typing import Any

__all__ = ["effective_n_jobs", "usable_cores"]


def usable_cores() -> int:
    """Return the number of cores this process may use (CPU affinity and container quotas counted)."""
    from joblib import cpu_count  # reads cgroup CPU quotas, which os.cpu_count() ignores

    return max(1, cpu_count())


def effective_n_jobs(n_jobs: Any, cores: int | None = None) -> int:
    """Return the number of worker processes ``n_jobs`` asks for (at least 1); raise ValueError when
    ``n_jobs`` is not a non-zero integer. ``cores`` defaults to :func:`usable_cores`."""
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer: positive for that many processes, negative "
                         f"to count back from the cores (-1 = every core, -2 = all but one); "
                         f"got {n_jobs!r}")
    if n_jobs > 0:
        return n_jobs
    return max(1, (usable_cores() if cores is None else cores) + 1 + n_jobs)
