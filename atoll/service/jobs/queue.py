"""The service's Celery app and its pipeline task: asynchronous jobs that are never silently lost.

One Celery app per :class:`~atoll.service.Atoll` service, configured from atoll's config:

* ``worker_broker`` — e.g. ``amqp://guest:guest@127.0.0.1:5672//``; unset = the embedded broker on
  local disk (:mod:`atoll.service.transport`) under ``state_dir``.
* ``worker_backend`` — where job records live (``GET /jobs/<id>``); unset = ``file://`` under
  ``state_dir`` (one machine). Several machines share ``redis://`` or ``db+postgresql://`` instead.

Messages carry the pipeline **name**, JSON data and JSON kwargs (``json`` is the only accepted
content type), never a pickled pipeline: a worker loads the same registry with
``atoll worker MODULE:SERVICE`` or ``celery -A MODULE:celery worker`` where the module holds
``celery = service.celery``.

Reliability preset: late acknowledgement and re-queue of jobs whose worker process died
(``task_acks_late``, ``task_reject_on_worker_lost``), prefetch of one job per worker process, broker
heartbeats, durable queues and publisher confirms (the HTTP 202 is sent only after the broker confirmed
the message), soft/hard time limits per pipeline (``pipeline_time_limits`` over
``task_soft_time_limit``/``task_time_limit``). A job can therefore run more than once (a worker killed
after the callback was sent and before the acknowledgement): receivers de-duplicate on ``job_id``.

A job store that cannot be written (a full disk, Redis at its ``maxmemory``, a folder the worker may
not write, a store that does not answer) never loses a job: the task tries again with backoff
(:class:`StoreWait`), then returns the message to the queue unacknowledged, and a job is never failed
for the store's sake unless a small failed record can be stored where its outcome cannot.

Job records expire ``result_expires`` seconds after their last write on every backend: Redis and
memcached expire keys themselves; for the others (``file://``, databases) every worker runs the
backend's ``cleanup()`` every :func:`cleanup_interval` seconds, the work Celery leaves to celery beat's
``backend_cleanup`` task, which atoll does not need you to run.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery, bootsteps
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_failure, worker_process_init
from kombu import Queue

from atoll import capture, progress
from atoll.config import Config
from atoll.dead_letters import ErrorPolicy, RunResult, TooManyErrors, json_lines
from atoll.encoding import EncodingError, json_depth, jsonable, to_json
from atoll.errors import ConfigError, PipelineError
from atoll.operators import never_rerun
from atoll.service import metrics
from atoll.service.jobs import delivery as callbacks
from atoll.service.jobs.model import (
    CallbackState,
    ErrorBody,
    InvalidMessage,
    Job,
    JobFailed,
    JobMessage,
    JobStatus,
    Progress,
    is_job_id,
    now,
    time_limit_message,
)
from atoll.service.jobs.retries import RetryPolicy
from atoll.service.jobs.store import JobStore, StoreUnavailable
from atoll.service.log_format import REQUEST_ID_HEADER
from atoll.service.transport import RESULT_BACKEND, TRANSPORT, embedded_options

__all__ = ["create_celery", "celery_settings", "time_limits", "is_embedded", "now",
           "consumer_timeout", "JobQueue", "rabbitmq_version", "CONSUMER_TIMEOUT_ARG",
           "NO_LIMIT_CONSUMER_TIMEOUT",
           "RunningRecord", "RecordCleanup", "cleanup_interval", "PIPELINE_TASK",
           "DELIVERY_TASK", "JobContext", "send_outcome", "StoreWait", "StoreWaitOver", "STORE_WAIT_SECONDS"]

log = logging.getLogger("atoll.jobs")

PIPELINE_TASK = "atoll.run_pipeline"
DELIVERY_TASK = "atoll.deliver_callback"

# the soft limit's signal can land inside a fused pass: fail the job now, do not run the pass again
never_rerun(SoftTimeLimitExceeded)


@worker_process_init.connect(weak=False)
def _allow_child_processes(**_: Any) -> None:
    """Let a prefork pool process start the local executor's worker processes.

    Celery's pool processes are daemonic, and multiprocessing refuses children to a daemonic process;
    a pipeline registered with ``n_jobs`` runs its chunks on processes of its own. Those are atoll's
    loky pool, which stops its workers when its parent exits, so nothing is left behind.
    """
    multiprocessing.current_process()._config["daemon"] = False



def is_embedded(config: Config) -> bool:
    """Return True when jobs go through the embedded broker (no ``worker_broker`` configured)."""
    return not config.worker_broker


def _backend_url(config: Config) -> str:
    url = config.worker_backend
    if url and url.split("://")[0] in ("rpc", "amqp", "pyamqp"):
        raise ConfigError(f"{config.source}: worker_backend {url.split('://')[0]}:// sends a result only "
                          f"to the process that queued the job, so GET /jobs could not answer; use a "
                          f"shared store: redis://..., db+postgresql://..., or file:// on one machine")
    if not url:
        folder = Path(config.state_dir).resolve() / "results"
        folder.mkdir(parents=True, exist_ok=True)
        url = f"file://{folder}"
    if url.startswith("file://"):  # atomic writes: GET /jobs never reads a half-written record
        return f"{RESULT_BACKEND}+{url}"
    return url


def celery_settings(config: Config) -> dict[str, Any]:
    """Return the Celery settings of atoll's reliability preset for ``config``."""
    queue = config.worker_queue
    timeout = consumer_timeout(config)
    settings: dict[str, Any] = {
        "result_backend": _backend_url(config),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": queue,
        "task_queues": [JobQueue(queue, durable=True, consumer_timeout=_milliseconds(timeout))],
        "task_create_missing_queues": True,
        "result_expires": config.result_expires,
        "result_extended": False,
        "task_publish_retry": True,
        # a broker that is down answers 503 within about a second instead of hanging the request
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                      "interval_max": 0.5},
        "broker_connection_timeout": 4.0,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 16,
        "worker_concurrency": config.worker_concurrency,
        "task_soft_time_limit": config.task_soft_time_limit,
        "task_time_limit": config.task_time_limit,
        "timezone": "UTC",
        "enable_utc": True,
    }
    if is_embedded(config):
        settings["broker_url"] = "filesystem://localhost/"
        settings["broker_transport"] = TRANSPORT
        settings["broker_transport_options"] = embedded_options(config.state_dir)
    else:
        settings["broker_url"] = config.worker_broker
        settings["broker_heartbeat"] = 30
        settings["broker_transport_options"] = {"confirm_publish": True}
    return settings


#: RabbitMQ's queue argument: milliseconds a consumer may keep a delivery unacknowledged
CONSUMER_TIMEOUT_ARG = "x-consumer-timeout"
#: the consumer timeout atoll asks for when some job has no hard time limit: one day
NO_LIMIT_CONSUMER_TIMEOUT = 86400.0


def consumer_timeout(config: Config) -> float | None:
    """Return the seconds RabbitMQ may let a worker hold one job unacknowledged, or None to leave
    that to the broker's own setting (``worker_consumer_timeout: 0``).

    Jobs are acknowledged after they ran, so RabbitMQ's consumer timeout (30 min by default) must
    outlast the longest job, or RabbitMQ closes the worker's channel and hands the job to another
    worker while the first still runs it. ``worker_consumer_timeout`` sets it; unset, it is derived
    from the hard time limits, which end every job: twice the longest hard limit (a worker may
    reserve a job while all its processes are busy, so a job can wait up to one limit before it
    starts, then run up to one limit), plus ``callback_backoff_max`` (a callback retry waits
    unacknowledged in the worker until its time comes), plus 300 s for the work around a job (hand-off
    to a pool process, records, the replacement of a killed process).
    When a pipeline has no hard limit, no duration is safe; atoll then asks for one day (or the
    derived figure if larger): set ``task_time_limit`` or ``worker_consumer_timeout`` for longer jobs.
    The derived figure can be below RabbitMQ's 30 min default: a job past its hard limit is killed
    anyway, so a worker holding one longer is stuck and its jobs are better redelivered.
    """
    if config.worker_consumer_timeout is not None:
        return float(config.worker_consumer_timeout) or None
    hard = [config.task_time_limit] + [time_limits(config, name)[1] for name in config.pipeline_time_limits]
    limited = [limit for limit in hard if limit]
    derived = 2 * max(limited) + config.callback_backoff_max + 300 if limited else 0.0
    if len(limited) < len(hard):
        return max(NO_LIMIT_CONSUMER_TIMEOUT, derived)
    return derived


def _milliseconds(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def rabbitmq_version(server_properties: dict) -> tuple[int, int] | None:
    """Return (major, minor) from an AMQP server's properties when it is RabbitMQ, else None."""
    properties = server_properties or {}
    product, version = properties.get("product"), properties.get("version")
    product = product.decode() if isinstance(product, bytes) else product
    version = version.decode() if isinstance(version, bytes) else version
    found = re.match(r"(\d+)\.(\d+)", version or "") if product == "RabbitMQ" else None
    return (int(found[1]), int(found[2])) if found else None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class JobQueue(Queue):
    """atoll's durable job queue: declared with ``x-consumer-timeout`` (``consumer_timeout``, in
    milliseconds) on RabbitMQ before 4.3.

    RabbitMQ 3.12 to 4.2 honour the argument on a classic queue (checked once a minute per channel,
    ``channel_tick_interval``), older releases store it unused (it takes effect when the broker is
    upgraded, since the durable queue keeps its arguments), and 4.3 refuses it on a classic queue,
    which from 4.3 has no consumer timeout at all. A classic queue's other arguments are not compared
    with this one, so redeclaring an existing queue with another value, or none, is accepted and
    leaves the queue as it was. Other brokers and the embedded one get no argument.
    """

    attrs = Queue.attrs + (("consumer_timeout", int),)
    consumer_timeout: int | None = None

    def queue_declare(self, nowait: bool = False, passive: bool = False, channel: Any = None) -> Any:
        """Declare the queue, with ``x-consumer-timeout`` where the broker is RabbitMQ before 4.3."""
        channel = channel or self.channel
        connection = getattr(channel, "connection", None)  # the embedded transport has no properties
        version = rabbitmq_version(getattr(connection, "server_properties", None) or {})
        if passive or not self.consumer_timeout or version is None or version >= (4, 3):
            return super().queue_declare(nowait=nowait, passive=passive, channel=channel)
        if version < (3, 12):
            _warn_once(f"RabbitMQ {version[0]}.{version[1]} ignores the {CONSUMER_TIMEOUT_ARG} argument "
                       f"of queue {self.name!r} (it counts from RabbitMQ 3.12): a job still unacknowledged "
                       f"after the broker's consumer_timeout (30 min unless rabbitmq.conf sets it) is "
                       f"handed to another worker; set consumer_timeout above "
                       f"{self.consumer_timeout} ms there, or upgrade RabbitMQ")
        fields = self.as_dict()
        del fields["consumer_timeout"]
        fields["queue_arguments"] = {**(self.queue_arguments or {}),
                                     CONSUMER_TIMEOUT_ARG: self.consumer_timeout}
        return Queue(**fields).queue_declare(nowait=nowait, channel=channel)


def time_limits(config: Config, pipeline: str) -> tuple[float | None, float | None]:
    """Return (soft, hard) seconds for ``pipeline``: ``pipeline_time_limits`` over the global keys."""
    own = config.pipeline_time_limits.get(pipeline) or {}
    return (own.get("soft", config.task_soft_time_limit), own.get("hard", config.task_time_limit))


def cleanup_interval(result_expires: float) -> float:
    """Return the seconds between two removals of expired records: a quarter of ``result_expires``,
    at least 1 s and at most 60 s."""
    return min(60.0, max(1.0, result_expires / 4))


class RecordCleanup(bootsteps.StartStopStep):
    """Worker step: removes expired job records from the result backend every
    :func:`cleanup_interval` seconds (``backend.cleanup()``; a no-op where the store expires keys)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.timer_ref: Any = None

    def start(self, worker: Any) -> None:
        """Schedule the cleanup on the worker's timer."""
        interval = cleanup_interval(worker.app.conf.result_expires)
        self.timer_ref = worker.timer.call_repeatedly(interval, self.cleanup, (worker.app,), priority=10)

    def stop(self, worker: Any) -> None:
        """Cancel the scheduled cleanup."""
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    @staticmethod
    def cleanup(app: Celery) -> None:
        """Run the backend's cleanup once; a failure is logged, never raised into the worker."""
        try:
            app.backend.cleanup()
        except Exception as exc:
            log.warning("could not remove expired job records: %s: %s", type(exc).__name__, exc)
        sweep = getattr(getattr(app, "atoll_context", None), "sweep", None)
        if sweep is not None:
            try:
                sweep()
            except Exception as exc:
                log.warning("could not remove expired datasets: %s: %s", type(exc).__name__, exc)


def create_celery(service: Any) -> Celery:
    """Return a new Celery app for ``service`` with its pipeline and callback-delivery tasks."""
    config: Config = service.config
    app = Celery(f"atoll-{config.worker_queue}", set_as_current=False)
    app.conf.update(celery_settings(config))
    app.steps["worker"].add(RecordCleanup)
    _register_tasks(app, config, service.run_pipeline)
    app.atoll_context.resolve = service.resolve_data
    app.atoll_context.sweep = lambda: service.datasets().sweep()
    app.atoll_context.run_to_dataset = lambda name, data, kwargs, job_id, owner, **policy: (
        service.run_to_dataset(name, data, kwargs, job_id=job_id, owner=owner, **policy))
    app.atoll_context.retries = lambda name: getattr(service.pipelines.get(name), "retries", None)
    return app


class RunningRecord:
    """Writes a running job's record once the job has run for ``delay`` seconds (at once for 0), and
    again when its progress moves (:meth:`progress`, which the executors call at most twice a second).

    Most jobs of a service finish in milliseconds; a poller would hardly ever see them running, and
    each record written costs the job store a write (a new file on the embedded store). After
    :meth:`finish` the record is never written, so it cannot land after the job's outcome.
    """

    def __init__(self, store: JobStore, job: Job, delay: float):
        self._store, self._job = store, job
        self._lock = threading.Lock()
        self._finished = False
        self._written = False
        self._timer: threading.Timer | None = None
        if delay <= 0:
            self._write()
        else:
            self._timer = threading.Timer(delay, self._write)
            self._timer.daemon = True
            self._timer.start()

    def _write(self) -> None:
        with self._lock:
            if self._finished:
                return
            try:
                self._store.save(self._job)
                self._written = True
            except Exception as exc:  # the outcome is still stored; only the interim state is lost
                log.warning("job %s: could not store its running state: %s", self._job.job_id, exc)

    def progress(self, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` chunks or partitions are finished."""
        self._job.progress = Progress(done, total)
        if self._written:
            self._write()

    def finish(self) -> None:
        """Stop the record from being written from now on (waits for a write in progress)."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._finished = True


def _run_job(job: Job, data: Any, kwargs: dict, context: JobContext, delay: float,
             errors: dict | None = None, to_dataset: bool = False) -> tuple[Any, Any]:
    """Run ``job``'s pipeline; return (results, None) or (None, the exception), with what it printed
    and logged kept beside the record and its progress written while it runs. ``errors`` is the call's
    error policy (``{"on_error", "max_errors"}``); what a policy dropped goes in the record
    (``element_errors``) and its dead letters beside it. ``to_dataset``: the results are stored as a
    new dataset as they are produced, and the dataset's id returned instead (a store that refuses
    them, too large, full or down, fails the job)."""
    config = context.config
    running = RunningRecord(context.store, job, delay)
    captured = None
    try:
        limit = config.job_log_max_bytes and max(config.job_log_max_bytes, capture.MIN_MAX_BYTES)
        with capture.capture(limit) as captured, \
                progress.using(progress.RunControl(on_progress=running.progress,
                                                   propagate=(SoftTimeLimitExceeded,))):
            try:
                policy = {} if errors is None else {"errors": ErrorPolicy(**errors)}
                if to_dataset:
                    outcome = context.run_to_dataset(job.pipeline, context.resolve(data), kwargs,
                                                     job.job_id, job.owner, **policy)
                else:
                    outcome = context.run(job.pipeline, context.resolve(data), kwargs, **policy)
                if isinstance(outcome, RunResult):
                    _keep_dead_letters(context, job, outcome)
                    outcome = outcome.results
                return (outcome.dataset_id if to_dataset else jsonable(outcome)), None
            except (Exception, SoftTimeLimitExceeded) as exc:
                if isinstance(exc, TooManyErrors):  # what it dropped before it failed is kept too
                    _keep_dead_letters(context, job, exc.result())
                if not isinstance(exc, PipelineError | EncodingError | SoftTimeLimitExceeded):
                    log.exception("job %s: pipeline %r failed", job.job_id, job.pipeline)
                return None, exc
    finally:
        running.finish()
        _keep_logs(context.store, job.job_id, captured)


def _keep_dead_letters(context: JobContext, job: Job, outcome: RunResult) -> None:
    """Put what ``outcome`` dropped in ``job``'s record (counts and a sample) and its dead letters beside
    it (``<job_id>.errors``, JSON lines within ``dead_letters_max_bytes``)."""
    job.element_errors = outcome.summary()
    if not outcome.errors:
        return
    text, _ = json_lines(outcome.errors, context.config.dead_letters_max_bytes)
    try:
        context.store.put_aside(job.job_id, "errors", text)
    except Exception as exc:  # the outcome matters more than the dead letters
        log.warning("job %s: could not store its dead letters: %s", job.job_id, exc)


def _keep_logs(store: JobStore, job_id: str, output: Any) -> None:
    if output is None or output.empty:
        return
    try:
        store.put_aside(job_id, "logs", output.text())
    except Exception as exc:  # the outcome matters more than the output
        log.warning("job %s: could not store its output: %s", job_id, exc)


@dataclass
class JobContext:
    """What a job's task needs: the config, the job store, the callback task and how to run a pipeline."""

    config: Config
    store: JobStore
    deliver: Any
    run: Callable[[str, Any, dict], Any]
    #: a run's input from its data: a dataset, file or URL reference read where the job runs
    resolve: Callable[[Any], Any] = lambda data: data
    #: removes expired datasets and abandoned uploads (run with the job records' cleanup)
    sweep: Callable[[], Any] | None = None
    #: runs a pipeline and stores its results as a new dataset as they are produced (name, data,
    #: kwargs, job id, owner, errors=policy); returns the Dataset (in a RunResult under a policy)
    run_to_dataset: Callable[..., Any] | None = None
    #: the retries policy of a registered pipeline (its name), or None
    retries: Callable[[str], RetryPolicy | None] = lambda name: None


def _caller_kwarg(owner: str | None) -> dict:
    """Return the delivery task's ``caller`` keyword, left out without one (workers of earlier
    versions take no such keyword)."""
    return {"caller": owner} if owner else {}


def send_outcome(job: Job, context: JobContext, inline: bool = True) -> None:
    """POST finished ``job``'s callback, if it has one: the first attempt here when ``inline`` (in the
    job's own task), otherwise queued; failed attempts are retried by delivery tasks."""
    if job.callback is None:
        return
    config = context.config
    url = job.callback.url
    body = to_json(job.callback_payload(config.expose_tracebacks))
    if not inline:  # queued first: a recorded state always has a delivery behind it
        context.deliver.apply_async((job.job_id, url, body, 0), {"request_id": job.request_id,
                                                                 **_caller_kwarg(job.owner)},
                                    queue=config.worker_queue)
        callbacks.record_callback(context.store, job.job_id, CallbackState(url, "pending", 0))
        return
    retry_for: Exception | None = None
    try:  # the record is stored first: a receiver that reads the job on delivery finds it done
        callbacks.post_callback(url, body.encode("utf-8"), job.job_id, config, request_id=job.request_id,
                                caller=job.owner)
        state = CallbackState(url, "delivered", 1)
    except callbacks.CallbackURLError as exc:
        log.error("job %s: callback refused at delivery: %s", job.job_id, exc)
        state = CallbackState(url, "failed", 1, str(exc))
    except callbacks.DeliveryError as exc:
        if config.callback_max_retries >= 1:
            state, retry_for = CallbackState(url, "pending", 1, str(exc)), exc
        else:
            log.error("job %s: callback not delivered and callback_max_retries is 0, giving up: %s",
                      job.job_id, exc)
            state = CallbackState(url, "abandoned", 1, str(exc))
    if retry_for is not None:  # queued first: a recorded state always has a delivery behind it
        callbacks.schedule_retry(context.deliver, job.job_id, url, body, config, retry_for,
                                 queue=config.worker_queue, request_id=job.request_id, caller=job.owner)
    callbacks.record_callback(context.store, job.job_id, state)


def _finished_job(job: Job, results: Any, error: BaseException | None, context: JobContext) -> str | None:
    """Move ``job`` to its outcome; return the results' JSON text to keep aside (results above
    ``inline_results_max_bytes``), or None."""
    config = context.config
    if error is not None:
        soft, _ = time_limits(config, job.pipeline or "")
        job.fail(ErrorBody.from_exception(error, pipeline=job.pipeline, time_limit=soft,
                                          expose=config.expose_tracebacks))
        return None
    if job.results_dataset is not None:
        job.succeed(None)
        return None
    text = to_json(results, path="results")
    if len(text) > config.inline_results_max_bytes and job.status_url:
        job.succeed(None, results_url=f"{job.status_url}/results")
        return text
    job.succeed(results)
    return None


def _store_outcome(store: JobStore, job: Job, aside: str | None, request: str | None = None) -> bool:
    """Store finished ``job``'s results kept aside, then its record; return False when the stored
    record had finished already (cancelled while it ran). ``request`` (the request's JSON text, for
    a re-run) is written again: it is kept as long as the finished record."""
    if aside is not None:
        store.put_aside(job.job_id, "results", aside)
    if request is not None:
        store.put_aside(job.job_id, "request", request)
    return store.save(job)


#: seconds a job's task waits at most for a job store that cannot be read or written, from the
#: start of the task, before its message goes back to the queue (less when its time limits are near)
STORE_WAIT_SECONDS = 300.0
#: the first and the longest pause between two tries of such a store
STORE_RETRY_FIRST, STORE_RETRY_MAX = 0.25, 5.0
#: seconds kept free before the soft and the hard time limit: the wait ends before either
STORE_SOFT_MARGIN, STORE_HARD_MARGIN = 1.0, 2.0

_T = TypeVar("_T")


class StoreWaitOver(Exception):
    """A job's wait for its store ended and the store still failed (``failure``) after ``waited`` s."""

    def __init__(self, failure: StoreUnavailable, waited: float):
        super().__init__(str(failure))
        self.failure = failure
        self.waited = waited


class StoreWait:
    """Tries a job's reads and writes of the job store again while the store is unavailable.

    Pauses 0.25 s, 0.5 s, 1 s … up to :data:`STORE_RETRY_MAX` between tries, until
    :data:`STORE_WAIT_SECONDS` after the task started, or until 1 s before the job's soft and 2 s before
    its hard time limit (a time limit would end the task, and Celery acknowledges a job that its hard
    limit ended). Then :meth:`run` raises :class:`StoreWaitOver`: the task puts its message back in the
    queue, where a worker takes it again. A pause also ends when the job is cancelled by ``SIGUSR1``
    (the soft limit's signal).
    """

    def __init__(self, job_id: str, soft: float | None, hard: float | None):
        self.job_id = job_id
        self.started = time.monotonic()
        ends = [self.started + STORE_WAIT_SECONDS]
        if soft:
            ends.append(self.started + soft - STORE_SOFT_MARGIN)
        if hard:
            ends.append(self.started + hard - STORE_HARD_MARGIN)
        self.deadline = min(ends)

    def run(self, action: Callable[[], _T], what: str) -> _T:
        """Return ``action()``, tried again while it raises StoreUnavailable; ``what`` names it in the log."""
        pause, failure, since = STORE_RETRY_FIRST, None, time.monotonic()
        while True:
            try:
                return action()
            except StoreUnavailable as exc:
                if failure is None:
                    log.warning("job %s: cannot %s: %s; trying again for up to %.0f s", self.job_id, what,
                                exc, max(0.0, self.deadline - time.monotonic()))
                failure = exc
            except SoftTimeLimitExceeded:
                if failure is None:
                    raise
                raise StoreWaitOver(failure, time.monotonic() - since) from None
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise StoreWaitOver(failure, time.monotonic() - since)
            try:
                time.sleep(min(pause, left))
            except SoftTimeLimitExceeded:
                raise StoreWaitOver(failure, time.monotonic() - since) from None
            pause = min(2 * pause, STORE_RETRY_MAX)


def _requeue(job_id: str, over: StoreWaitOver, what: str) -> Reject:
    """Return the Reject that puts job ``job_id``'s message back in its queue, unacknowledged."""
    log.error("job %s: could not %s for %.0f s (%s); its message goes back to the queue and the job "
              "runs again when a worker takes it", job_id, what, over.waited, over.failure)
    return Reject(f"the job store is unavailable: {over.failure}", requeue=True)


def _failed_for_the_store(job: Job, over: StoreWaitOver) -> Job:
    """Return finished ``job`` failed, naming the store's failure: a record smaller than an outcome
    the store could not take (large results kept aside, say), stored in its place when it fits."""
    outcome = job.status.value if job.error is None else f"{job.status.value} ({job.failure_text()})"
    tried = job.attempt_errors[:-1] if job.error is not None else job.attempt_errors  # fail() adds it
    failed = replace(job, status=JobStatus.RUNNING, results=None, results_url=None, error=None,
                     finished_at=None, attempt_errors=list(tried))
    failed.fail(ErrorBody("StoreUnavailable", f"pipeline {job.pipeline!r} ran and {outcome}, but its "
                                              f"outcome could not be stored within {over.waited:.0f} s: "
                                              f"{over.failure}"))
    return failed


# -- the message guard: no message can stop a worker --------------------------------------------
#
# Celery's worker decodes a message in its main process and pickles the arguments to hand them to a
# pool process. Arguments nested a few hundred levels deep raise RecursionError there, which Celery
# treats as an unrecoverable error of the worker itself: it exits, the broker redelivers the message,
# and the next worker dies too. Every message of atoll's tasks is therefore checked before Celery
# handles it, and a failure to hand a job to the pool fails that job instead of the worker.

#: a message may be this many times larger than the largest request body: the broker's JSON escapes
#: every non-ASCII character (up to 3 bytes of the request become 6 or 12 of the message)
MESSAGE_BYTES_PER_REQUEST_BYTE = 4
#: room for the message's own fields beside the request's data and kwargs
MESSAGE_OVERHEAD_BYTES = 64 * 1024
#: the ``Strategy`` of atoll's tasks (a path: Celery resolves it; a function would become a method)
GUARDED_STRATEGY = "atoll.service.jobs.queue:guarded_strategy"


class MessageRefused(Exception):
    """A message no worker can run; the text says why, ``task_args`` holds its arguments if decoded."""

    def __init__(self, reason: str, args: tuple = ()):
        super().__init__(reason)
        self.task_args = args


def max_message_bytes(config: Config) -> int:
    """Return the largest message body a worker accepts (none from an accepted request is larger)."""
    return config.max_request_bytes * MESSAGE_BYTES_PER_REQUEST_BYTE + MESSAGE_OVERHEAD_BYTES


def check_message(message: Any, config: Config, pipeline_job: bool = True) -> tuple:
    """Return the decoded arguments of a task message, or raise MessageRefused.

    The size limit applies to ``pipeline_job`` messages: a callback delivery carries results, which
    no request limit bounds.
    """
    size = len(message.body or b"")
    if pipeline_job and size > max_message_bytes(config):
        raise MessageRefused(f"the message is {size} bytes, larger than any request the service accepts "
                             f"(max_request_bytes = {config.max_request_bytes})")
    try:
        payload = message.decode()
    except Exception as exc:  # ContentDisallowed (not JSON), DecodeError, RecursionError
        raise MessageRefused(f"the message cannot be decoded ({message.content_type}): "
                             f"{type(exc).__name__}: {exc}") from None
    if not (isinstance(payload, list | tuple) and len(payload) == 3 and isinstance(payload[0], list)
            and isinstance(payload[1], dict)):
        raise MessageRefused("the message is not a task message of protocol 2: [args, kwargs, embed]")
    args, kwargs, _ = payload
    # data and kwargs sit one and two levels below the message's arguments
    limit = config.max_json_depth + 2
    if json_depth([args, kwargs], stop_above=limit) > limit:
        raise MessageRefused(f"the message's arguments nest arrays and objects more than "
                             f"max_json_depth = {config.max_json_depth} levels deep", tuple(args))
    return tuple(args)


def _refuse(message: Any, reason: str, args: tuple, task: Any, context: JobContext) -> None:
    """Fail the message's job (a pipeline job gets its failed record and callback) and acknowledge it."""
    job_id = (message.headers or {}).get("id")
    log.error("job %s: message refused, acknowledged without running: %s", job_id, reason)
    if job_id and is_job_id(job_id) and task.name == PIPELINE_TASK:
        try:
            job = context.store.load_plain(job_id) or JobMessage.job_of(
                job_id, args, (message.headers or {}).get(REQUEST_ID_HEADER))
            if not job.status.finished:
                job.fail(ErrorBody("MessageRefused", f"the job cannot run: {reason}"))
                if context.store.save(job):
                    send_outcome(job, context, inline=False)
        except Exception as exc:  # the job store is down: the message is still dropped, not retried
            log.error("job %s: could not store its failed record: %s", job_id, exc)
    message.ack()


class _GuardedConsumer:
    """Celery's consumer as its default strategy sees it, but handing jobs to the pool through
    :meth:`hand_off`, which fails a job that cannot be handed over instead of the worker."""

    def __init__(self, consumer: Any, refuse: Any):
        self._consumer = consumer
        self._refuse = refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def on_task_request(self, request: Any) -> None:
        """Hand ``request`` to the pool (now, or once a pool slot is free) through the guard."""
        from celery.exceptions import TaskRevokedError
        from celery.worker.state import task_ready

        execute = request.execute_using_pool
        controller = self._consumer.controller

        def guarded(pool: Any, **kwargs: Any) -> Any:
            try:
                return execute(pool, **kwargs)
            except TaskRevokedError:
                raise
            except Exception as exc:  # e.g. RecursionError pickling the arguments for the pool
                release = getattr(controller, "_quick_release", None)
                if release is not None:  # the pool never took the job: free its slot
                    release()
                task_ready(request)
                self._refuse(request.message, f"it could not be handed to a worker process: "
                                              f"{type(exc).__name__}: {exc}", tuple(request.args or ()))
                return None

        request.execute_using_pool = guarded
        self._consumer.on_task_request(request)


def guarded_strategy(task: Any, app: Celery, consumer: Any, **kwargs: Any) -> Any:
    """Return Celery's default message handler for ``task`` behind atoll's message checks.

    A message that is too large, cannot be decoded, nests too deeply or does not carry the task's
    arguments is acknowledged without running: its job ends ``failed`` with the reason, and the
    worker goes on with the next message.
    """
    from celery.worker.strategy import default

    context: JobContext = app.atoll_context
    config = context.config

    def refuse(message: Any, reason: str, args: tuple = ()) -> None:
        _refuse(message, reason, args, task, context)

    handler = default(task, app, _GuardedConsumer(consumer, refuse), **kwargs)

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any) -> Any:
        args: tuple = ()
        try:
            args = check_message(message, config, pipeline_job=task.name == PIPELINE_TASK)
            if task.name == PIPELINE_TASK:
                JobMessage.from_task(args, message.headers)
        except MessageRefused as exc:
            return refuse(message, str(exc), args or exc.task_args)
        except InvalidMessage as exc:
            return refuse(message, str(exc), args)
        try:
            return handler(message, body, ack, reject, callbacks, **options)
        except Exception as exc:  # whatever Celery raises about this message must not stop the worker
            log.exception("job %s: Celery could not take the message", (message.headers or {}).get("id"))
            return refuse(message, f"{type(exc).__name__}: {exc}", args)

    return on_message


def _retry(task: Any, job: Job, policy: RetryPolicy, error: BaseException, message: JobMessage,
           waiting: StoreWait, context: JobContext) -> bool:
    """Store ``job`` ``retrying`` with its attempt's ``error`` and raise Celery's Retry, which queues
    the job's message again after the policy's backoff. Return True when the job was cancelled while
    it ran (its stored record is final: nothing more to do), False for a time limit (or a cancel's
    ``SIGUSR1``), which is never retried: the job fails as without a policy."""
    config, store, name = context.config, context.store, job.pipeline or ""
    soft, _ = time_limits(config, name)
    body = ErrorBody.from_exception(error, pipeline=name, time_limit=soft, expose=config.expose_tracebacks)
    if body.name == "TimeLimitExceeded":
        return False
    delay = policy.delay(job.attempts)
    job.wait_retry(body)
    try:
        stored = waiting.run(lambda: store.save(job), "store its retrying record")
    except StoreWaitOver as over:
        raise _requeue(job.job_id, over, "store its retrying record") from None
    if not stored:
        log.info("job %s: pipeline %r cancelled", job.job_id, name)
        return True
    log.warning("job %s: attempt %d of %d failed (%s); retrying in %.2f s", job.job_id, job.attempts,
                policy.max, body.name, delay)
    # Celery's retry: the same task id and arguments, queued again with a countdown
    raise task.retry(countdown=delay, max_retries=None, queue=config.worker_queue,
                     headers={REQUEST_ID_HEADER: job.request_id, **message.headers()})


def _register_tasks(app: Celery, config: Config, run: Callable[[str, Any, dict], Any]) -> None:
    deliver = callbacks.make_delivery_task(app, lambda: config, Strategy=GUARDED_STRATEGY)
    context = JobContext(config, JobStore(app), deliver, run)
    app.atoll_context = context

    # shared=False: the task belongs to this service's app alone. A shared task (Celery's default) is
    # added to every app created later in the process, where it would run the first service's registry.
    # ignore_result and store_errors_even_if_ignored=False: Celery stores nothing itself, every state of
    # the job is written here, as a whole record (see atoll.service.jobs.model).
    @app.task(name=PIPELINE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
              ignore_result=True, store_errors_even_if_ignored=False, shared=False, throws=(JobFailed,),
              Strategy=GUARDED_STRATEGY)
    def run_pipeline(self: Any, *args: Any) -> None:
        """Run the job of a :class:`JobMessage`; store the job's outcome; send the callback."""
        job_id = self.request.id
        message = JobMessage.trusted(args)  # checked by the guard, which refuses what cannot run
        name = message.pipeline
        store = context.store
        # a store that cannot be written does not lose the job: its message goes back to the queue
        waiting = StoreWait(job_id, *time_limits(config, name))
        try:
            job = waiting.run(lambda: store.load_plain(job_id), "read its record")
            finished = job is not None and job.status.finished
            resend = finished and job.callback is not None and waiting.run(
                lambda: store.callback(job_id), "read its callback's state") is None
        except StoreWaitOver as over:
            raise _requeue(job_id, over, "read its record") from None
        job = job or JobMessage.job_of(job_id, args, getattr(self.request, REQUEST_ID_HEADER, None))
        if finished:  # cancelled while queued, or delivered again after it finished
            log.info("job %s: already %s, not run again", job_id, job.status.value)
            if resend:
                send_outcome(job, context)  # its worker died after storing it, before the callback
            return
        job.start()
        if job.attempts > 1:
            log.info("job %s: attempt %d", job_id, job.attempts)
        started = time.monotonic()
        results, error = _run_job(job, message.data, message.kwargs, context, config.job_running_after,
                                  message.errors, to_dataset=message.results_to == "dataset")
        policy = context.retries(name) if error is not None else None
        if policy is not None and job.attempts < policy.max and policy.retries(error):
            if _retry(self, job, policy, error, message, waiting, context):
                return  # cancelled while it ran: never retried
        if error is None and message.results_to == "dataset":  # stored while it ran: the record
            job.results_dataset, results = results, None  # carries the dataset's id
        aside = None
        try:
            aside = _finished_job(job, results, error, context)
        except EncodingError as exc:
            job.fail(ErrorBody.from_exception(exc, pipeline=name, expose=config.expose_tracebacks))
        try:
            stored = waiting.run(lambda: _store_outcome(store, job, aside, message.request_text()),
                                 "store its outcome")
        except StoreWaitOver as over:  # a smaller failed record may fit where the outcome did not
            fallback = _failed_for_the_store(job, over)
            try:
                stored = store.save(fallback)
            except StoreUnavailable:
                raise _requeue(job_id, over, "store its outcome") from None
            log.error("job %s: pipeline %r %s, but only a failed record could be stored: %s", job_id, name,
                      job.status.value, over.failure)
            job = fallback
        if not stored:  # cancelled while it ran: the canceller stored the record, counted
            log.info("job %s: pipeline %r cancelled", job_id, name)  # the job and sent the callback
            return
        log.info("job %s: pipeline %r %s", job_id, name, job.status.value)
        metrics.observe_job(name, job.status.value, time.monotonic() - started)
        send_outcome(job, context)
        if job.status is JobStatus.FAILED:  # Celery's state, events and Flower see the failure
            raise JobFailed(job.failure_text())

    def _killed(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                **_: Any) -> None:
        """A job whose process was killed (hard time limit) or lost for good gets its failed record."""
        if getattr(sender, "name", None) != PIPELINE_TASK or getattr(sender, "app", None) is not app:
            return
        if task_id is None or isinstance(exception, JobFailed):
            return  # a failed job's record was stored by the task itself
        try:
            job = context.store.load_plain(task_id)
            if job is None or job.status.finished:
                return
            _, hard = time_limits(config, job.pipeline or "")
            if isinstance(exception, TimeLimitExceeded):
                error = ErrorBody("TimeLimitExceeded", time_limit_message(
                    job.pipeline, hard, "hard time limit", "; its process was stopped"))
            else:
                error = ErrorBody.from_exception(exception or RuntimeError("the job's process was lost"),
                                                 pipeline=job.pipeline, expose=config.expose_tracebacks)
            job.fail(error)
            context.store.keep_request(task_id)  # kept as long as the finished record
            if context.store.save(job):
                metrics.observe_job(job.pipeline or "", job.status.value, None)
                send_outcome(job, context, inline=False)
        except Exception:
            log.exception("job %s: could not store its failed record", task_id)

    # held by the app and connected weakly: a process that makes many services (an app factory, a
    # test suite) does not keep every app alive through Celery's list of receivers
    app.atoll_on_failure = _killed
    task_failure.connect(_killed, weak=True)
    app.atoll_tasks = {"pipeline": run_pipeline, "deliver": deliver}
