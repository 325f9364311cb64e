"""The local executor (:class:`LocalExecutor`): how a pass is scheduled (see :mod:`atoll.executors.local`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

from atoll import capture, dead_letters, progress
from atoll.errors import PipelineError
from atoll.executors.local.chunks import run_chunk
from atoll.executors.local.plan import (
    MIN_KEY_SLICE,
    Plan,
    chunk_length,
    even_split,
    keys_mostly_distinct,
    worth_parallel,
)
from atoll.executors.local.readahead import ReadAhead, delivered
from atoll.executors.local.shared import SharedPass
from atoll.executors.local.source import Source
from atoll.executors.serial import SerialExecutor, combine, run_chunks
from atoll.executors.wire import SERIALIZERS, dumps_pass, pack, unpack
from atoll.operators import Step, combine_partials, run_steps
from atoll.parallelism import effective_n_jobs
from atoll.sources import FileSource

__all__ = ["LocalExecutor"]


class LocalExecutor(SerialExecutor):
    """Runs each fused pass on ``n_jobs`` local worker processes (joblib's loky backend).

    ``n_jobs`` follows joblib: ``-1`` (or None) is every core, ``-2`` all but one
    (:func:`atoll.parallelism.effective_n_jobs`). ``progress=True`` shows a tqdm bar over
    chunks. ``serializer="dill"`` ships the functions with dill instead of cloudpickle.

    Scheduling knobs: ``probe_seconds`` of work run here first to measure the cost per element
    (``0``: no probe, every pass is parallel); ``min_parallel_seconds`` is the least estimated work
    worth sending to workers (``0`` sends every pass, and every chunk of it, to the workers, whatever
    its size or cost, with this process only feeding them: useful to test them); ``chunk_seconds`` is
    the work aimed at per chunk and ``max_chunk`` caps its length.

    A list, tuple or range is shared between ``n_jobs - 1`` workers and this process (see the module's
    documentation); any other input is read here and run by ``n_jobs`` workers.
    """

    name = "local"

    def __init__(self, n_jobs: int | None = -1, *, progress: bool = False,
                 serializer: str = "cloudpickle", chunk_seconds: float = 0.1,
                 min_parallel_seconds: float = 0.02, probe_seconds: float = 0.002,
                 max_chunk: int = 1_000_000):
        if serializer not in SERIALIZERS:
            raise PipelineError(f"serializer must be one of {', '.join(SERIALIZERS)}; "
                                f"got {serializer!r}")
        try:
            workers = effective_n_jobs(-1 if n_jobs is None else n_jobs)
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
        super().__init__()
        self.n_jobs = workers
        self.progress = progress
        self.serializer = serializer
        self.chunk_seconds = chunk_seconds
        self.min_parallel_seconds = min_parallel_seconds
        self.probe_seconds = probe_seconds
        self.max_chunk = max_chunk
        #: how the last pass was scheduled (see :class:`~atoll.executors.local.plan.Plan`)
        self.last_plan = Plan()

    def __repr__(self) -> str:
        return f"LocalExecutor(n_jobs={self.n_jobs})"

    def run_pass(self, data: Any, steps: list[Step], aggregate: Step | None) -> Any:
        parts = self._parts(data, steps, aggregate)
        try:
            return combine(parts, aggregate)
        finally:
            # at once, not when the traceback holding it is dropped: if combining raised, the chunks
            # still running are stopped now
            parts.close()

    def stream_pass(self, data: Any, steps: list[Step]) -> Iterator:
        """Yield the pass's results a chunk at a time, in order, as each chunk's come back. A sequence
        is not shared with this process (which holds the results of its chunks, taken from the back,
        until the workers reach them): its chunks all go to the workers while this process takes
        their results (and writes them, for a dataset)."""
        return self._parts(data, steps, None, share=False)

    def _parts(self, data: Any, steps: list[Step], aggregate: Step | None, share: bool = True) -> Iterator:
        """Yield the pass's per-chunk results (for an aggregate, partials to combine) in order; a
        sequence's rest run alongside the workers (:class:`SharedPass`) when ``share``."""
        run = progress.current()
        if isinstance(data, FileSource) and self.n_jobs > 1:
            yield from self._byte_ranges(data, steps, aggregate, run)
            return
        source = Source(data)
        parts, per_item, transfer, per_partial, per_merge = self._probe(source, steps, aggregate)
        plan = self.last_plan = Plan(probe=source.offset)
        remaining = source.remaining()
        if source.exhausted or remaining == 0:
            if run is not None:  # a pass that stays here is one unit, as on the serial executor
                run.add_total(1)
                run.advance(1)
            yield from parts
            return
        if self.min_parallel_seconds > 0 and parts and not worth_parallel(
                per_item, transfer, remaining, self.n_jobs, self.min_parallel_seconds, per_merge):
            self.last_plan = replace(plan, inline=-1 if remaining is None else remaining)
            if run is not None:
                run.add_total(1)
            if aggregate is None:
                yield from parts
                yield from (run_steps(steps, chunk) for chunk in source.chunks(self.chunk_size))
            else:  # the rest folded on into the probe's partials: no large partial merged after it
                yield run_chunks(source.chunks(self.chunk_size), steps, aggregate,
                                 combine_partials(aggregate, parts))
            if run is not None:
                run.advance(1)
            return
        if share and remaining is not None and self.n_jobs > 1 and self.min_parallel_seconds > 0:
            shared = SharedPass(self, source, steps, aggregate, per_item, per_partial, run)
            results = shared.results()
            try:
                yield from parts
                yield from results
            finally:
                results.close()
                self.last_plan = replace(plan, chunks=shared.chunks, chunk_size=shared.chunk_size,
                                         here=shared.here)
            return
        size = chunk_length(per_item, remaining, self.n_jobs, self.chunk_seconds, self.max_chunk, per_partial)
        total = None
        if remaining is None:
            chunks = source.chunks(size)
        else:
            total, size = even_split(remaining, size, self.n_jobs)
            chunks = source.even_chunks(total)
        self.last_plan = replace(plan, chunk_size=size, chunks=total or 0)
        if run is not None and total is not None:
            run.add_total(total)
        results = self._parallel(chunks, steps, aggregate, total, run)
        try:
            yield from parts
            yield from results
        finally:
            results.close()

    def _byte_ranges(self, data: FileSource, steps, aggregate, run) -> Iterator:
        """Yield the pass's per-range results, each worker reading its own byte ranges of the files
        from the store: this process sends only their URLs and offsets (:class:`~atoll.sources.ByteRange`)."""
        ranges = self.byte_ranges(data)
        self.last_plan = Plan(chunks=len(ranges))
        if run is not None:
            run.add_total(len(ranges))
        if aggregate is not None:
            yield run_steps(steps, (), aggregate)  # an empty input's partial
        results = self._parallel(iter(ranges), steps, aggregate, len(ranges), run)
        try:
            yield from results
        finally:
            results.close()

    def _probe(self, source: Source, steps, aggregate) -> tuple[list, float, float, float, float]:
        """Run growing slices here until ``probe_seconds`` pass.

        Returns their results, the compute cost per element, the cost per element of moving a
        slice and its result between processes (a pickle round trip of each), for a pass ending
        in an aggregate what the last slice's partial result costs this process once it is back
        (unpickling it and merging it into the others; 0 for a plain pass), and that cost per element
        when a fold by key meets as many keys per element in the last slice as in the one before (keys
        mostly distinct: a longer chunk brings a larger partial, never amortised; else 0).
        """
        parts, n, elapsed, per_item, transfer = [], 1, 0.0, math.inf, math.inf
        lengths = []  # of the slices
        while not source.exhausted and elapsed < self.probe_seconds:
            chunk = source.take(n)
            lengths.append(len(chunk))
            start = time.perf_counter()
            part = run_steps(steps, chunk, aggregate)
            middle = time.perf_counter()
            unpack(pack(chunk))
            if aggregate is None:  # a partial aggregate travels once per chunk, not per element
                unpack(pack(part))
            elapsed += middle - start
            # The least cost per element of any slice is the estimate: a busy machine only ever
            # adds time (another process ran meanwhile), and so do the fixed costs of a small slice.
            per_item = min(per_item, (middle - start) / max(len(chunk), 1))
            transfer = min(transfer, (time.perf_counter() - middle) / max(len(chunk), 1))
            parts.append(part)
            n *= 2
        if not parts:
            return parts, 0.0, 0.0, 0.0, 0.0
        per_partial = per_merge = 0.0
        if aggregate is not None:
            # Unpickling is timed and the merge taken to cost as much (a word count's partials measured
            # 1.2 : 1): merging for real would call the user's function on a made-up pair
            blob = pack(parts[-1])
            start = time.perf_counter()
            unpack(blob)
            per_partial = 2 * (time.perf_counter() - start)
            # keys per element of the last two slices: a vocabulary's fall as the slices grow (a word
            # count); keys mostly distinct keep it, and every chunk's partial is as large as the chunk
            if aggregate.op.keyed and len(parts) >= 2 and lengths[-2] >= MIN_KEY_SLICE:
                if keys_mostly_distinct(lengths[-2], len(parts[-2]), lengths[-1], len(parts[-1])):
                    per_merge = per_partial / lengths[-1]
        return parts, per_item, transfer, per_partial, per_merge

    def _reader(self, chunks: Iterable, workers: int, steps, aggregate, run, announce: bool,
                total: int | None = None) -> ReadAhead:
        """Return the :class:`ReadAhead` that submits ``chunks`` to the pool of ``workers``."""
        task = partial(run_chunk, dumps_pass((steps, aggregate), self.serializer), self.serializer,
                       log_settings=capture.settings(), policy=dead_letters.settings())
        reader = ReadAhead(chunks, workers, task, run, announce=announce)
        if self.progress:
            from tqdm.auto import tqdm

            reader.bar = tqdm(total=total, unit="chunk", desc="atoll")
        return reader

    def _parallel(self, chunks, steps, aggregate, total: int | None,
                  run: progress.RunControl | None = None):
        """Yield each chunk's result, in order, from the worker pool.

        Chunks are read and submitted ahead (:class:`ReadAhead`), so a worker never waits for the
        oldest chunk to come back; at most ``2 * n_jobs`` chunks are read and not yet finished, so a
        generator is read as fast as the workers consume it and no faster. The pool is atoll's own
        loky executor (:func:`~atoll.executors.local.pool.worker_pool`), driven through its futures:
        no polling.

        Chunks are counted in ``run`` as they finish (and announced as they are submitted when
        ``total`` is unknown). If the pass ends early for any reason but a chunk's own failure, the
        chunks still running are killed (:meth:`ReadAhead.close`).
        """
        reader = self._reader(chunks, self.n_jobs, steps, aggregate, run, total is None, total)
        yield from delivered(reader, reader.values())
