"""The job model: one typed definition of a job, its states, its error body and the message that queues it.

Everything the service says about a job is derived from these classes: the record kept in the job store,
``GET /jobs/<id>``, the items of ``GET /jobs``, the callback's payload, and the OpenAPI components
(:func:`openapi_schemas` builds them from the fields below, so the spec cannot drift from the code).

A job moves through :class:`JobStatus`::

    queued ──> running ──> succeeded | failed | cancelled
       │          │  ^
       │          v  │
       │        retrying ──> failed | cancelled
       └───────────────────> succeeded | failed | cancelled

``running`` may be written again (progress, a re-run after a worker died); a finished job never changes.
Each status is also a Celery state, so Flower, task events and ``AsyncResult(job_id)`` agree with the
service: queued is ``QUEUED``, running ``STARTED``, retrying (waiting for its next attempt, see
:mod:`atoll.service.jobs.retries`) ``RETRYING`` (a state of its own: Celery's ``RETRY`` holds an
exception), succeeded ``SUCCESS``, failed ``FAILURE`` and cancelled ``REVOKED``. A failed or cancelled
job is stored the way Celery stores an exception (:meth:`Job.celery_result`), so
``AsyncResult(job_id).failed()`` is true and ``.result`` is a :class:`JobFailed` whose ``args`` are
``(message, record)``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import time
import traceback as tb_module
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from atoll.encoding import EncodingError, jsonable
from atoll.errors import NO_ITEM, PipelineError, StageFailure

__all__ = ["JobStatus", "Job", "ErrorBody", "CallbackState", "Progress", "JobMessage", "InvalidMessage",
           "JobFailed", "JobCancelled", "InvalidTransition", "new_job_id", "is_job_id", "now",
           "openapi_schemas", "CALLBACK_STATES", "LIST_LIMIT_DEFAULT", "LIST_LIMIT_MAX", "shorten_paths",
           "time_limit_message"]

#: the states of a callback's delivery
CALLBACK_STATES = ("pending", "delivered", "failed", "abandoned")
#: jobs per page of ``GET /jobs``: by default, and at most
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 500
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def now() -> str:
    """Return the current UTC time as ISO 8601 text with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class _JobIds:
    """Job ids of one process, each greater than the one before (RFC 9562's UUID version 7, "monotonic
    random", method 2): 48 bits of Unix milliseconds, then 74 bits that are random for the first id of a
    millisecond and grow by a random step for each further id of that millisecond. Ids made in the same
    millisecond would otherwise be ordered by chance, and so would the jobs listed newest first. A clock
    that steps back keeps the last millisecond; 74 bits spent in one millisecond move on to the next."""

    _RANDOM_BITS = 74
    _LIMIT = 1 << _RANDOM_BITS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._millis = -1
        self._random = 0

    def reset(self) -> None:
        """Forget the last id and take a new lock (in a child process after ``fork``: the parent's lock
        may have been held by a thread the child does not have)."""
        self._lock = threading.Lock()
        self._millis = -1

    def next(self) -> str:
        millis = time.time_ns() // 1_000_000
        with self._lock:
            if millis > self._millis:
                random = int.from_bytes(os.urandom(10), "big") >> 6
            else:
                millis = self._millis
                random = self._random + 1 + (int.from_bytes(os.urandom(4), "big"))
                if random >= self._LIMIT:
                    millis += 1
                    random = int.from_bytes(os.urandom(10), "big") >> 7  # room to grow in the next one
            self._millis, self._random = millis, random
        value = ((millis & (2 ** 48 - 1)) << 80 | 0x7 << 76 | (random >> 62) << 64
                 | 0b10 << 62 | random & (2 ** 62 - 1))
        return str(uuid.UUID(int=value))


_job_ids = _JobIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_job_ids.reset)


def new_job_id() -> str:
    """Return a new job id: a UUID version 7, whose text sorts in the order the jobs were submitted
    (in one process, also within a millisecond), so listing newest first is a sort of names."""
    return _job_ids.next()


def is_job_id(text: Any) -> bool:
    """Return True when ``text`` has the form of a job id (lowercase hex UUID)."""
    return isinstance(text, str) and bool(_JOB_ID.match(text))


class JobStatus(str, Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for succeeded, failed and cancelled: the record never changes again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def celery_state(self) -> str:
        """The Celery state the job's record is stored with."""
        return _CELERY_STATES[self]

    @classmethod
    def from_celery_state(cls, state: str) -> JobStatus | None:
        """Return the status stored as Celery ``state``, or None for a state no job record has."""
        return _FROM_CELERY.get(state)


_CELERY_STATES = {JobStatus.QUEUED: "QUEUED", JobStatus.RUNNING: "STARTED", JobStatus.RETRYING: "RETRYING",
                  JobStatus.SUCCEEDED: "SUCCESS",
                  JobStatus.FAILED: "FAILURE", JobStatus.CANCELLED: "REVOKED"}
_FROM_CELERY = {v: k for k, v in _CELERY_STATES.items()}

#: the statuses a job may move to from each status
_NEXT = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.RUNNING, JobStatus.RETRYING, JobStatus.SUCCEEDED, JobStatus.FAILED,
                        JobStatus.CANCELLED},
    JobStatus.RETRYING: {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.SUCCEEDED: set(), JobStatus.FAILED: set(), JobStatus.CANCELLED: set(),
}


class InvalidTransition(Exception):
    """A job was asked to move to a status it cannot reach from its own (a finished job never moves)."""


class JobFailed(Exception):
    """How a failed job is stored in Celery: ``args`` are ``(message, record)``; ``str()`` is the message.

    Celery rebuilds it when ``AsyncResult(job_id).result`` is read; the task also raises it (as an
    expected error) after storing the record, so task events and Flower see the failure.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JobCancelled(JobFailed):
    """How a cancelled job is stored in Celery (state ``REVOKED``): ``args`` are ``(message, record)``."""


def _field(description: str, schema: dict | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying its JSON schema and description, for :func:`openapi_schemas`."""
    return field(metadata={"description": description, "schema": schema or {}}, **kwargs)


def _nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


_STRING = {"type": "string"}
_TIME = {"type": ["string", "null"], "format": "date-time"}


# -- errors ------------------------------------------------------------------------------------

_FILE = re.compile(r'File "([^"]+)"')
#: folders under which a file's module path starts, wherever the interpreter was installed
_PACKAGE_DIRS = re.compile(r"^.*[/\\](?:site|dist)-packages[/\\]")


def _roots() -> list[str]:
    """Return the import roots of this process (sys.path and the working folder), longest first."""
    roots = {os.path.abspath(p or os.curdir) for p in sys.path if isinstance(p, str)}
    roots.add(os.getcwd())
    return sorted((os.path.join(r, "") for r in roots if r != os.sep), key=len, reverse=True)


def _module_path(path: str) -> str:
    """Return ``path`` as the module path a user knows (``mymod/stages.py``), never absolute."""
    if not os.path.isabs(path):
        return path
    packaged = _PACKAGE_DIRS.sub("", path)
    if packaged != path:
        return packaged
    for root in _roots():
        if path.startswith(root):
            return path[len(root):]
    return os.path.basename(path)


def shorten_paths(text: str) -> str:
    """Return traceback ``text`` with each absolute file path cut to its module path.

    A caller learns which module and line failed, not where the server keeps its files:

    >>> shorten_paths('File "/opt/venv/lib/python3.11/site-packages/atoll/operators.py", line 9')
    'File "atoll/operators.py", line 9'
    >>> shorten_paths('File "/somewhere/else/job.py", line 3')
    'File "job.py", line 3'
    """
    return _FILE.sub(lambda m: f'File "{_module_path(m.group(1))}"', text)


def time_limit_message(pipeline: str | None, limit: float | None, which: str = "time limit",
                       then: str = "") -> str:
    """Return what a job or a call stopped by a time limit says: its pipeline, which limit, its seconds,
    and ``then`` (what became of it).

    >>> time_limit_message("wc", 2.0, "hard time limit", "; its process was stopped")
    "pipeline 'wc' ran longer than its hard time limit of 2.0 s; its process was stopped"
    """
    seconds = f" of {limit} s" if limit is not None else ""
    return f"pipeline {pipeline!r} ran longer than its {which}{seconds}{then}"


@dataclass
class ErrorBody:
    """The error object of an HTTP error answer, a failed job's record and its callback."""

    name: str = _field("error type, e.g. MissingData, KeyError or TimeLimitExceeded", _STRING)
    message: str = _field("what went wrong, in words", _STRING)
    traceback: str | None = _field("worker-side traceback of a failure (server paths shortened); absent "
                                   "when expose_tracebacks is false", {"type": ["string", "null"]},
                                   default=None)
    stage: dict | None = _field("where in the pipeline it failed, or null",
                                _nullable({"$ref": "#/components/schemas/Stage"}), default=None)
    item: Any = _field("the element that failed, or null; absent when expose_tracebacks is false", {},
                       default=None)

    @classmethod
    def from_exception(cls, exc: BaseException, *, pipeline: str | None = None,
                       time_limit: float | None = None, expose: bool = True) -> ErrorBody:
        """Return the error body of ``exc``: a pipeline error keeps its stage and item, a time limit
        says which, anything else is named by its type. The traceback is the one of the process that
        ran the pipeline, with server paths cut to module paths where it was made (the web process
        may not know the worker's import roots). With ``expose`` false (``expose_tracebacks``) the
        body has no traceback and no item, and a failing stage's message does not quote the item."""
        body = cls._from_exception(exc, pipeline, time_limit)
        if not expose:
            body.traceback = body.item = None
            if isinstance(exc, StageFailure):
                where = exc.stage.describe() if exc.stage is not None else "a stage"
                body.message = f"{where} failed: {exc.name}: {exc.original}"
            elif isinstance(exc, PipelineError) and exc.item is not NO_ITEM:
                body.message = body.message.replace(repr(exc.item), "(item hidden)")
        elif body.traceback:
            body.traceback = shorten_paths(body.traceback)
        return body

    @classmethod
    def _from_exception(cls, exc: BaseException, pipeline: str | None, time_limit: float | None) -> ErrorBody:
        text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))
        if _is_time_limit(exc) or (isinstance(exc, StageFailure) and _is_time_limit(exc.original)):
            return cls("TimeLimitExceeded", time_limit_message(pipeline, time_limit), text)
        if isinstance(exc, StageFailure):
            item = _item(exc.item, getattr(exc, "item_repr", ""))
            return cls(exc.name, exc.message, exc.remote_traceback or text,
                       exc.stage.to_dict() if exc.stage is not None else None, item)
        if isinstance(exc, PipelineError):
            return cls(type(exc).__name__, exc.message, exc.remote_traceback or "",
                       exc.stage.to_dict() if exc.stage is not None else None,
                       _item(exc.item, repr(exc.item)))
        if isinstance(exc, EncodingError):
            return cls("EncodingError", f"pipeline {pipeline!r} returned a result that is not JSON: {exc}",
                       text)
        return cls(type(exc).__name__, str(exc), text)

    def public(self, expose: bool) -> dict:
        """Return the body as callers may see it: with ``expose`` false, no ``traceback`` and no
        ``item`` keys (whatever the setting of the process that stored it); otherwise any absolute
        path left in the traceback (a record stored by another version) cut to its module path."""
        body = dataclasses.asdict(self)
        if not expose:
            del body["traceback"], body["item"]
        elif body["traceback"]:
            body["traceback"] = shorten_paths(body["traceback"])
        return body

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> ErrorBody | None:
        """Return the body stored as ``value`` (None stays None); unknown keys are ignored."""
        if not isinstance(value, Mapping):
            return None
        return cls(str(value.get("name", "Error")), str(value.get("message", "")), value.get("traceback"),
                   value.get("stage"), value.get("item"))


def _is_time_limit(exc: BaseException) -> bool:
    """Return True for Celery's soft time limit (billiard's class), known by its name: the model imports
    no Celery."""
    return any(cls.__name__ == "SoftTimeLimitExceeded"
               and cls.__module__.split(".")[0] in ("billiard", "celery") for cls in type(exc).__mro__)


def _item(item: Any, fallback: str) -> Any:
    if item is NO_ITEM:
        return None
    try:
        return jsonable(item, "item")
    except EncodingError:
        return fallback


@dataclass
class CallbackState:
    """The delivery of a job's callback: pending until delivered, failed when the URL was refused at
    delivery, abandoned after the last retry."""

    url: str = _field("where the outcome is POSTed", _STRING)
    state: str = _field("pending, delivered, failed or abandoned", {"enum": list(CALLBACK_STATES)},
                        default="pending")
    attempts: int = _field("delivery attempts so far", {"type": "integer", "minimum": 0}, default=0)
    last_error: str | None = _field("why the last attempt failed", {"type": ["string", "null"]},
                                    default=None)

    @classmethod
    def from_dict(cls, value: Any) -> CallbackState | None:
        """Return the state stored as ``value``, or None."""
        if not isinstance(value, Mapping) or not isinstance(value.get("url"), str):
            return None
        return cls(value["url"], str(value.get("state", "pending")), int(value.get("attempts", 0)),
                   value.get("last_error"))


@dataclass
class Progress:
    """How much of a running job is done: chunks (local executor) or partitions (Spark)."""

    done: int = _field("chunks or partitions finished", {"type": "integer", "minimum": 0})
    total: int = _field("chunks or partitions known so far (grows as passes start)",
                        {"type": "integer", "minimum": 0})

    @classmethod
    def from_dict(cls, value: Any) -> Progress | None:
        """Return the progress stored as ``value``, or None."""
        if not isinstance(value, Mapping):
            return None
        return cls(int(value.get("done", 0)), int(value.get("total", 0)))


@dataclass
class Job:
    """One asynchronous pipeline run: what was asked, where it is, and how it ended.

    This is the record the service keeps and answers; a client's handle to a job is ``atoll.Job``
    (:class:`atoll.client.Job`), which reads this record over HTTP."""

    job_id: str = _field("the job's id (a UUID that sorts by submission time)", _STRING)
    pipeline: str | None = _field("the registered pipeline's name", {"type": ["string", "null"]})
    status: JobStatus = _field("queued, running, retrying, succeeded, failed or cancelled",
                               {"enum": [s.value for s in JobStatus]}, default=JobStatus.QUEUED)
    submitted_at: str | None = _field("when the service accepted it (ISO 8601, UTC)", _TIME, default=None)
    started_at: str | None = _field("when a worker started it", _TIME, default=None)
    finished_at: str | None = _field("when it succeeded, failed or was cancelled", _TIME, default=None)
    progress: Progress | None = _field(
        "chunks or partitions done while it runs, null when unknown",
        _nullable({"$ref": "#/components/schemas/Progress"}), default=None)
    error: ErrorBody | None = _field("why it failed, or null",
                                     _nullable({"$ref": "#/components/schemas/ErrorDetail"}), default=None)
    results: Any = _field("the pipeline's results once it succeeded (null when they are too large to "
                          "travel inline: see results_url)", {}, default=None)
    results_url: str | None = _field("where GET answers the results when they are larger than "
                                     "inline_results_max_bytes; null otherwise",
                                     {"type": ["string", "null"]}, default=None)
    results_dataset: str | None = _field("the id of the dataset holding the results, for a job run with "
                                         '"results_to": "dataset"; null otherwise',
                                         {"type": ["string", "null"]}, default=None)
    callback: CallbackState | None = _field(
        "the callback's delivery, or null without a callback URL",
        _nullable({"$ref": "#/components/schemas/CallbackState"}), default=None)
    request_id: str | None = _field("the X-Request-ID of the request that submitted it",
                                    {"type": ["string", "null"]}, default=None)
    status_url: str | None = _field("where GET answers this record", {"type": ["string", "null"]},
                                    default=None)
    attempts: int = _field("runs of the job started so far (a retry is one more; so is a run whose "
                           "worker was killed)", {"type": "integer", "minimum": 0}, default=0)
    attempt_errors: list = _field(
        "the error of each failed attempt, oldest first (the last one is also error when it failed)",
        {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}}, default_factory=list)
    rerun_of: str | None = _field("the id of the finished job this one re-runs (POST /jobs/<id>/rerun), "
                                  "or null", {"type": ["string", "null"]}, default=None)
    owner: str | None = _field("the name of the caller that submitted it (configured callers), or null "
                               "without authentication", {"type": ["string", "null"]}, default=None)
    element_errors: dict | None = _field(
        "under on_error skip or collect: the elements dropped (skipped), per stage path (by_stage), and the "
        "first dead letters (sample; all of them at GET /jobs/<id>/errors); null under fail",
        {"type": ["object", "null"], "properties": {
            "skipped": {"type": "integer", "minimum": 0},
            "by_stage": {"type": "object", "additionalProperties": {"type": "integer"}},
            "sample": {"type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}}}},
        default=None)

    # -- transitions ---------------------------------------------------------------------------

    def _move(self, status: JobStatus) -> None:
        if status not in _NEXT[self.status]:
            raise InvalidTransition(f"job {self.job_id} is {self.status.value} and cannot become "
                                    f"{status.value}")
        self.status = status

    def start(self) -> None:
        """A worker took the job: a new attempt (a retry, or a run again after a worker died, whose
        attempt is recorded as lost)."""
        if self.status is JobStatus.RUNNING and self.attempts >= 1:  # its worker died mid-run
            self.attempt_errors.append(ErrorBody("WorkerLost", f"attempt {self.attempts}: the worker "
                                                               f"running it was lost (killed or stopped)"))
        self._move(JobStatus.RUNNING)
        self.attempts += 1
        self.started_at = now()

    def wait_retry(self, error: ErrorBody) -> None:
        """The attempt failed with ``error``, which the pipeline's retries policy retries: the job
        waits for its next attempt."""
        self._move(JobStatus.RETRYING)
        self.attempt_errors.append(error)
        self.progress = None

    def succeed(self, results: Any, results_url: str | None = None) -> None:
        """The pipeline returned ``results`` (JSON values), or stored them aside at ``results_url``."""
        self._move(JobStatus.SUCCEEDED)
        self.results, self.results_url = (None, results_url) if results_url else (results, None)
        self._finish()

    def fail(self, error: ErrorBody) -> None:
        """The pipeline (or the worker running it) failed with ``error``."""
        if self.status is JobStatus.RUNNING and self.attempts >= 1:  # the error of its last attempt
            self.attempt_errors.append(error)
        self._move(JobStatus.FAILED)
        self.error = error
        self._finish()

    def cancel(self) -> None:
        """The job was cancelled: it never runs, or its run was stopped."""
        self._move(JobStatus.CANCELLED)
        self._finish()

    def _finish(self) -> None:
        self.finished_at = now()
        if self.progress is not None and self.status is JobStatus.SUCCEEDED:
            self.progress = Progress(self.progress.total, self.progress.total)

    # -- forms ---------------------------------------------------------------------------------

    def to_record(self) -> dict:
        """Return the job as stored and as ``GET /jobs/<id>`` answers it (before the error's
        ``expose_tracebacks`` rule, see :meth:`public`)."""
        record = dataclasses.asdict(self)
        record["status"] = self.status.value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Job:
        """Return the job stored as ``record`` (records of earlier versions lack some fields): every
        field is read by its name, the nested ones by their own ``from_dict``."""
        values = {f.name: record.get(f.name) for f in dataclasses.fields(cls) if f.name in record}
        for name, read in _READ_NESTED.items():
            values[name] = read(record.get(name))
        values["job_id"] = str(record["job_id"])
        values.setdefault("pipeline", None)
        values["status"] = JobStatus(record.get("status", "queued"))
        return cls(**values)

    def public(self, expose: bool, with_results: bool = True) -> dict:
        """Return the record callers see (``GET /jobs/<id>``; ``GET /jobs`` leaves the results out)."""
        record = self.to_record()
        if self.error is not None:
            record["error"] = self.error.public(expose)
        record["attempt_errors"] = [error.public(expose) for error in self.attempt_errors]
        if not with_results:
            del record["results"]
        return record

    def callback_payload(self, expose: bool) -> dict:
        """Return what the callback POSTs: job_id, pipeline, status, results (or results_url) and error;
        results_dataset too for a job whose results were stored as a dataset."""
        payload = {"job_id": self.job_id, "pipeline": self.pipeline, "status": self.status.value,
                   "results": self.results, "results_url": self.results_url,
                   "error": self.error.public(expose) if self.error is not None else None}
        if self.results_dataset is not None:  # only for "results_to": "dataset"
            payload["results_dataset"] = self.results_dataset
        if self.element_errors is not None:  # only under on_error skip or collect: the counts
            payload["element_errors"] = {key: self.element_errors[key] for key in ("skipped", "by_stage")}
        return payload

    def failure_text(self) -> str:
        """Return one line saying why the job failed (a failing stage's message names the stage,
        the item and the error already; any other error is prefixed with its name)."""
        error = self.error or ErrorBody("Error", "")
        return error.message if error.stage is not None else f"{error.name}: {error.message}"

    def celery_result(self) -> Any:
        """Return what the job store keeps as the Celery task's result for the job's status: the record,
        or for a failed or cancelled job an exception description Celery can rebuild (see JobFailed)."""
        record = self.to_record()
        if self.status is JobStatus.FAILED:
            return _exception_meta(JobFailed, self.failure_text(), record)
        if self.status is JobStatus.CANCELLED:
            return _exception_meta(JobCancelled, f"job {self.job_id} was cancelled", record)
        return record

    @classmethod
    def from_celery(cls, state: str, result: Any) -> Job | None:
        """Return the job stored as Celery ``state`` and ``result``, or None when it holds no job record
        (another task's result, or a state written by something else)."""
        if JobStatus.from_celery_state(state) is None:
            return None
        if isinstance(result, JobFailed) and len(result.args) > 1:
            result = result.args[1]
        elif isinstance(result, Mapping) and "exc_type" in result:  # read without Celery's decoding
            message = result.get("exc_message")
            result = message[1] if isinstance(message, list | tuple) and len(message) > 1 else None
        if not isinstance(result, Mapping) or not is_job_id(result.get("job_id")):
            return None
        return cls.from_record(result)


def _read_errors(value: Any) -> list:
    return [e for e in (ErrorBody.from_dict(v) for v in value) if e is not None] \
        if isinstance(value, list) else []


#: the fields of a job record that are objects of their own, and how each is read back
_READ_NESTED = {"progress": Progress.from_dict, "error": ErrorBody.from_dict,
                "callback": CallbackState.from_dict, "attempts": lambda v: v if isinstance(v, int) else 0,
                "attempt_errors": _read_errors}


def _exception_meta(cls: type[JobFailed], message: str, record: dict) -> dict:
    return {"exc_type": cls.__name__, "exc_module": cls.__module__, "exc_message": [message, record]}


# -- the task message --------------------------------------------------------------------------

class InvalidMessage(ValueError):
    """A task message that does not describe a job this worker can run; the text says why."""


@dataclass(frozen=True)
class JobMessage:
    """What the web process sends a worker to run a job: the pipeline's name, JSON data and kwargs,
    the callback URL and when the job was submitted; never a pickled pipeline.

    On the wire it is the task's positional arguments (``pipeline, data, kwargs, callback,
    submitted_at``) and its ``VERSION`` in the message header ``VERSION_HEADER``; a message
    without that header is version 1. A worker refuses a version it does not know: the job ends
    ``failed`` saying so, as any other message no worker can run.

    >>> message = JobMessage("wc", ["a b"], {}, None, "2026-12-07T17:00:00.000+00:00")
    >>> JobMessage.from_task(message.task_args(), message.headers()) == message
    True
    >>> JobMessage.from_task((42, [1]), {})
    Traceback (most recent call last):
      ...
    atoll.service.jobs.model.InvalidMessage: the job's name must be str; got int
    """

    pipeline: str
    data: Any
    kwargs: dict = field(default_factory=dict)
    callback: str | None = None
    submitted_at: str | None = None
    #: "dataset": store the results as a new dataset; None: in the record (or aside)
    results_to: str | None = None
    #: the call's error policy, ``{"on_error", "max_errors"}``; None: the pipeline's
    errors: dict | None = None

    #: the layout this version writes and reads
    VERSION = 1
    #: the task-message header carrying the version
    VERSION_HEADER = "atoll_message_version"
    #: the positional arguments of version 1, their names in errors and the types they may have
    _FIELDS = (("name", (str,)), ("data", None), ("kwargs", (dict, type(None))),
               ("callback", (str, type(None))), ("submitted_at", (str, type(None))),
               ("results_to", (str, type(None))), ("errors", (dict, type(None))))

    def task_args(self) -> tuple:
        """Return the task's positional arguments."""
        if self.results_to is None and self.errors is None:  # the five arguments earlier workers read
            return (self.pipeline, self.data, self.kwargs, self.callback, self.submitted_at)
        if self.errors is None:
            return (self.pipeline, self.data, self.kwargs, self.callback, self.submitted_at, self.results_to)
        return (self.pipeline, self.data, self.kwargs, self.callback, self.submitted_at, self.results_to,
                self.errors)

    def request_text(self) -> str:
        """Return the JSON text of the request (pipeline, data, kwargs, callback) as kept beside the
        job's record for a re-run (:meth:`from_request_text` reads it)."""
        import json

        request = {"pipeline": self.pipeline, "data": self.data, "kwargs": self.kwargs,
                   "callback": self.callback}
        if self.errors is not None:
            request["errors"] = self.errors
        return json.dumps(request, separators=(",", ":"))

    @classmethod
    def from_request_text(cls, text: str) -> JobMessage:
        """Return the message of a request kept by :meth:`request_text` (not yet submitted)."""
        import json

        request = json.loads(text)
        return cls(request["pipeline"], request["data"], request.get("kwargs") or {}, request.get("callback"),
                   errors=request.get("errors"))

    def headers(self) -> dict[str, Any]:
        """Return the message headers that go with the arguments (the version)."""
        return {self.VERSION_HEADER: self.VERSION}

    @classmethod
    def check_version(cls, headers: Mapping[str, Any] | None) -> None:
        """Raise :class:`InvalidMessage` unless ``headers`` name a version this worker reads."""
        version = (headers or {}).get(cls.VERSION_HEADER, 1)
        if version != cls.VERSION:
            raise InvalidMessage(f"the message is of version {version!r}, which this worker does not read "
                                 f"(it reads version {cls.VERSION}): run workers of the web process's "
                                 f"version")

    @classmethod
    def from_task(cls, args: tuple | list, headers: Mapping[str, Any] | None) -> JobMessage:
        """Return the message of a task's ``args`` and ``headers``, or raise :class:`InvalidMessage`."""
        cls.check_version(headers)
        names = ", ".join(name for name, _ in cls._FIELDS)
        if not 2 <= len(args) <= len(cls._FIELDS):
            raise InvalidMessage(f"a pipeline job takes 2 to {len(cls._FIELDS)} arguments ({names}); the "
                                 f"message has {len(args)}")
        for value, (name, types) in zip(args, cls._FIELDS):
            if types is not None and not isinstance(value, types):
                raise InvalidMessage(f"the job's {name} must be {' or '.join(t.__name__ for t in types)}; "
                                     f"got {type(value).__name__}")
        return cls.trusted(args)

    @classmethod
    def trusted(cls, args: tuple | list) -> JobMessage:
        """Return the message of task ``args`` that :meth:`from_task` (the worker's guard) accepted."""
        pipeline, data, kwargs, callback, submitted_at, results_to, errors = (
            *args, *(None,) * (len(cls._FIELDS) - len(args)))
        return cls(pipeline, data, kwargs or {}, callback, submitted_at, results_to, errors)

    @classmethod
    def job_of(cls, job_id: str, args: tuple | list, request_id: str | None) -> Job:
        """Return the queued job that task ``args`` describe, as far as they can be read: for a message
        whose record is missing (expired, or a message sent by hand), refused ones too."""
        def text(index: int) -> str | None:
            return args[index] if len(args) > index and isinstance(args[index], str) else None

        callback = text(3)
        return Job(job_id, text(0), submitted_at=text(4), request_id=request_id,
                   callback=CallbackState(callback) if callback else None)

# -- OpenAPI -----------------------------------------------------------------------------------


def _object_schema(cls: type, description: str, required: list[str] | None = None) -> dict:
    properties = {}
    for f in dataclasses.fields(cls):
        schema = dict(f.metadata.get("schema", {}))
        if "$ref" not in schema:
            schema["description"] = f.metadata["description"]
        properties[f.name] = schema
    names = [f.name for f in dataclasses.fields(cls)]
    return {"type": "object", "description": description, "required": required if required is not None
            else names, "properties": properties}


def openapi_schemas() -> dict[str, dict]:
    """Return the OpenAPI components of the job model, built from the dataclasses' fields."""
    job = _object_schema(Job, "An asynchronous job (GET /jobs/{job_id}).")
    summary = _object_schema(Job, "A job as GET /jobs lists it: the record without its results.")
    del summary["properties"]["results"]
    summary["required"] = [name for name in summary["required"] if name != "results"]
    error = _object_schema(ErrorBody, "An error: what failed, and where in the pipeline.",
                           required=["name", "message"])
    error["additionalProperties"] = True
    payload_fields = ("job_id", "pipeline", "status", "results", "results_url", "results_dataset", "error")
    payload = {"type": "object", "description": "What a callback POSTs when the job finished.",
               "required": [name for name in payload_fields if name != "results_dataset"],
               "properties": {name: job["properties"][name] for name in payload_fields}}
    payload["properties"]["element_errors"] = {
        "type": "object", "description": "under on_error skip or collect: the elements dropped, per stage",
        "properties": {"skipped": {"type": "integer", "minimum": 0},
                       "by_stage": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    return {
        "Job": job,
        "JobSummary": summary,
        "JobList": {"type": "object", "required": ["jobs", "next"], "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
            "next": {"type": ["string", "null"], "description": "the cursor of the next page, or null"}}},
        "ErrorDetail": error,
        "CallbackState": _object_schema(CallbackState, CallbackState.__doc__.strip()),
        "Progress": _object_schema(Progress, Progress.__doc__.strip()),
        "CallbackPayload": payload,
    }
