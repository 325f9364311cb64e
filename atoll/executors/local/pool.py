"""atoll's own pools of local worker processes (loky, joblib's process pool), one per ``n_jobs``
value, kept between passes; idle workers exit after :data:`IDLE_SECONDS`.

Not the reusable executor that ``joblib.Parallel`` shares: a user's own joblib calls in the same process
neither break nor restart atoll's workers, and the other way round. A pool is killed only by its only
user (:func:`leave_pool`): a pass running on it in another thread is not failed by another's stop.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.backend.utils import kill_process_tree

__all__ = ["IDLE_SECONDS", "worker_pool", "enter_pool", "leave_pool", "shutdown_worker_pools"]

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


def enter_pool(pool: ProcessPoolExecutor) -> None:
    """Count a pass using ``pool`` (see :func:`leave_pool`)."""
    with _pools_lock:
        _pool_users[id(pool)] = _pool_users.get(id(pool), 0) + 1


def leave_pool(pool: ProcessPoolExecutor, kill: bool) -> bool:
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
