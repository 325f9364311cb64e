"""The local executor: fused passes run on a pool of worker processes (loky, joblib's process pool).

The package, part by part: :mod:`~atoll.executors.local.executor` (:class:`LocalExecutor`: probe,
decide, share or chunk), :mod:`~atoll.executors.local.plan` (the :class:`~atoll.executors.local.plan.Plan`
a pass followed and the arithmetic deciding it), :mod:`~atoll.executors.local.source` (the input),
:mod:`~atoll.executors.local.shared` (a pass shared between the workers and this process),
:mod:`~atoll.executors.local.readahead` (chunks submitted ahead, results delivered in order),
:mod:`~atoll.executors.local.chunks` (one chunk run in a worker or here) and
:mod:`~atoll.executors.local.pool` (atoll's worker pools); what travels is
:mod:`atoll.executors.wire`, shared with the Spark executor.

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
   (:class:`~atoll.executors.local.shared.SharedPass`). Chunks are a ``2 * n_jobs``-th of what is
   left, at most ``chunk_seconds`` of work, so they shrink as the two ends near each other (guided
   scheduling), and none gives a process more than its fair share of what is not yet run, so neither
   side is left waiting long for the other. This process's chunks are neither pickled nor sent: on
   work as cheap per element as unpickling it, that is what puts a pass ahead of handing every chunk
   to a worker.
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
results travel pickled by the C pickler (protocol 5) as one bytes object (:mod:`atoll.executors.wire`),
which the pool then moves without looking inside. A sequence input (list, tuple, range) is sliced; any
other iterable is read chunk by chunk as the workers ask for more, so a generator is never held whole.

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

from atoll.executors.local.executor import LocalExecutor
from atoll.executors.local.plan import (
    MAX_ROUNDS,
    MAX_STEPS,
    MIN_KEY_SLICE,
    PARTIAL_SHARE,
    STEP_SECONDS,
    Plan,
)
from atoll.executors.local.pool import IDLE_SECONDS, shutdown_worker_pools, worker_pool

__all__ = ["LocalExecutor", "Plan", "worker_pool", "shutdown_worker_pools", "MAX_ROUNDS", "PARTIAL_SHARE",
           "MIN_KEY_SLICE", "STEP_SECONDS", "MAX_STEPS", "IDLE_SECONDS"]
