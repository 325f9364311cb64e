"""How the local executor schedules a pass: the plan it followed (:class:`Plan`) and the arithmetic
that decides it, as pure functions of the probe's measurements and the executor's settings."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Plan", "MAX_ROUNDS", "PARTIAL_SHARE", "MIN_KEY_SLICE", "STEP_SECONDS", "MAX_STEPS",
           "worth_parallel", "chunk_length", "even_split", "keys_mostly_distinct", "elements_for",
           "guided_size", "fair_share"]

#: the most chunks per worker a pass over an input of known length is cut into
MAX_ROUNDS = 128

#: a chunk's work is at least this many times what its partial aggregate costs this process
PARTIAL_SHARE = 40

#: the least probe slice whose keys per element say whether a fold by key's keys repeat (keys drawn
#: from 10,000 lose 5 % of their keys per element from a slice of 1,024 to one of 2,048; from 64 to
#: 128, 0.3 %: too little to tell them from distinct keys)
MIN_KEY_SLICE = 1024

#: seconds of work this process runs at a time when it works alongside its workers, between two looks
#: at them (see :class:`~atoll.executors.local.shared.SharedPass`)
STEP_SECONDS = 0.002
#: the most steps such a chunk is run in, whatever the estimate of the work says
MAX_STEPS = 256


@dataclass(frozen=True)
class Plan:
    """How a pass was scheduled: elements run by the probe, elements run here instead of on the
    workers (``inline``, -1 for a whole generator), chunks sent to the workers and the largest of them
    (``chunk_size``), chunks run here alongside the workers (``here``).

    Read as attributes or, as before it was a value type, by key:

    >>> plan = Plan(probe=3, chunks=4, chunk_size=10)
    >>> plan.chunks, plan["chunk_size"], plan["here"]
    (4, 10, 0)
    """

    probe: int = 0
    inline: int = 0
    chunks: int = 0
    chunk_size: int = 0
    here: int = 0

    def __getitem__(self, key: str) -> int:
        """Return the count named ``key`` (``plan["chunks"]``)."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


def worth_parallel(per_item: float, transfer: float, remaining: int | None, n_jobs: int,
                   min_parallel_seconds: float, per_merge: float = 0.0) -> bool:
    """Return True when ``n_jobs`` workers would finish the rest sooner than this process alone.

    Workers share the compute but the calling process still pickles every chunk out and every result
    back (about half of a measured round trip, ``transfer`` an element), and merges partial aggregates
    whose size grows with the data (``per_merge`` an element), so cheap work on heavy data stays here.

    >>> worth_parallel(1e-3, 1e-5, 10_000, n_jobs=2, min_parallel_seconds=0.02)
    True
    >>> worth_parallel(1e-7, 1e-6, 10_000_000, n_jobs=2, min_parallel_seconds=0.02)  # moving costs more
    False
    >>> worth_parallel(1e-3, 1e-5, 10, n_jobs=2, min_parallel_seconds=0.02)  # too little work
    False
    """
    if remaining is not None and per_item * remaining < min_parallel_seconds:
        return False
    parallel = (per_item + transfer / 2) / n_jobs + transfer / 2 + per_merge
    return parallel < 0.8 * per_item


def chunk_length(per_item: float, remaining: int | None, n_jobs: int, chunk_seconds: float,
                 max_chunk: int, per_partial: float = 0.0) -> int:
    """Return the elements of a chunk: about ``chunk_seconds`` of work, long enough that its partial
    aggregate (``per_partial``) stays under ``1 / PARTIAL_SHARE`` of it, at most ``max_chunk``.

    With a known length, at least ``n_jobs`` chunks and at most ``MAX_ROUNDS`` per worker: enough to
    even out uneven work, and a bound on the per-chunk costs (about a millisecond each) whatever the
    estimate says.

    >>> chunk_length(1e-6, 1_000_000, n_jobs=2, chunk_seconds=0.1, max_chunk=1_000_000)
    100000
    >>> chunk_length(1e-9, 1_000_000, n_jobs=2, chunk_seconds=0.1, max_chunk=1_000_000)  # a chunk a worker
    500000
    >>> chunk_length(1.0, 10_000, n_jobs=2, chunk_seconds=0.1, max_chunk=1_000_000)  # MAX_ROUNDS each
    40
    >>> chunk_length(1e-6, None, n_jobs=2, chunk_seconds=0.1, max_chunk=1_000)  # a generator
    1000
    """
    seconds = max(chunk_seconds, PARTIAL_SHARE * per_partial)
    per_chunk = max(1, int(seconds / max(per_item, 1e-9)))
    if remaining is not None:
        count = min(max(n_jobs, math.ceil(remaining / per_chunk)), MAX_ROUNDS * n_jobs)
        per_chunk = math.ceil(remaining / count)
    return max(1, min(per_chunk, max_chunk))


def even_split(remaining: int, size: int, n_jobs: int) -> tuple[int, int]:
    """Return ``(chunks, their length)`` for ``remaining`` elements in chunks of about ``size``: equal
    chunks, as many for each worker, so that no worker is left with a short last round.

    >>> even_split(100, 30, 2), even_split(5, 2, 4)
    ((4, 25), (4, 2))
    """
    count = math.ceil(remaining / size)
    count = min(remaining, math.ceil(count / n_jobs) * n_jobs)
    return count, math.ceil(remaining / count)


def keys_mostly_distinct(slice_before: int, keys_before: int, slice_last: int, keys_last: int) -> bool:
    """Return True when a fold by key met as many keys per element in the last probe slice as in the
    one before: keys mostly distinct, so every chunk's partial is as large as the chunk. A vocabulary's
    keys per element fall as the slices grow (a word count).

    >>> keys_mostly_distinct(1024, 1024, 2048, 2048), keys_mostly_distinct(1024, 600, 2048, 900)
    (True, False)
    """
    return keys_last * slice_before >= 0.99 * keys_before * slice_last


def elements_for(seconds: float, per_item: float, per_partial: float, largest: int, least: int) -> int:
    """Return the elements of ``seconds`` of work at ``per_item`` (more if a partial aggregate costing
    ``per_partial`` needs it), at least ``least`` and one, at most ``largest``.

    >>> elements_for(0.01, 1e-6, 0.0, 100_000, 1), elements_for(0.01, 1e-6, 0.0, 5_000, 1)
    (10000, 5000)
    """
    return min(largest, max(1, int(max(seconds, PARTIAL_SHARE * per_partial) / max(per_item, 1e-9)),
                            least))


def guided_size(untaken: int, n_jobs: int, smallest: int, largest: int) -> int:
    """Return the next chunk's length when ``untaken`` elements are left: a ``2 * n_jobs``-th of them,
    between ``smallest`` and ``largest`` (guided scheduling: chunks shrink as the work runs out).

    >>> guided_size(10_000, 2, 100, 1_000), guided_size(1_000, 2, 100, 1_000), guided_size(80, 2, 100, 1_000)
    (1000, 250, 100)
    """
    return max(smallest, min(largest, math.ceil(untaken / (2 * n_jobs))))


def fair_share(untaken: int, unrun_here: int, unfinished_there: int, n_jobs: int) -> float:
    """Return each of ``n_jobs`` processes' fair share of the elements not run yet: those no one has
    taken, those of this process's chunk still to run and those of the workers' chunks not finished.

    >>> fair_share(600, 100, 300, 2)
    500.0
    """
    return (untaken + unrun_here + unfinished_there) / n_jobs
