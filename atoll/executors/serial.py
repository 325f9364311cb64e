"""The serial executor: every pass runs in this process, a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from itertools import islice
from typing import Any

from atoll import progress
from atoll.executors.interpreter import Executor
from atoll.operators import EMPTY, Step, merge_partials, run_steps

__all__ = ["SerialExecutor", "chunks_of", "combine", "run_chunks"]


def chunks_of(data: Iterable, size: int, start: int = 0) -> Iterator:
    """Yield ``data`` in chunks of at most ``size`` elements: slices of a sequence (from ``start``
    on), lists otherwise.

    >>> [list(c) for c in chunks_of(range(5), 2)], [list(c) for c in chunks_of(range(5), 2, 1)]
    ([[0, 1], [2, 3], [4]], [[1, 2], [3, 4]])
    """
    if isinstance(data, (list, tuple, range)):
        for at in range(start, len(data), size):
            yield data[at:at + size]
        return
    it = iter(data)
    while True:
        chunk = list(islice(it, size))
        if not chunk:
            return
        yield chunk


def combine(parts: Iterable, aggregate: Step | None) -> Any:
    """Return the result of a pass from its per-chunk results, in order."""
    if aggregate is not None:
        return merge_partials(aggregate, parts)
    out: list = []
    for part in parts:
        out.extend(part)
    return out


def run_chunks(chunks: Iterable, steps: list[Step], aggregate: Step | None, acc: Any = EMPTY) -> Any:
    """Return the fused pass run over ``chunks`` in turn, in this process: the concatenated results,
    or one partial aggregate, each chunk folded on into the partial of those before it (no partial
    per chunk to merge afterwards), from ``acc`` when given (the partial of the elements before the
    chunks, which may be folded into in place)."""
    if aggregate is None:
        return combine((run_steps(steps, chunk) for chunk in chunks), None)
    if acc is EMPTY:
        acc = run_steps(steps, (), aggregate)  # an empty input's partial: EMPTY, or {} by key
    for chunk in chunks:
        acc = run_steps(steps, chunk, aggregate, acc)
    return acc


class SerialExecutor(Executor):
    """Runs a pipeline in the calling process: a list, tuple or range in one compiled pass, any other
    iterable ``chunk_size`` elements at a time (a generator is never held whole). A pass that fails
    is run again ``chunk_size`` elements at a time to locate the failure, so the stage-by-stage run
    that names the stage and element never builds full-length intermediates.

    Each pass counts as one unit of work in the current :class:`~atoll.progress.RunControl` (total 1,
    done 1 when it ends), unless ``report_progress`` is False (a pipeline nested in a stage, which runs
    once per element, does not count).
    """

    name = "serial"

    def __init__(self, chunk_size: int = 65536):
        self.chunk_size = chunk_size
        self.report_progress = True

    def run_pass(self, data: Any, steps: list[Step], aggregate: Step | None) -> Any:
        run = progress.current() if self.report_progress else None
        if run is None:
            return self._serial_pass(data, steps, aggregate)
        run.add_total(1)
        result = self._serial_pass(data, steps, aggregate)
        run.advance(1)
        return result

    def stream_pass(self, data: Any, steps: list[Step]) -> Iterator:
        """Yield the pass's results ``chunk_size`` input elements at a time."""
        run = progress.current() if self.report_progress else None
        if run is not None:
            run.add_total(1)
        for chunk in chunks_of(data, self.chunk_size):
            yield run_steps(steps, chunk)
        if run is not None:
            run.advance(1)

    def _serial_pass(self, data: Any, steps: list[Step], aggregate: Step | None) -> Any:
        if not isinstance(data, (list, tuple, range)):  # a generator is never held whole
            part = run_chunks(chunks_of(data, self.chunk_size), steps, aggregate)
        elif len(data) <= self.chunk_size:
            part = run_steps(steps, data, aggregate)
        else:
            # One compiled pass over the whole sequence; if it fails, it runs again chunk by chunk, so
            # that locating the failure stage by stage holds one chunk's intermediates, not the
            # whole input's (the elements before the failure run twice then, as in any re-run).
            part = run_steps(steps, data, aggregate,
                             rerun=partial(run_chunks, chunks_of(data, self.chunk_size), steps, aggregate))
        return part if aggregate is None else merge_partials(aggregate, [part])

    def __repr__(self) -> str:
        return "SerialExecutor()"
