"""Read-ahead: chunks of a local pass submitted to the worker pool ahead of their results being taken,
and the results delivered in input order (:func:`delivered`), the first chunk's own failure raised."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from operator import length_hint
from typing import Any

from joblib.externals.loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from atoll import capture, dead_letters, progress
from atoll.executors.local.chunks import taken, unwrapped
from atoll.executors.local.pool import enter_pool, leave_pool, worker_pool
from atoll.executors.wire import RESEND, Failed, pack, unpack

__all__ = ["ReadAhead", "NOT_NOW", "delivered"]

logger = logging.getLogger(__name__)

#: what the chunks of a :class:`ReadAhead` yield when the input has more but none for the workers now
NOT_NOW = object()


def delivered(reader: ReadAhead, values: Iterable):
    """Yield a pass's ``values`` (its chunks' results in input order) and raise the first that is a
    chunk's own failure. If the pass ends for any other reason first (an exception, the consumer
    closing this generator), the chunks still running are killed (:meth:`ReadAhead.close`)."""
    stopped = True  # until every chunk is back or one reports its own failure
    try:
        for value in values:
            if isinstance(value, Failed):
                stopped = False
                raise value.error
            yield value
        stopped = False
    finally:
        reader.close(kill=stopped)



class ReadAhead:
    """Submits chunks ahead of the results being taken: iterating yields ``(future, chunk)`` in input
    order, and before waiting for the oldest chunk it reads and submits more whenever fewer than
    ``2 * n_jobs`` are unfinished, so a worker that finishes early gets the next chunk at once even
    while an older one is still running.

    The input is read in the calling thread (a generator may hold a database cursor or other state
    bound to its thread). Chunks submitted and not yet taken are bounded (``4 * n_jobs``).

    With a :class:`~atoll.progress.RunControl`, each chunk is counted done when its future is seen
    finished (in the calling thread, in the order they finish), and with ``announce`` each chunk is
    added to the total as it is submitted.
    """

    def __init__(self, chunks: Iterable, n_jobs: int, task: Callable,
                 run: progress.RunControl | None = None, announce: bool = False):
        self.chunks, self.n_jobs, self.task = iter(chunks), n_jobs, task
        self.run, self.announce = run, announce and run is not None
        self.counted: set = set()  # futures of the window already counted done
        self.pool = worker_pool(n_jobs)
        enter_pool(self.pool)
        self.window: deque = deque()
        self.lengths: deque = deque()  # the number of elements of each chunk of the window
        self.exhausted = False
        self.bar = None  # a tqdm bar to advance as chunks are taken
        #: the capture of the context that reads the chunks, where their output goes (also when their
        #: results are taken inside another capture, see :class:`~atoll.executors.local.shared.SharedPass`)
        self.log = capture.current()
        #: the salvage of that context, where the elements the chunks dropped go (see atoll.dead_letters)
        self.salvage = dead_letters.current()

    def submit(self, chunk: Any) -> Any:
        """Return the future of ``chunk`` (as it is, or packed) running on the pool."""
        try:
            return self.pool.submit(self.task, chunk)
        except (BrokenProcessPool, ShutdownExecutorError):
            # a worker died in an earlier pass (its error was raised there): start afresh
            if self.window:
                raise
            leave_pool(self.pool, kill=False)
            self.pool = worker_pool(self.n_jobs, broken=self.pool)
            enter_pool(self.pool)
            return self.pool.submit(self.task, chunk)

    def _count_finished(self) -> None:
        """Count the chunks seen finished since the last look (a RunControl is set)."""
        newly = 0
        for future, _ in self.window:
            if future not in self.counted and future.done():
                self.counted.add(future)
                newly += 1
        if newly:
            self.run.advance(newly)
        else:
            self.run.tick()

    def fill(self) -> None:
        """Read and submit chunks while fewer than ``2 * n_jobs`` are unfinished."""
        while not self.exhausted and len(self.window) < 4 * self.n_jobs:
            if sum(1 for future, _ in self.window if not future.done()) >= 2 * self.n_jobs:
                return
            chunk = next(self.chunks, None)
            if chunk is None:
                self.exhausted = True
                return
            if chunk is NOT_NOW:  # the input has more, but not for the workers yet
                return
            packed = pack(chunk)  # kept, not the chunk: smaller, and unpacked here for a resend
            self.window.append((self.submit(packed), packed))
            self.lengths.append(length_hint(chunk))  # a byte range: unknown, 0
            if self.announce:
                self.run.add_total(1)

    def __iter__(self):
        run = self.run
        # with a throttled control, wake up now and then to report a state held back meanwhile
        timeout = run.interval if run is not None and run.interval > 0 else None
        self.fill()
        while self.window:
            oldest = self.window[0][0]
            while not oldest.done():
                unfinished = [future for future, _ in self.window if not future.done()]
                wait(unfinished, timeout=timeout, return_when=FIRST_COMPLETED)
                if run is not None:
                    self._count_finished()
                self.fill()
            yield self._take_oldest()
            self.fill()

    def _take_oldest(self) -> tuple:
        """Remove the oldest chunk, finished, from the window (counted done first); return it."""
        if self.run is not None:
            self._count_finished()
            self.counted.discard(self.window[0][0])
        self.lengths.popleft()
        return self.window.popleft()

    def unfinished_items(self) -> int:
        """Return the elements of the chunks submitted and not finished (running or queued)."""
        return sum(n for (future, _), n in zip(self.window, self.lengths) if not future.done())

    def values(self):
        """Yield each chunk's result in input order (see :meth:`_value`), waiting for each."""
        for future, chunk in self:
            yield self._value(future, chunk)

    def ready(self) -> list:
        """Take the results of the oldest chunks already back, in input order, without waiting."""
        out = []
        while self.window and self.window[0][0].done():
            out.append(self._value(*self._take_oldest()))
        return out

    def _value(self, future, chunk) -> Any:
        """Return a finished chunk's result unpacked, its captured output merged here: a chunk's own
        failure as the :class:`Failed` it returned."""
        result = taken(self.log, self.salvage, future.result())  # its output joins the job's
        if type(result) is str and result == RESEND:
            result = taken(self.log, self.salvage, self.submit(unpack(chunk)).result())
        if self.bar is not None:
            self.bar.update(1)
        return result if isinstance(result, Failed) else unpack(result)

    def failed(self) -> bool:
        """Return True when a chunk already back failed (its result not yet taken), or the pool did."""
        for future, _ in self.window:
            if future.done() and not future.cancelled():
                if future.exception() is not None:
                    return True
                if isinstance(unwrapped(future.result()), Failed):
                    return True
        return False

    def close(self, kill: bool = False) -> None:
        """Cancel the chunks that have not started. Without ``kill`` let the running ones finish, so
        the same workers serve the next pass; with ``kill`` kill the pool's workers now (see
        :func:`~atoll.executors.local.pool.leave_pool`)."""
        if self.bar is not None:
            self.bar.close()
        for future, _ in self.window:
            future.cancel()
        running = [future for future, _ in self.window if not future.done()]
        if kill and running:  # killed as a crash would kill them (see pool._kill): cancelled chunks are fine
            if leave_pool(self.pool, kill=True):
                logger.info("stopped %d running chunk(s): the pass ended early", len(running))
            else:
                logger.info("%d running chunk(s) left to finish: another pass uses the same "
                            "workers", len(running))
            return
        leave_pool(self.pool, kill=False)
        for future in running:
            if not future.cancelled():
                try:
                    future.result()
                except Exception as exc:  # the pool broke: the next pass starts a new one
                    logger.debug("worker pool failed while finishing after an error: %r", exc)
