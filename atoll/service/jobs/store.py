"""The job store: job records in the Celery result backend, and what is kept beside them.

A job's record is the Celery task result of its id, stored with the Celery state of its status
(:class:`~atoll.service.jobs.model.JobStatus`), so ``celery.AsyncResult(job_id)`` and Flower read the same
thing as ``GET /jobs/<id>``. Beside it, under keys of their own (a record that is finished is never
written again, and a large value should not be read with every record):

=======================  =====================================================================
``<job_id>.callback``    the latest state of the callback's delivery (written by every attempt)
``<job_id>.results``     the results' JSON text, when larger than ``inline_results_max_bytes``
``<job_id>.logs``        what the pipeline printed and logged (JSON lines, at most
                         ``job_log_max_bytes``)
``<job_id>.errors``      the dead letters of a run with ``on_error: collect`` (JSON lines, the first
                         ones, at most ``dead_letters_max_bytes``)
``<job_id>.request``     the request it was submitted with (pipeline, data, kwargs, callback), for a
                         re-run (``POST /jobs/<id>/rerun``); written again when the job finishes, so it
                         is kept as long as the record
``idempotency-<hash>``   the job an ``Idempotency-Key`` created, and a hash of its request body
=======================  =====================================================================

Everything expires ``result_expires`` seconds after its last write, like the records.

A read or write that fails for want of storage (a full disk or quota, a folder the process may not
write, Redis out of memory or unreachable, a database down) raises :class:`StoreUnavailable`, which
says why in one word (``full``, ``denied``, ``unreachable``, ``failing``) and in words, without the
server's paths. :meth:`JobStore.writable` writes and removes a small probe record (at most once per
``PROBE_SECONDS`` per store object): the ``store`` health check.

Listing (``GET /jobs``) needs the backend to enumerate its keys: the embedded store (``file://``, one
file per key) and Redis can; on another backend (databases) listing answers 501. Job ids sort by
submission time (UUID version 7), so newest first is a sort of key names, and a page's cursor is the
last id it showed.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import functools
import logging
import os
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from celery.backends.base import KeyValueStoreBackend

from atoll.service.jobs.errors import BadCursor, ListingUnsupported
from atoll.service.jobs.model import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    CallbackState,
    Job,
    JobStatus,
    is_job_id,
)
from atoll.service.transport import TMP_PREFIX

__all__ = ["JobStore", "ListingUnsupported", "BadCursor", "StoreUnavailable", "storage_failure",
           "encode_cursor", "decode_cursor", "ASIDE_STATE", "LIST_LIMIT_DEFAULT", "LIST_LIMIT_MAX",
           "PROBE_SECONDS"]

log = logging.getLogger("atoll.jobs")

#: Celery state of what is kept beside a record (results, logs, idempotency keys)
ASIDE_STATE = "ATOLL"
#: Celery state of a callback's delivery record (see :mod:`atoll.service.jobs.delivery`)
CALLBACK_STATE = "CALLBACK"
#: finished jobs whose status and pipeline a listing remembers (a few dozen bytes each)
FINISHED_CACHE = 100_000
#: seconds a probe of the store's writes is reused (``/health`` and ``/readyz`` ask for it)
PROBE_SECONDS = 1.0
#: bytes of the probe record: about a small job record, so a disk with room for the probe has
#: room for a record
PROBE_BYTES = 512


class StoreUnavailable(Exception):
    """The job store cannot be read or written just now. ``cause`` says why in one word: ``full``
    (no space, quota, Redis's ``maxmemory``), ``denied`` (permissions, a read-only file system or
    replica), ``unreachable`` (a server that does not answer, a folder that is gone) or ``failing``
    (any other error of the store); ``reason`` says it in words."""

    PHRASES = {"full": "is full", "denied": "refuses writes", "unreachable": "is unreachable",
               "failing": "failed"}

    def __init__(self, cause: str, reason: str):
        super().__init__(f"the job store {self.PHRASES[cause]}: {reason}")
        self.cause = cause
        self.reason = reason


_ERRNO_CAUSES = {
    errno.ENOSPC: "full", errno.EDQUOT: "full",
    errno.EACCES: "denied", errno.EPERM: "denied", errno.EROFS: "denied",
    errno.ENOENT: "unreachable", errno.ENOTDIR: "unreachable",
}


def storage_failure(exc: BaseException) -> StoreUnavailable | None:
    """Return the :class:`StoreUnavailable` that ``exc``, raised by a result backend, means, or None
    when it is no failure of the storage (a bug, a value the store refuses)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, ConnectionError | TimeoutError):
        return StoreUnavailable("unreachable", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):  # the message leaves out the file's name: no server paths
        reason = os.strerror(exc.errno).lower() if exc.errno else (exc.strerror or type(exc).__name__)
        return StoreUnavailable(_ERRNO_CAUSES.get(exc.errno, "failing"), reason)
    names = {cls.__name__ for cls in type(exc).__mro__
             if cls.__module__.split(".")[0] in ("redis", "sqlalchemy", "celery", "kombu")}
    if "OutOfMemoryError" in names or ("ResponseError" in names and str(exc).startswith("OOM")):
        return StoreUnavailable("full", "Redis is out of memory (its maxmemory is reached and its "
                                        "policy evicts nothing)")
    if names & {"ReadOnlyError", "NoPermissionError", "AuthenticationError"}:
        return StoreUnavailable("denied", f"{type(exc).__name__}: {exc}")
    if names & {"ConnectionError", "TimeoutError", "BusyLoadingError", "OperationalError",
                "InterfaceError"}:
        text = str(exc)[:300]
        full = any(words in text.lower() for words in ("disk is full", "no space left", "disk full"))
        return StoreUnavailable("full" if full else "unreachable", f"{type(exc).__name__}: {text}")
    if names & {"LockError", "BackendStoreError", "BackendGetMetaError"}:
        return StoreUnavailable("failing", f"{type(exc).__name__}: {str(exc)[:300]}")
    return None


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _storage(method: _Method) -> _Method:
    """Raise a failure of the storage inside ``method`` as :class:`StoreUnavailable`."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            failure = storage_failure(exc)
            if failure is None or failure is exc:
                raise
            raise failure from exc

    return guarded  # type: ignore[return-value]


def encode_cursor(job_id: str) -> str:
    """Return the opaque cursor that continues a listing after ``job_id``."""
    return base64.urlsafe_b64encode(job_id.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Return the job id a cursor continues after, or raise :class:`BadCursor`."""
    try:
        job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(f"cursor {cursor[:80]!r} was not handed out by this service") from None
    if not is_job_id(job_id):
        raise BadCursor(f"cursor {cursor[:80]!r} was not handed out by this service")
    return job_id


class JobStore:
    """Reads and writes job records and what is kept beside them in the result backend of Celery
    ``app`` (Celery keeps one backend object per thread: it is looked up on each use)."""

    def __init__(self, app: Any):
        self.app = app
        #: status and pipeline of finished jobs seen by a listing (they never change): a filter skips
        #: them without reading their records again
        self._finished: OrderedDict[str, tuple[JobStatus, str | None, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._probed: tuple[float, StoreUnavailable | None] = (float("-inf"), None)

    @property
    def backend(self) -> Any:
        """The Celery result backend of this thread."""
        return self.app.backend

    # -- records -------------------------------------------------------------------------------

    @_storage
    def load(self, job_id: str) -> Job | None:
        """Return job ``job_id`` with its latest callback state, or None when there is no record."""
        if not is_job_id(job_id):
            return None
        meta = self.backend.get_task_meta(job_id, cache=False)
        job = Job.from_celery(meta.get("status", ""), meta.get("result"))
        if job is not None and job.callback is not None:  # delivery outcomes are kept beside the record
            stored = self.callback(job_id)
            if stored is not None:
                job.callback = stored
        return job

    @_storage
    def save(self, job: Job) -> bool:
        """Store ``job``'s record with the Celery state of its status (a failed job's traceback also
        goes where Celery keeps tracebacks, for Flower), unless the stored record is finished: a
        finished job never changes, whoever writes last (a worker's outcome and a cancel that cross,
        a progress write after either). Return True when stored.

        The check and the write are one step on the embedded store (a lock file shared by the
        processes on the machine) and on Redis (a Redis lock); on other backends a record could
        still change between them.
        """
        with self._exclusive(job.job_id):
            current = self.status(job.job_id)
            if current is not None and current.finished:
                return False
            traceback = job.error.traceback if job.error is not None and job.status is JobStatus.FAILED \
                else None
            self._write(job.job_id, job.celery_result(), job.status.celery_state, traceback)
            return True

    def _write(self, task_id: str, result: Any, state: str, traceback: str | None = None) -> None:
        """Store ``result`` as Celery task ``task_id``'s result in ``state``. On a key-value backend
        the record is written directly: Celery's ``store_result`` reads the stored record first (to
        never overwrite a SUCCESS), which :meth:`save` has done already and the other keys need not."""
        backend = self.backend
        if not isinstance(backend, KeyValueStoreBackend):
            backend.store_result(task_id, result, state, traceback=traceback)
            return
        meta = backend._get_result_meta(result=result, state=state, traceback=traceback, request=None)
        meta["task_id"] = task_id
        backend._set_with_state(backend.get_key_for_task(task_id), backend.encode(meta), state)

    @contextmanager
    def _exclusive(self, job_id: str) -> Iterator[None]:
        """Hold the lock of ``job_id``'s record across processes (see :meth:`save`)."""
        backend = self.backend
        stripe = zlib.crc32(job_id.encode()) % LOCK_STRIPES
        with _thread_locks[stripe]:
            if hasattr(backend, "path") and hasattr(backend, "_filename"):
                fd = _lock_file(os.fsdecode(backend.path))
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, stripe)  # one byte of the lock file per stripe
                try:
                    yield
                finally:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, stripe)
            elif hasattr(backend, "client") and hasattr(backend.client, "lock"):
                with backend.client.lock(f"atoll-job-lock-{job_id}", timeout=10, blocking_timeout=10):
                    yield
            else:
                yield

    @_storage
    def status(self, job_id: str) -> JobStatus | None:
        """Return the stored status of ``job_id`` (one read, no callback merge), or None."""
        meta = self.backend.get_task_meta(job_id, cache=False)
        return JobStatus.from_celery_state(meta.get("status", ""))

    @_storage
    def forget(self, job_id: str) -> None:
        """Remove job ``job_id``'s record and its kept request (a job the broker refused never existed)."""
        self.backend.forget(job_id)
        self.backend.forget(f"{job_id}.request")

    # -- can it be written? --------------------------------------------------------------------

    def writable(self, max_age: float = PROBE_SECONDS) -> StoreUnavailable | None:
        """Return None when a record can be written now, else why not: writes, reads back and removes
        a probe record of about a small job record's size, at most once per ``max_age`` seconds (one
        thread probes while the others wait for its answer)."""
        with self._probe_lock:
            at, answer = self._probed
            if time.monotonic() - at >= max_age:
                try:
                    self._probe()
                    answer = None
                except Exception as exc:
                    answer = storage_failure(exc) or StoreUnavailable("failing", f"{type(exc).__name__}: "
                                                                                 f"{str(exc)[:300]}")
                self._probed = (time.monotonic(), answer)
            return answer

    def _probe(self) -> None:
        backend = self.backend
        # one key per process; on the embedded store its name is a temporary file's, which cleanup()
        # removes should a process die between the write and the removal
        name = f"{TMP_PREFIX}probe-{os.uname().nodename}-{os.getpid()}"
        value = b"x" * PROBE_BYTES
        if hasattr(backend, "client") and hasattr(backend.client, "set"):  # Redis: no retries, expires
            backend.client.set(name, value, px=10_000)
            backend.client.delete(name)
        elif isinstance(backend, KeyValueStoreBackend):
            key = name.encode()
            backend.set(key, value)
            try:
                if backend.get(key) is None:
                    raise StoreUnavailable("failing", "a record written could not be read back")
            finally:
                backend.delete(key)
        else:
            backend.store_result(name, value.decode(), ASIDE_STATE)
            backend.forget(name)

    # -- the callback's delivery ---------------------------------------------------------------

    @_storage
    def record_callback(self, job_id: str, state: CallbackState) -> None:
        """Store the callback's delivery ``state`` beside the record (written by every attempt)."""
        from dataclasses import asdict

        self._write(f"{job_id}.callback", asdict(state), CALLBACK_STATE)

    @_storage
    def callback(self, job_id: str) -> CallbackState | None:
        """Return the latest delivery state recorded for job ``job_id``, or None before any attempt."""
        meta = self.backend.get_task_meta(f"{job_id}.callback", cache=False)
        if meta.get("status") != CALLBACK_STATE:
            return None
        return CallbackState.from_dict(meta.get("result"))

    # -- kept aside ----------------------------------------------------------------------------

    @_storage
    def put_aside(self, job_id: str, kind: str, text: str) -> None:
        """Keep ``text`` (results or logs) beside job ``job_id``'s record."""
        self._write(f"{job_id}.{kind}", text, ASIDE_STATE)

    @_storage
    def get_aside(self, job_id: str, kind: str) -> str | None:
        """Return the text kept as ``kind`` beside job ``job_id``'s record, or None."""
        meta = self.backend.get_task_meta(f"{job_id}.{kind}", cache=False)
        result = meta.get("result")
        return result if meta.get("status") == ASIDE_STATE and isinstance(result, str) else None

    def keep_request(self, job_id: str) -> None:
        """Write job ``job_id``'s kept request again (when it finishes): it expires with the record."""
        text = self.get_aside(job_id, "request")
        if text is not None:
            self.put_aside(job_id, "request", text)

    # -- idempotency keys ----------------------------------------------------------------------

    @_storage
    def claim(self, key_id: str, value: dict) -> dict | None:
        """Store ``value`` under ``key_id`` unless something is stored there; return None when stored,
        else what was there. Atomic on the embedded store and on Redis (two requests with the same
        key cannot both win); on other backends a read before the write narrows the race."""
        backend = self.backend
        task_id = f"idempotency-{key_id}"
        if isinstance(backend, KeyValueStoreBackend):
            meta = backend._get_result_meta(result=value, state=ASIDE_STATE, traceback=None, request=None)
            meta["task_id"] = task_id
            key = backend.get_key_for_task(task_id)
            if _add(backend, key, backend.encode(meta)):
                return None
        else:
            if self._claimed(task_id) is None:
                backend.store_result(task_id, value, ASIDE_STATE)
                return None
        return self._claimed(task_id) or {}

    def _claimed(self, task_id: str) -> dict | None:
        meta = self.backend.get_task_meta(task_id, cache=False)
        result = meta.get("result")
        return result if meta.get("status") == ASIDE_STATE and isinstance(result, dict) else None

    @_storage
    def release(self, key_id: str) -> None:
        """Remove a claim (its job could not be queued, so the key may be used again)."""
        self.backend.forget(f"idempotency-{key_id}")

    # -- listing -------------------------------------------------------------------------------

    @_storage
    def job_ids(self) -> list[str]:
        """Return the ids of every stored job record, newest first."""
        backend = self.backend
        prefix = backend.task_keyprefix.decode() if isinstance(backend.task_keyprefix, bytes) \
            else backend.task_keyprefix
        # a job's key is the prefix and 36 characters; what is kept beside it has a longer key
        size = len(prefix) + 36
        if hasattr(backend, "path") and hasattr(backend, "_filename"):  # the embedded file store
            names = [n for n in os.listdir(os.fsdecode(backend.path)) if len(n) == size]
        elif hasattr(backend, "client") and hasattr(backend.client, "scan_iter"):  # Redis
            names = [k.decode() if isinstance(k, bytes) else k
                     for k in backend.client.scan_iter(match=f"{prefix}*", count=1000)]
            names = [n for n in names if len(n) == size]
        else:
            raise ListingUnsupported(f"the job store ({type(backend).__name__}) cannot list its records; "
                                     f"listing works on the embedded store and on Redis")
        names.sort(reverse=True)
        return [n[len(prefix):] for n in names if n.startswith(prefix)]

    @_storage
    def list(self, status: JobStatus | None = None, pipeline: str | None = None,
             limit: int = LIST_LIMIT_DEFAULT, after: str | None = None,
             owner: str | None = None) -> tuple[list[Job], str | None]:
        """Return up to ``limit`` jobs (of caller ``owner`` only, when given), newest first, after job
        id ``after``, with the cursor of the next page (None on the last one)."""
        found: list[Job] = []
        filtered = status is not None or pipeline is not None or owner is not None
        for job_id in self.iter_after(after):
            known = self._finished.get(job_id) if filtered else None
            if known is not None and ((status is not None and known[0] is not status) or (
                    pipeline is not None and known[1] != pipeline) or (
                    owner is not None and known[2] != owner)):
                continue
            job = self.load_plain(job_id)
            if job is None:
                continue
            if job.status.finished:
                self._remember(job)
            if (status is not None and job.status is not status) or (
                    pipeline is not None and job.pipeline != pipeline) or (
                    owner is not None and job.owner != owner):
                continue
            if len(found) == limit:
                return self._with_callbacks(found), encode_cursor(found[-1].job_id)
            found.append(job)
        return self._with_callbacks(found), None

    def _with_callbacks(self, jobs: list[Job]) -> list[Job]:
        """Give the listed jobs that have a callback its latest delivery state."""
        for job in jobs:
            if job.callback is not None:
                job.callback = self.callback(job.job_id) or job.callback
        return jobs

    def _remember(self, job: Job) -> None:
        with self._lock:
            self._finished[job.job_id] = (job.status, job.pipeline, job.owner)
            while len(self._finished) > FINISHED_CACHE:
                self._finished.popitem(last=False)

    def iter_after(self, after: str | None) -> Iterator[str]:
        """Yield the stored job ids, newest first, starting after ``after``."""
        for job_id in self.job_ids():
            if after is None or job_id < after:
                yield job_id

    @_storage
    def load_plain(self, job_id: str) -> Job | None:
        """Return job ``job_id``'s record as stored (no callback merge: listing reads one key per job)."""
        meta = self.backend.get_task_meta(job_id, cache=False)
        return Job.from_celery(meta.get("status", ""), meta.get("result"))


#: record locks are spread over this many stripes (two jobs rarely wait for each other): a byte each
#: of one lock file on the embedded store, locked with POSIX record locks (held by a process, dropped
#: by the kernel when it dies), and a thread lock each for the threads of one process
LOCK_STRIPES = 64
_thread_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
_lock_files: dict[tuple[int, str], int] = {}


def _lock_file(folder: str) -> int:
    """Return this process's descriptor of the lock file in ``folder``, kept open: closing any
    descriptor of the file would drop the process's record locks on it."""
    key = (os.getpid(), folder)
    fd = _lock_files.get(key)
    if fd is None:
        fd = _lock_files[key] = os.open(os.path.join(folder, ".records.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    return fd


def _add(backend: Any, key: bytes, value: bytes | str) -> bool:
    """Store ``value`` under ``key`` only when nothing is there; return True when stored."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if hasattr(backend, "path") and hasattr(backend, "_filename"):  # one file per key: link is atomic
        path = os.fsdecode(backend._filename(key))
        temp = f"{path}.{os.getpid()}.{id(value)}.claim"
        with open(temp, "wb") as fh:
            fh.write(value)
        try:
            os.link(temp, path)  # fails when the name exists, whoever made it
            return True
        except FileExistsError:
            if backend.get(key) is not None:
                return False
            os.replace(temp, path)  # an expired claim (or one removed meanwhile) is free again
            return True
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    if hasattr(backend, "client") and hasattr(backend.client, "set"):  # Redis: SET NX EX
        expires = int(backend.expires) if backend.expires else None
        return bool(backend.client.set(key, value, nx=True, ex=expires))
    if backend.get(key) is not None:
        return False
    backend.set(key, value)
    return True
