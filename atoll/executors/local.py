"""The local executor: fused passes run on a pool of worker processes (loky, joblib's process pool).

How a pass is scheduled, so that parallel is never slower than serial for tiny per-item work:

1. **Probe.** The first elements run here, in growing slices (1, 2, 4, ...), until they have taken
   ``probe_seconds``. That measures the per-element cost of the fused pass on this data, and of moving
   an element and its result between processes (a pickle round trip); the cheapest slice counts,
   since a busy machine only adds time.
2. **Decide.** If the rest would take less than ``min_parallel_seconds`` serially, or if moving the data
   would cost more than the workers save (cheap work on heavy data), or merging partial aggregates
   that grow with the data would (a fold by key over mostly distinct keys), it runs here too.
3. **Share** (an input of known length: list, tuple, range). This process works too, alongside
   ``n_jobs - 1`` workers, rather than wait for them: the workers take chunks from the front of the
   rest, this process takes chunks from the back, and they meet where both run out of work
   (:meth:`LocalExecutor._alongside`). Chunks are a ``2 * n_jobs``-th of what is left, at most
   ``chunk_seconds`` of work, so they shrink as the two ends near each other (guided scheduling),
   and none gives a process more than its fair share of what is not yet run, so neither side is left
   waiting long for the other. This process's chunks are neither pickled nor
   sent: on work as cheap per element as unpickling it, that is what puts a pass ahead of handing
   every chunk to a worker.
4. **Chunk** (any other iterable, or ``min_parallel_seconds=0``). The rest is cut into chunks of about
   ``chunk_seconds`` of work (when the length is known, equal chunks, a multiple of the worker count
   and at most ``MAX_ROUNDS`` per worker), all run by ``n_jobs`` workers while this process reads and
   sends them.

Either way each chunk runs the whole fused pass, and an aggregate is combined inside the chunk before
it travels back (map-side combine). A partial aggregate costs this process its unpickling and its
merge once per chunk, whatever the chunk's length (a word count's partial holds about every word of
the vocabulary): the probe times the unpickling of its last partial (the merge is taken to cost as
much; it is not run, as it would call the user's function on a pair that is not in the data), and a
chunk is made long enough that both stay under ``1 / PARTIAL_SHARE`` of its work.

The functions of a pass are serialised once per pass (cloudpickle, or dill when asked) and cached in the
workers, where the pass is compiled once (:func:`~atoll.operators.compiled_pass`). Chunks and their
results travel pickled by the C pickler (protocol 5) as one bytes object, which the pool then moves
without looking inside: cloudpickle would call back into Python for every tuple and list in the data.
Data that plain pickle cannot carry (a class defined in ``__main__``, a lambda inside an element) goes
with cloudpickle as before. A sequence input (list, tuple, range) is sliced; any other iterable is read
chunk by chunk as the workers ask for more, so a generator is never held whole.

The workers are atoll's own loky pool (one per ``n_jobs`` value, kept between passes, idle workers exit
after ``IDLE_SECONDS``), not the reusable executor that ``joblib.Parallel`` shares: a user's own joblib
calls in the same process neither break nor restart atoll's workers, and the other way round.

Stopping: when a chunk fails, chunks not yet started are cancelled and those running finish, so the same
workers serve the next pass. When any other exception escapes a pass while chunks run (a signal
handler's exception raised in this thread, such as Celery's ``SoftTimeLimitExceeded``, a
``KeyboardInterrupt``, an input that fails while it is read), the pool's workers are killed at once and
the next pass starts a new pool; the exception propagates unchanged. If another thread of this process
is running a pass on the same pool, the workers are not killed (that would fail its pass): chunks not
yet started are cancelled and the running ones are left to finish on their own.

Progress (:mod:`atoll.progress`): a pass sent to the workers counts its chunks in the current
:class:`~atoll.progress.RunControl` (all of them when they are cut up front, each as it is submitted
or started here otherwise), and a chunk as done when its result is back or this process has run it;
the probe slices count as nothing. A pass that stays in this process counts as one unit.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import pickle
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from functools import partial
from itertools import chain, islice
from typing import Any

import cloudpickle
from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.backend.utils import kill_process_tree
from joblib.externals.loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from atoll import capture, progress, serialization
from atoll.errors import PipelineError
from atoll.executors.serial import SerialExecutor, chunks_of, combine, run_chunks
from atoll.operators import Step, combine_partials, run_steps
from atoll.parallelism import effective_n_jobs

__all__ = ["LocalExecutor"]

logger = logging.getLogger(__name__)

_SERIALIZERS = ("cloudpickle", "dill")


class _Failed:
    """A chunk's PipelineError, returned rather than raised so joblib does not wrap it."""

    def __init__(self, error: BaseException):
        self.error = error


#: what the chunks of a :class:`_ReadAhead` yield when the input has more but none for the workers now
NOT_NOW = object()


#: the most chunks per worker a pass over an input of known length is cut into
MAX_ROUNDS = 128

#: a chunk's work is at least this many times what its partial aggregate costs this process
PARTIAL_SHARE = 40

#: the least probe slice whose keys per element say whether a fold by key's keys repeat (keys drawn
#: from 10,000 lose 5 % of their keys per element from a slice of 1,024 to one of 2,048; from 64 to
#: 128, 0.3 %: too little to tell them from distinct keys)
MIN_KEY_SLICE = 1024

#: seconds of work this process runs at a time when it works alongside its workers, between two looks
#: at them (see :meth:`LocalExecutor._alongside`)
STEP_SECONDS = 0.002
#: the most steps such a chunk is run in, whatever the estimate of the work says
MAX_STEPS = 256

#: seconds a worker process of atoll's pool may sit idle before it exits (loky starts it again)
IDLE_SECONDS = 300

_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()
#: passes running on each pool now (by id of the pool): a pool is killed only by its only user
_pool_users: dict[int, int] = {}


def worker_pool(n_jobs: int, broken: ProcessPoolExecutor | None = None) -> ProcessPoolExecutor:
    """Return atoll's pool of ``n_jobs`` worker processes, started on first use.

    ``broken`` is a pool the caller found broken (a worker died): it is replaced, unless another
    thread has replaced it already.
    """
    with _pools_lock:
        pool = _pools.get(n_jobs)
        if pool is None or pool is broken:
            if pool is not None:
                pool.shutdown(wait=False)
            pool = _pools[n_jobs] = ProcessPoolExecutor(max_workers=n_jobs, timeout=IDLE_SECONDS,
                                                        initializer=_exit_with_parent,
                                                        initargs=(os.getpid(),))
        return pool


def _enter_pool(pool: ProcessPoolExecutor) -> None:
    with _pools_lock:
        _pool_users[id(pool)] = _pool_users.get(id(pool), 0) + 1


def _leave_pool(pool: ProcessPoolExecutor, kill: bool) -> bool:
    """Stop using ``pool``; with ``kill``, kill its workers (now, not waiting for running chunks) and
    drop it, unless another pass uses it too. Returns True when the workers were killed."""
    with _pools_lock:
        users = _pool_users.pop(id(pool), 1) - 1
        if users:
            _pool_users[id(pool)] = users
        if not kill or users:
            return False
        for n_jobs, known in list(_pools.items()):
            if known is pool:
                del _pools[n_jobs]  # the next pass starts a new pool
    _kill(pool)
    return True


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill ``pool``'s worker processes (and theirs) now, then shut it down.

    The workers are killed first, as a crash would kill them: the pool turns broken and fails the
    chunks not started itself. ``shutdown(kill_workers=True)`` with chunks still queued made loky's
    manager thread die (a ``KeyError`` on a chunk it had dropped, an ``InvalidStateError`` on one
    cancelled meanwhile), in the second case before it killed the workers, which lived on.
    """
    for process in list(getattr(pool, "_processes", {}).values()):
        try:
            kill_process_tree(process)
        except ProcessLookupError:
            pass
    pool.shutdown(wait=True)


def _exit_with_parent(parent: int) -> None:
    """Worker side: exit as soon as the process that started the pool is gone.

    atexit does not run when the parent is killed (kill -9, a Celery hard time limit), and an idle
    worker would otherwise live on for ``IDLE_SECONDS`` as an orphan.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="atoll-parent-watch", daemon=True).start()


@atexit.register
def shutdown_worker_pools() -> None:
    """Stop every worker process atoll started (at exit: a chunk still running is not waited for)."""
    with _pools_lock:
        for pool in _pools.values():
            _kill(pool)
        _pools.clear()


_payload_cache: OrderedDict[bytes, Any] = OrderedDict()


def _loads(payload: bytes, serializer: str) -> Any:
    """Return the unpickled pass, cached per worker so each chunk does not unpickle it again."""
    hit = _payload_cache.get(payload)
    if hit is None:
        if serializer == "dill":
            import dill

            hit = dill.loads(payload)
        else:
            hit = cloudpickle.loads(payload)
        _payload_cache[payload] = hit
        while len(_payload_cache) > 8:
            _payload_cache.popitem(last=False)
    return hit


class _Packed:
    """A value pickled by the C pickler: the pool moves the bytes, nobody walks the value twice."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob

    def __reduce__(self):
        return (_Packed, (self.blob,))


def _pack(value: Any) -> Any:
    """Return ``value`` as a :class:`_Packed`, or unchanged when plain pickle cannot carry it.

    A reference to ``__main__`` would not resolve in a worker (cloudpickle sends such classes by
    value), so a pickle that names it is not used; a false alarm only costs the slower path.
    """
    if type(value) is range:
        return value
    try:
        blob = pickle.dumps(value, protocol=5)
    except Exception:
        return value
    return value if b"__main__" in blob else _Packed(blob)


def _unpack(value: Any) -> Any:
    """Return the value that :func:`_pack` packed."""
    return pickle.loads(value.blob) if type(value) is _Packed else value


#: a chunk's answer when plain pickle could not load it here (a module the worker cannot import by
#: name): the caller sends that chunk again with cloudpickle
_RESEND = "atoll: resend this chunk with cloudpickle"


def _run_chunk(payload: bytes, serializer: str, chunk, log_settings: tuple[int, int] | None = None) -> Any:
    """Worker side: run the fused pass over one chunk; return its result packed.

    ``log_settings`` (those of a job-log capture active where the pass started) captures what the
    chunk prints and logs and returns it with the result (:func:`atoll.capture.run_captured`).
    """
    if log_settings is not None:
        return capture.run_captured(log_settings, _run_chunk, payload, serializer, chunk)
    steps, aggregate = _loads(payload, serializer)
    try:
        chunk = _unpack(chunk)
    except Exception:
        return _RESEND
    try:
        return _pack(run_steps(steps, chunk, aggregate))
    except PipelineError as exc:  # StageFailure included: it pickles with stage, item, traceback
        return _Failed(exc)


def _even_chunks(items, count: int, start: int = 0):
    """Yield ``count`` slices of the sequence ``items`` from ``start`` on, whose lengths differ by one
    at most (sliced from ``items`` itself: the rest is never copied whole first).

    >>> [list(c) for c in _even_chunks(range(7), 3)], [list(c) for c in _even_chunks(range(7), 2, 3)]
    ([[0, 1, 2], [3, 4], [5, 6]], [[3, 4], [5, 6]])
    """
    size, longer = divmod(len(items) - start, count)
    for i in range(count):
        end = start + size + (i < longer)
        yield items[start:end]
        start = end


class _Source:
    """The input of a pass: hands out the probe slices and then chunks of the rest."""

    def __init__(self, data: Iterable):
        self.sequence = data if isinstance(data, (list, tuple, range)) else None
        self.iterator = None if self.sequence is not None else iter(data)
        self.offset = 0
        self.exhausted = False

    def take(self, n: int):
        if self.sequence is not None:
            chunk = self.sequence[self.offset:self.offset + n]
        else:
            chunk = list(islice(self.iterator, n))
        self.offset += len(chunk)
        self.exhausted = len(chunk) < n or (
            self.sequence is not None and self.offset >= len(self.sequence))
        return chunk

    def remaining(self) -> int | None:
        return None if self.sequence is None else len(self.sequence) - self.offset

    def even_chunks(self, count: int) -> Iterable:
        """Return the rest of a sequence in ``count`` chunks (see :func:`_even_chunks`)."""
        return _even_chunks(self.sequence, count, self.offset)

    def chunks(self, size: int) -> Iterable:
        """Return the rest in chunks of ``size`` elements."""
        if self.sequence is not None:
            return chunks_of(self.sequence, size, self.offset)
        return chunks_of(self.iterator, size)


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
        if serializer not in _SERIALIZERS:
            raise PipelineError(f"serializer must be one of {', '.join(_SERIALIZERS)}; "
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
        #: how the last pass was scheduled: elements run by the probe, elements run here instead of
        #: on the workers (``inline``, -1 for a whole generator), chunks sent to the workers and the
        #: largest of them, chunks run here alongside the workers (``here``)
        self.last_plan: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"LocalExecutor(n_jobs={self.n_jobs})"

    def _dumps(self, obj: Any) -> bytes:
        if self.serializer == "dill":
            import dill

            return dill.dumps(obj, recurse=True)
        return serialization.dumps(obj)

    def run_pass(self, data: Any, steps: list[Step], aggregate: Step | None) -> Any:
        run = progress.current()
        source = _Source(data)
        parts, per_item, transfer, per_partial, per_merge = self._probe(source, steps, aggregate)
        plan = {"probe": source.offset, "inline": 0, "chunks": 0, "chunk_size": 0, "here": 0}
        self.last_plan = plan
        remaining = source.remaining()
        if source.exhausted or remaining == 0:
            if run is not None:  # a pass that stays here is one unit, as on the serial executor
                run.add_total(1)
                run.advance(1)
            return combine(parts, aggregate)
        if self.min_parallel_seconds > 0 and parts and not self._worth_it(per_item, transfer, remaining,
                                                                          per_merge):
            plan["inline"] = -1 if remaining is None else remaining
            if run is not None:
                run.add_total(1)
            if aggregate is None:
                result = combine([*parts, run_chunks(source.chunks(self.chunk_size), steps, None)], None)
            else:  # the rest folded on into the probe's partials: no large partial merged after it
                result = combine([run_chunks(source.chunks(self.chunk_size), steps, aggregate,
                                             combine_partials(aggregate, parts))], aggregate)
            if run is not None:
                run.advance(1)
            return result
        if remaining is not None and self.n_jobs > 1 and self.min_parallel_seconds > 0:
            results = self._alongside(source, steps, aggregate, per_item, per_partial, run)
            try:
                return combine(chain(parts, results), aggregate)
            finally:
                results.close()
        size = self._chunk_size(per_item, remaining, per_partial)
        total = None
        if remaining is None:
            chunks = source.chunks(size)
        else:  # equal chunks, as many for each worker: no worker is left with a short last round
            total = math.ceil(remaining / size)
            total = min(remaining, math.ceil(total / self.n_jobs) * self.n_jobs)
            chunks = source.even_chunks(total)
            size = math.ceil(remaining / total)
        plan["chunk_size"], plan["chunks"] = size, total or 0
        if run is not None and total is not None:
            run.add_total(total)
        results = self._parallel(chunks, steps, aggregate, total, run)
        try:
            return combine(chain(parts, results), aggregate)
        finally:
            # at once, not when the traceback holding it is dropped: if combining raised, the chunks
            # still running are stopped now
            results.close()

    def _worth_it(self, per_item: float, transfer: float, remaining: int | None,
                  per_merge: float = 0.0) -> bool:
        """Return True when workers would finish the rest sooner than this process alone.

        Workers share the compute but the calling process still pickles every chunk out and every
        result back (about half of a measured round trip), and merges partial aggregates whose size
        grows with the data (``per_merge`` an element), so cheap work on heavy data stays here.
        """
        if remaining is not None and per_item * remaining < self.min_parallel_seconds:
            return False
        parallel = (per_item + transfer / 2) / self.n_jobs + transfer / 2 + per_merge
        return parallel < 0.8 * per_item

    def _probe(self, source: _Source, steps, aggregate) -> tuple[list, float, float, float, float]:
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
            _unpack(_pack(chunk))
            if aggregate is None:  # a partial aggregate travels once per chunk, not per element
                _unpack(_pack(part))
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
            blob = _pack(parts[-1])
            start = time.perf_counter()
            _unpack(blob)
            per_partial = 2 * (time.perf_counter() - start)
            # keys per element of the last two slices: a vocabulary's fall as the slices grow (a word
            # count); keys mostly distinct keep it, and every chunk's partial is as large as the chunk
            if aggregate.op.keyed and len(parts) >= 2 and lengths[-2] >= MIN_KEY_SLICE:
                if len(parts[-1]) * lengths[-2] >= 0.99 * len(parts[-2]) * lengths[-1]:
                    per_merge = per_partial / lengths[-1]
        return parts, per_item, transfer, per_partial, per_merge

    def _chunk_size(self, per_item: float, remaining: int | None, per_partial: float = 0.0) -> int:
        seconds = max(self.chunk_seconds, PARTIAL_SHARE * per_partial)
        per_chunk = max(1, int(seconds / max(per_item, 1e-9)))
        if remaining is not None:
            # at most MAX_ROUNDS chunks per worker: enough to even out uneven work, and a bound on
            # the per-chunk costs (about a millisecond each) whatever the estimate says
            count = min(max(self.n_jobs, math.ceil(remaining / per_chunk)), MAX_ROUNDS * self.n_jobs)
            per_chunk = math.ceil(remaining / count)
        return max(1, min(per_chunk, self.max_chunk))

    def _reader(self, chunks: Iterable, workers: int, steps, aggregate, run, announce: bool,
                total: int | None = None) -> _ReadAhead:
        """Return the :class:`_ReadAhead` that submits ``chunks`` to the pool of ``workers``."""
        task = partial(_run_chunk, self._dumps((steps, aggregate)), self.serializer,
                       log_settings=capture.settings())
        reader = _ReadAhead(chunks, workers, task, run, announce=announce)
        if self.progress:
            from tqdm.auto import tqdm

            reader.bar = tqdm(total=total, unit="chunk", desc="atoll")
        return reader

    def _parallel(self, chunks, steps, aggregate, total: int | None,
                  run: progress.RunControl | None = None):
        """Yield each chunk's result, in order, from the worker pool.

        Chunks are read and submitted ahead (:class:`_ReadAhead`), so a worker never waits for the
        oldest chunk to come back; at most ``2 * n_jobs`` chunks are read and not yet finished, so a
        generator is read as fast as the workers consume it and no faster. The pool is atoll's own
        loky executor (:func:`worker_pool`), driven through its futures: no polling.

        Chunks are counted in ``run`` as they finish (and announced as they are submitted when
        ``total`` is unknown). If the pass ends early for any reason but a chunk's own failure, the
        chunks still running are killed (:meth:`_ReadAhead.close`).
        """
        reader = self._reader(chunks, self.n_jobs, steps, aggregate, run, total is None, total)
        yield from _delivered(reader, reader.values())

    def _alongside(self, source: _Source, steps, aggregate, per_item: float, per_partial: float,
                   run: progress.RunControl | None = None):
        """Yield the results of the rest of a sequence, in order, computed by ``n_jobs - 1`` workers
        taking chunks from its front and by this process taking chunks from its back, at once.

        The chunks shrink as the two ends near each other (guided scheduling: each is a
        ``2 * n_jobs``-th of what is left, between a floor and ``chunk_seconds`` of work), and none
        takes a process past its fair share of the elements not yet run (those not taken, those of
        this process's chunk still to run and those of the workers' chunks not finished, over
        ``n_jobs``): a worker's chunk that would start behind another is cut to what keeps it level
        with this process, and left to this process when that is less than a worthwhile chunk. So
        every process runs out of work at about the same moment. This process runs its chunk
        ``STEP_SECONDS`` of work at a time, folding on into one result, and in between submits more
        chunks to the workers (at most two unfinished for each) and lets the pool's threads run.
        Its chunks are neither pickled nor sent anywhere.

        Failures are those of the serial pass: the first failing chunk in input order is raised, and
        a failure here waits for the workers' chunks (all before it) in case one of them fails first.
        """
        seq, n_jobs, plan = source.sequence, self.n_jobs, self.last_plan
        left = [source.offset, len(seq)]  # what no one has taken yet: [front, back)
        largest = self._chunk_size(per_item, left[1] - left[0], per_partial)
        cost = max(per_item, 1e-9)
        # whatever the estimate says, at most MAX_ROUNDS chunks for each process (as in _chunk_size)
        rounds = math.ceil((left[1] - left[0]) / (MAX_ROUNDS * n_jobs))

        def at_least(seconds: float) -> int:
            """Elements for ``seconds`` of work (more if a partial needs it), within the bounds."""
            return min(largest, max(1, int(max(seconds, PARTIAL_SHARE * per_partial) / cost), rounds))

        smallest = at_least(self.chunk_seconds / 8)
        # a worker's chunk costs a round trip of about a millisecond: at least chunk_seconds / 20 of work
        worthwhile = at_least(self.chunk_seconds / 20)
        step = max(1, int(STEP_SECONDS / cost))
        unrun = [0]  # the elements of this process's chunk not run yet
        working = [True]  # this process takes chunks (once it stops, the workers take the rest)

        def size() -> int:
            return max(smallest, min(largest, math.ceil((left[1] - left[0]) / (2 * n_jobs))))

        def share(theirs: int) -> float:
            """Each process's fair share of the elements not run yet (``theirs``: the workers')."""
            return (left[1] - left[0] + unrun[0] + theirs) / n_jobs

        def front():
            while left[0] < left[1]:
                n = size()
                if working[0]:
                    queued = reader.unfinished_items()
                    n = min(n, int(share(queued) - queued / (n_jobs - 1)))
                    if n < worthwhile and n < left[1] - left[0]:
                        yield NOT_NOW  # more would leave this process waiting for the workers at the end
                        continue
                start = left[0]
                left[0] = min(left[1], start + n)
                plan["chunks"] += 1
                plan["chunk_size"] = max(plan["chunk_size"], left[0] - start)
                yield seq[start:left[0]]

        def ran(remaining: int) -> None:
            """This process ran its chunk up to ``remaining`` elements from its end."""
            unrun[0] = remaining
            between()

        reader = self._reader(front(), n_jobs - 1, steps, aggregate, run, announce=True)
        theirs: list = []  # the workers' results taken so far, in order (an aggregate's: one partial)
        here: list = []  # this process's results, the last chunk of the input first

        def between() -> None:
            for value in reader.ready():  # an aggregate's partials are combined as they come back
                if aggregate is None or not theirs or isinstance(value, _Failed) or _any_failed(theirs):
                    theirs.append(value)
                else:
                    theirs[0] = combine_partials(aggregate, [theirs[0], value])
            reader.fill()
            time.sleep(0)  # let the pool's threads move chunks and results now, not at the next switch

        try:
            reader.fill()
            while left[0] < left[1] and not reader.failed() and not _any_failed(theirs):
                end = left[1]
                n = min(size(), max(step, math.ceil(share(reader.unfinished_items()))))
                start = left[1] = max(left[0], end - n)
                unrun[0] = end - start
                every = max(step, math.ceil((end - start) / MAX_STEPS))
                plan["here"] += 1
                if run is not None:
                    run.add_total(1)
                log_settings = capture.settings()
                if log_settings is None:
                    result = _run_here(seq, start, end, steps, aggregate, every, ran)
                else:  # captured on its own, so that the output joins the job's in input order
                    result = capture.run_captured(log_settings, _run_here, seq, start, end, steps, aggregate,
                                                 every, ran)
                here.append(result)
                if run is not None:
                    run.advance(1)
                if reader.bar is not None:
                    reader.bar.update(1)
                if isinstance(capture.unmerged(result), _Failed):
                    break
        except BaseException:  # an interruption, a worker that died: the chunks running are killed
            reader.close(kill=True)
            raise
        # stopped by a failure, the rest goes to the workers: a chunk before the failing one may fail first
        working[0] = False
        mine = (capture.merged_into(reader.log, result) for result in reversed(here))
        yield from _delivered(reader, chain(theirs, reader.values(), mine))


def _delivered(reader: _ReadAhead, values: Iterable):
    """Yield a pass's ``values`` (its chunks' results in input order) and raise the first that is a
    chunk's own failure. If the pass ends for any other reason first (an exception, the consumer
    closing this generator), the chunks still running are killed (:meth:`_ReadAhead.close`)."""
    stopped = True  # until every chunk is back or one reports its own failure
    try:
        for value in values:
            if isinstance(value, _Failed):
                stopped = False
                raise value.error
            yield value
        stopped = False
    finally:
        reader.close(kill=stopped)


def _any_failed(values: list) -> bool:
    return any(isinstance(value, _Failed) for value in values)


def _run_here(seq, start: int, end: int, steps, aggregate, every: int, between: Callable) -> Any:
    """Run the fused pass over ``seq[start:end]`` in this process, ``every`` elements at a time folded
    on into one result, calling ``between(remaining)`` after each with the number of elements left to
    run; return the result, or a :class:`_Failed`."""
    try:
        if aggregate is None:
            out: list = []
            for at in range(start, end, every):
                out += run_steps(steps, seq[at:min(at + every, end)])
                between(max(0, end - at - every))
            return out
        acc = run_steps(steps, (), aggregate)  # an empty input's partial: EMPTY, or {} by key
        for at in range(start, end, every):
            acc = run_steps(steps, seq[at:min(at + every, end)], aggregate, acc)
            between(max(0, end - at - every))
        return acc
    except PipelineError as exc:
        return _Failed(exc)


class _ReadAhead:
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
        _enter_pool(self.pool)
        self.window: deque = deque()
        self.lengths: deque = deque()  # the number of elements of each chunk of the window
        self.exhausted = False
        self.bar = None  # a tqdm bar to advance as chunks are taken
        #: the capture of the context that reads the chunks, where their output goes (also when their
        #: results are taken inside another capture, see LocalExecutor._alongside)
        self.log = capture.current()

    def submit(self, chunk: Any) -> Any:
        """Return the future of ``chunk`` (as it is, or packed) running on the pool."""
        try:
            return self.pool.submit(self.task, chunk)
        except (BrokenProcessPool, ShutdownExecutorError):
            # a worker died in an earlier pass (its error was raised there): start afresh
            if self.window:
                raise
            _leave_pool(self.pool, kill=False)
            self.pool = worker_pool(self.n_jobs, broken=self.pool)
            _enter_pool(self.pool)
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
            packed = _pack(chunk)  # kept, not the chunk: smaller, and unpacked here for a resend
            self.window.append((self.submit(packed), packed))
            self.lengths.append(len(chunk))
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
        failure as the :class:`_Failed` it returned."""
        result = capture.merged_into(self.log, future.result())  # its captured output joins the job's
        if type(result) is str and result == _RESEND:
            result = capture.merged_into(self.log, self.submit(_unpack(chunk)).result())
        if self.bar is not None:
            self.bar.update(1)
        return result if isinstance(result, _Failed) else _unpack(result)

    def failed(self) -> bool:
        """Return True when a chunk already back failed (its result not yet taken), or the pool did."""
        for future, _ in self.window:
            if future.done() and not future.cancelled():
                if future.exception() is not None:
                    return True
                if isinstance(capture.unmerged(future.result()), _Failed):
                    return True
        return False

    def close(self, kill: bool = False) -> None:
        """Cancel the chunks that have not started. Without ``kill`` let the running ones finish, so
        the same workers serve the next pass; with ``kill`` kill the pool's workers now (see
        :func:`_leave_pool`)."""
        if self.bar is not None:
            self.bar.close()
        for future, _ in self.window:
            future.cancel()
        running = [future for future, _ in self.window if not future.done()]
        if kill and running:  # killed as a crash would kill them (see _kill): cancelled chunks are fine
            if _leave_pool(self.pool, kill=True):
                logger.info("stopped %d running chunk(s): the pass ended early", len(running))
            else:
                logger.info("%d running chunk(s) left to finish: another pass uses the same "
                            "workers", len(running))
            return
        _leave_pool(self.pool, kill=False)
        for future in running:
            if not future.cancelled():
                try:
                    future.result()
                except Exception as exc:  # the pool broke: the next pass starts a new one
                    logger.debug("worker pool failed while finishing after an error: %r", exc)
