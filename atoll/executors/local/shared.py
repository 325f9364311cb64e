"""A pass over a sequence shared between ``n_jobs - 1`` workers and this process (:class:`SharedPass`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from atoll import progress
from atoll.executors.local.chunks import any_failed, run_apart, run_here, taken, unwrapped
from atoll.executors.local.plan import (
    MAX_ROUNDS,
    MAX_STEPS,
    STEP_SECONDS,
    chunk_length,
    elements_for,
    fair_share,
    guided_size,
)
from atoll.executors.local.readahead import NOT_NOW, ReadAhead, delivered
from atoll.executors.local.source import Source
from atoll.executors.wire import Failed
from atoll.operators import Step, combine_partials

if TYPE_CHECKING:  # for the hints only: the executor builds this pass
    from atoll.executors.local.executor import LocalExecutor

__all__ = ["SharedPass"]


class SharedPass:
    """The rest of a sequence computed by ``n_jobs - 1`` workers taking chunks from its front and by
    this process taking chunks from its back, at once; :meth:`results` yields their results in order.

    The chunks shrink as the two ends near each other (guided scheduling: each is a ``2 * n_jobs``-th
    of what is left, between a floor and ``chunk_seconds`` of work), and none takes a process past its
    fair share of the elements not yet run (those not taken, those of this process's chunk still to run
    and those of the workers' chunks not finished, over ``n_jobs``): a worker's chunk that would start
    behind another is cut to what keeps it level with this process, and left to this process when that
    is less than a worthwhile chunk. So every process runs out of work at about the same moment. This
    process runs its chunk ``STEP_SECONDS`` of work at a time, folding on into one result, and in
    between submits more chunks to the workers (at most two unfinished for each) and lets the pool's
    threads run. Its chunks are neither pickled nor sent anywhere.

    Failures are those of the serial pass: the first failing chunk in input order is raised, and a
    failure here waits for the workers' chunks (all before it) in case one of them fails first.

    ``chunks``, ``chunk_size`` and ``here`` count, for the executor's plan, the chunks sent to the
    workers, the largest of them and the chunks this process ran.
    """

    def __init__(self, executor: LocalExecutor, source: Source, steps: list[Step], aggregate: Step | None,
                 per_item: float, per_partial: float, run: progress.RunControl | None = None):
        self.executor, self.steps, self.aggregate, self.run = executor, steps, aggregate, run
        self.seq, self.n_jobs = source.sequence, executor.n_jobs
        #: what no one has taken yet: ``seq[front:back]``
        self.front, self.back = source.offset, len(self.seq)
        todo = self.back - self.front
        self.largest = chunk_length(per_item, todo, self.n_jobs, executor.chunk_seconds, executor.max_chunk,
                                    per_partial)
        # whatever the estimate says, at most MAX_ROUNDS chunks for each process (as in chunk_length)
        rounds = math.ceil(todo / (MAX_ROUNDS * self.n_jobs))
        self.smallest = elements_for(executor.chunk_seconds / 8, per_item, per_partial, self.largest, rounds)
        # a worker's chunk costs a round trip of about a millisecond: at least chunk_seconds / 20 of work
        self.worthwhile = elements_for(executor.chunk_seconds / 20, per_item, per_partial, self.largest,
                                       rounds)
        self.step = max(1, int(STEP_SECONDS / max(per_item, 1e-9)))
        self.unrun = 0  # the elements of this process's chunk not run yet
        self.working = True  # this process takes chunks (once it stops, the workers take the rest)
        self.reader: ReadAhead | None = None
        self.theirs: list = []  # the workers' results taken so far, in order (an aggregate's: one partial)
        self.chunks = self.chunk_size = self.here = 0

    def size(self) -> int:
        """Return the length of the next chunk, from either end (guided)."""
        return guided_size(self.back - self.front, self.n_jobs, self.smallest, self.largest)

    def share(self, theirs: int) -> float:
        """Each process's fair share of the elements not run yet (``theirs``: the workers')."""
        return fair_share(self.back - self.front, self.unrun, theirs, self.n_jobs)

    def _front(self) -> Iterator:
        """The workers' chunks, from the front; :data:`NOT_NOW` when a chunk now would be too short."""
        while self.front < self.back:
            n = self.size()
            if self.working:
                queued = self.reader.unfinished_items()
                n = min(n, int(self.share(queued) - queued / (self.n_jobs - 1)))
                if n < self.worthwhile and n < self.back - self.front:
                    yield NOT_NOW  # more would leave this process waiting for the workers at the end
                    continue
            start = self.front
            self.front = min(self.back, start + n)
            self.chunks += 1
            self.chunk_size = max(self.chunk_size, self.front - start)
            yield self.seq[start:self.front]

    def _ran(self, remaining: int) -> None:
        """This process ran its chunk up to ``remaining`` elements from its end."""
        self.unrun = remaining
        self._between()

    def _between(self) -> None:
        reader, aggregate, theirs = self.reader, self.aggregate, self.theirs
        for value in reader.ready():  # an aggregate's partials are combined as they come back
            if aggregate is None or not theirs or isinstance(value, Failed) or any_failed(theirs):
                theirs.append(value)
            else:
                theirs[0] = combine_partials(aggregate, [theirs[0], value])
        reader.fill()
        time.sleep(0)  # let the pool's threads move chunks and results now, not at the next switch

    def results(self) -> Iterator[Any]:
        """Yield the results of the rest of the sequence, in order."""
        steps, aggregate, run, seq = self.steps, self.aggregate, self.run, self.seq
        reader = self.reader = self.executor._reader(self._front(), self.n_jobs - 1, steps, aggregate, run,
                                                     announce=True)
        here: list = []  # this process's results, the last chunk of the input first
        try:
            reader.fill()
            while self.front < self.back and not reader.failed() and not any_failed(self.theirs):
                end = self.back
                n = min(self.size(), max(self.step, math.ceil(self.share(reader.unfinished_items()))))
                start = self.back = max(self.front, end - n)
                self.unrun = end - start
                every = max(self.step, math.ceil((end - start) / MAX_STEPS))
                self.here += 1
                if run is not None:
                    run.add_total(1)
                # captured on its own, so that its output joins the job's in input order
                result = run_apart(run_here, seq, start, end, steps, aggregate, every, self._ran)
                here.append(result)
                if run is not None:
                    run.advance(1)
                if reader.bar is not None:
                    reader.bar.update(1)
                if isinstance(unwrapped(result), Failed):
                    break
        except BaseException:  # an interruption, a worker that died: the chunks running are killed
            reader.close(kill=True)
            raise
        # stopped by a failure, the rest goes to the workers: a chunk before the failing one may fail first
        self.working = False
        mine = (taken(reader.log, reader.salvage, result) for result in reversed(here))
        yield from delivered(reader, chain(self.theirs, reader.values(), mine))
