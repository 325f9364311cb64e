"""The Spark executor: the same pipelines on Apache Spark (``local[*]``, a standalone cluster, YARN,
Kubernetes; Mesos through pyspark 3.5).

How a pipeline maps onto Spark's RDD API (the shared walk in :mod:`atoll.executors.interpreter` decides what
runs; this module only decides where):

* the input becomes an RDD (``parallelize``; a :mod:`atoll.sources` file source becomes ``textFile``);
* a fused run of element-wise stages is one ``mapPartitions`` running :func:`~atoll.operators.run_steps`;
* ``reduceByKey`` combines inside each partition first, then ``RDD.reduceByKey`` merges across them;
* ``reduce`` folds each partition, and the partials are merged in partition order (``RDD.reduce``);
* a fork caches the RDD its branches read, and results stay RDDs until the pipeline's end;
* ``union``, ``join``, ``leftOuterJoin`` and ``cogroup`` are ``RDD.union`` and the rest (a side input
  is parallelized first); ``sample`` and ``zipWithIndex`` are ``RDD.sample`` and ``RDD.zipWithIndex``;
  ``mapPartitions`` and ``keyBy`` run inside the fused ``mapPartitions``.

A failing user function raises, on the driver, its original exception type with the stage, the item and
the worker traceback: the worker pickles the :class:`~atoll.errors.StageFailure` into the message of the
exception Spark reports, and the driver decodes it.

One SparkContext per process (pyspark allows one): created on first use, reused by every executor with
the same master, replaced (and logged) when another master is asked for, stopped at exit.

Functions travel with cloudpickle (modules registered by value included); the driver's ``sys.path`` is
given to the Python workers as ``PYTHONPATH``, so a module importable here imports on workers that share
this disk (local mode, a cluster on this machine); elsewhere install it on the workers as usual.

Every run is a Spark job group of its own (``atoll-<uuid>``). Each Spark action (a ``collect``) runs in
a helper thread while the calling thread waits; when an exception is raised in the calling thread
meanwhile (a signal handler's exception such as Celery's ``SoftTimeLimitExceeded``, a
``KeyboardInterrupt``), the run's job group is cancelled, its running tasks are interrupted, and the
exception propagates unchanged. (Were the action called in the calling thread, the exception would be
raised inside py4j's socket read, and py4j turns any ``Exception`` raised there into a ``Py4JError``.)

Progress (:mod:`atoll.progress`): the tasks of each job of the run (one per partition of each stage) are
the units of work. A thread polls Spark's status tracker for the run's job group every ``interval``
seconds (:data:`MIN_POLL_SECONDS` at least) while an action runs, and the calling thread reports what it
found.

Mesos: Spark 4 removed it. With pyspark >= 4 a ``mesos://`` master (also the one ``zookeeper_host``
sets) is a :class:`SparkUnavailableError` saying to install pyspark 3.5.x. Without pyspark or Java the
error says what to install: ``pip install 'atoll[spark]'``, Java 17 or 21.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import pickle
import re
import shutil
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

from atoll import dead_letters, progress
from atoll.errors import NO_ITEM, AtollError, ConfigError, PipelineError, StageFailure, stage_failure
from atoll.executors.interpreter import Executor
from atoll.executors.serial import chunks_of
from atoll.executors.wire import dumps_pass, loads_pass
from atoll.operators import Step, check_pairs, keyed_input, merge_partials, run_steps

__all__ = ["SparkExecutor", "SparkUnavailableError", "spark_context", "stop_spark_context"]

log = logging.getLogger(__name__)

INSTALL_PYSPARK = "pip install 'atoll[spark]'"
INSTALL_JAVA = ("install Java 17 or 21 (e.g. `apt-get install openjdk-17-jre-headless`; Debian 13 has "
                "openjdk-21-jre-headless) and put `java` on "
                "PATH or set JAVA_HOME")
_LOOPBACK_MASTER = re.compile(r"^(local(\[.*\])?|local-cluster\[.*\]|spark://(127\.0\.0\.1|localhost)[:/].*)$")
_MAX_FAILURE_BYTES = 256 * 1024
_FAILURE = re.compile(r"ATOLL-FAILURE<([A-Za-z0-9+/=]+)>")
#: the shortest period, in seconds, at which a run's progress is polled from Spark's status tracker
MIN_POLL_SECONDS = 0.05


class SparkUnavailableError(ConfigError):
    """pyspark or Java is missing, or the master needs another pyspark version; the message says what to
    install."""


# -- the one SparkContext ------------------------------------------------------------------------

_lock = threading.RLock()
_context: Any = None


def _pyspark_version() -> str:
    try:
        import pyspark
    except ImportError as exc:
        raise SparkUnavailableError(f"the Spark executor needs pyspark, which is not installed "
                                    f"({exc}): {INSTALL_PYSPARK}") from None
    return pyspark.__version__


def _check_master(master: str, version: str) -> None:
    if master.startswith("mesos://") and int(version.split(".")[0]) >= 4:
        raise SparkUnavailableError(
            f"spark_master {master!r} uses Mesos, which Spark 4 removed; pyspark {version} is installed. "
            f"To run on Mesos install pyspark 3.5.x: pip install 'pyspark>=3.5,<4'")


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return
    if shutil.which("java"):
        return
    where = f"JAVA_HOME={home} has no bin/java" if home else "no `java` on PATH and JAVA_HOME unset"
    raise SparkUnavailableError(f"the Spark executor needs Java ({where}): {INSTALL_JAVA}")


def _worker_pythonpath() -> str:
    """Return the driver's import path, so modules importable here import on workers sharing its disk."""
    return os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))


def spark_context(master: str, conf: Mapping[str, Any] | None = None, app_name: str = "atoll",
                  log_level: str | None = None) -> Any:
    """Return the process's SparkContext on ``master``, creating it (or replacing one on another master)."""
    global _context
    _check_master(master, _pyspark_version())
    from pyspark import SparkConf, SparkContext

    with _lock:
        current = _context or SparkContext._active_spark_context
        if current is not None and current._jsc is not None:
            if current.master == master:
                _context = current
                running = current.getConf() if conf else None
                ignored = sorted(k for k, v in (conf or {}).items() if running.get(str(k)) != str(v))
                if ignored:
                    log.warning("the SparkContext on %s is already running: its settings %s stay as "
                                "they are (stop_spark_context() first to change them)", master,
                                ", ".join(ignored))
                if log_level and getattr(current, "_atoll_log_level", None) != log_level:
                    current.setLogLevel(log_level)
                    current._atoll_log_level = log_level
                return current
            log.info("stopping the SparkContext on %s: a pipeline asks for master %s (pyspark allows "
                     "one SparkContext per process)", current.master, master)
            current.stop()
        _context = None
        _check_java()
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        if _LOOPBACK_MASTER.match(master):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        spark_conf = SparkConf().setMaster(master).setAppName(app_name)
        spark_conf.set("spark.ui.showConsoleProgress", "false")
        for key, value in (conf or {}).items():
            spark_conf.set(str(key), str(value))
        log.info("starting a SparkContext on %s", master)
        sc = SparkContext(conf=spark_conf)
        sc.setLogLevel(log_level or "WARN")
        sc._atoll_log_level = log_level or "WARN"
        sc.environment["PYTHONPATH"] = _worker_pythonpath()
        _context = sc
        return sc


def stop_spark_context() -> None:
    """Stop the SparkContext atoll started, if any."""
    global _context
    with _lock:
        if _context is not None:
            log.info("stopping the SparkContext on %s", _context.master)
            try:
                _context.stop()
            finally:
                _context = None


atexit.register(stop_spark_context)


# -- failures cross from the workers as text -----------------------------------------------------

def _encoded(error: BaseException) -> RuntimeError:
    """Return an exception whose message carries ``error`` pickled, for the driver to decode."""
    try:
        payload = pickle.dumps(error)
    except Exception:
        payload = pickle.dumps(PipelineError(str(error), getattr(error, "stage", None)))
    if len(payload) > _MAX_FAILURE_BYTES and isinstance(error, StageFailure):
        # a huge failing element would travel in every copy of Spark's error message: send its repr
        payload = pickle.dumps(stage_failure(error.original, error.stage, error.item_repr,
                                             error.remote_traceback))
    return RuntimeError("ATOLL-FAILURE<" + base64.b64encode(payload).decode("ascii") + ">")


def _decoded(exc: BaseException) -> BaseException | None:
    """Return the atoll error encoded in a Spark job failure, or None."""
    texts = [str(exc)]
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            texts.append(str(java.toString()))
        except Exception:
            pass
    for text in texts:
        match = _FAILURE.search(text)
        if match:
            try:
                return pickle.loads(base64.b64decode(match.group(1)))
            except Exception:
                return None
    return None


def _run_partition(payload: bytes, iterator: Iterable, salvage: tuple | None = None) -> Iterable:
    """Worker side: run a fused pass over one partition (see :func:`run_steps`). Under an error policy
    that drops failing elements, ``salvage`` is ``(policy, accumulator, pass number)``: what the
    partition dropped is added to the accumulator under (pass number, partition index), so a partition
    Spark computes twice still counts once."""
    steps, aggregate = loads_pass(payload)
    items = iterator if isinstance(iterator, (list, range)) else list(iterator)
    try:
        if salvage is None:
            result = run_steps(steps, items, aggregate)
        else:
            from pyspark import TaskContext

            policy, dropped, number = salvage
            done = dead_letters.run_salvaging(policy, run_steps, steps, items, aggregate)
            dropped.add({(number, TaskContext.get().partitionId()): done.exported})
            result = done.value
    except PipelineError as exc:  # StageFailure included
        raise _encoded(exc) from None
    return result if aggregate is None else aggregate.op.rows(result)


def _pickled(steps: list[Step], aggregate: Step | None) -> bytes:
    """Return the pass pickled, or a PipelineError naming the stage whose function cannot travel."""
    try:
        return dumps_pass((steps, aggregate))
    except Exception as exc:
        for step in [*steps, aggregate]:
            try:
                dumps_pass(step)
            except Exception:
                raise PipelineError(f"{step.info.describe()}: its function cannot be sent to Spark "
                                    f"workers ({type(exc).__name__}: {exc})", stage=step.info) from None
        raise


class _Dropped:
    """The parameter (pyspark's ``AccumulatorParam`` protocol) of an accumulator of what partitions
    dropped: ``{(pass number, partition index): exported}``."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, a: dict, b: dict) -> dict:
        a.update(b)
        return a


class _MergeValues:
    """``reduceByKey``'s function as Spark calls it across partitions, failing like the other executors."""

    def __init__(self, payload: bytes):
        self.payload = payload

    @property
    def aggregate(self) -> Step:
        return loads_pass(self.payload)[1]

    def __call__(self, a: Any, b: Any) -> Any:
        try:
            return self.aggregate.func(a, b)
        except StageFailure as exc:
            raise _encoded(exc) from None
        except PipelineError as exc:
            if exc.stage is None:
                exc.stage = self.aggregate.info
                exc.args = (f"{self.aggregate.info.describe()}: {exc.message}",)
            raise _encoded(exc) from None
        except Exception as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            raise _encoded(stage_failure(exc, self.aggregate.info, NO_ITEM, tb)) from None


def _read_ranges(ranges: Iterable) -> Iterator:
    """Yield the elements of a partition's byte ranges (:class:`~atoll.sources.ByteRange`), read here."""
    try:
        for byte_range in ranges:
            yield from byte_range
    except PipelineError as exc:
        raise _encoded(exc) from None


def _parse_partition(parse, iterator: Iterable) -> Iterable:
    try:
        return parse(iterator)
    except PipelineError as exc:
        raise _encoded(exc) from None


# -- two inputs: union, join, leftOuterJoin, cogroup as Spark's own -----------------------------

def _checked_pairs(op_name: str, which: int, info: Any, iterator: Iterable) -> Iterable:
    """Worker side: pass (key, value) pairs on, failing like the other executors on anything else."""
    items = list(iterator)
    try:
        check_pairs(op_name, items, which)  # the same checks and messages as in one process
    except PipelineError as exc:
        exc.stage = info
        exc.args = (f"{info.describe()}: {exc.message}",)
        raise _encoded(exc) from None
    return items


def _positioned(index: int, iterator: Iterable) -> Iterable:
    """Worker side: each pair's value tagged with where it stands (partition, position)."""
    return ((k, ((index, i), v)) for i, (k, v) in enumerate(iterator))


def _in_input_order(groups: tuple) -> tuple:
    """``cogroup``'s values as lists in input order (Spark's shuffle gives them in its own)."""
    return tuple([v for _, v in sorted(side, key=_position)] for side in groups)


def _position(tagged: tuple) -> tuple:
    return tagged[0]


# -- a run's Spark jobs: progress and cancellation ---------------------------------------------

class _RunJobs:
    """The Spark jobs of one run: their job group, the actions that start them, and their progress.

    Each action runs in a helper thread (the job group is set there: Spark's local properties belong
    to the thread); the calling thread waits, interruptibly, and on any exception cancels the group,
    jobs submitted later included. With a :class:`~atoll.progress.RunControl`, a second thread polls
    the status tracker every ``interval`` seconds (:data:`MIN_POLL_SECONDS` at least); the calling
    thread applies what it found, so ``on_progress`` runs in the calling thread as on the other
    executors.
    """

    def __init__(self, sc: Any, run: progress.RunControl | None):
        self.sc = sc
        self.run = run
        self.group = f"atoll-{uuid.uuid4().hex}"
        #: per stage seen: [tasks, tasks completed] (a stage shared by two jobs counts once)
        self.stages: dict[int, list[int]] = {}
        self.found = (0, 0)  # (total, done) over self.stages, as the poller last saw them
        self.applied = (0, 0)  # what the control was told
        self.period = max(run.interval, MIN_POLL_SECONDS) if run is not None else None

    def action(self, call: Callable[[], Any]) -> Any:
        """Return ``call()`` (a Spark action), run in a helper thread inside the run's job group."""
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def act() -> None:
            try:
                self.sc.setJobGroup(self.group, "atoll run", interruptOnCancel=True)
                outcome["value"] = call()
            except BaseException as exc:  # handed to the calling thread
                outcome["error"] = exc
            finally:
                finished.set()

        worker = threading.Thread(target=act, name="atoll-spark-action", daemon=True)
        poller = None
        if self.run is not None:
            poller = threading.Thread(target=self._poll, args=(finished, outcome),
                                      name="atoll-spark-progress", daemon=True)
        try:
            worker.start()
            if poller is None:
                finished.wait()
            else:
                poller.start()
                while not finished.wait(self.period):
                    self._apply()
                poller.join()
                self._apply()
        except BaseException:
            self.cancel()
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def cancel(self) -> None:
        """Cancel the group's running jobs and any it would start later (tasks are interrupted)."""
        try:
            jsc = self.sc._jsc.sc()
            if hasattr(jsc, "cancelJobGroupAndFutureJobs"):  # Spark >= 4
                jsc.cancelJobGroupAndFutureJobs(self.group)
            else:
                self.sc.cancelJobGroup(self.group)
            log.info("cancelled Spark job group %s", self.group)
        except Exception as exc:  # the exception being raised matters more
            log.warning("could not cancel Spark job group %s: %r", self.group, exc)

    def _apply(self) -> None:
        total, done = self.found
        added, advanced = total - self.applied[0], done - self.applied[1]
        self.applied = (total, done)
        if added > 0:
            self.run.add_total(added)
        if advanced > 0:
            self.run.advance(advanced)
        if not added and not advanced:
            self.run.tick()

    def _poll(self, finished: threading.Event, outcome: dict) -> None:
        """Poller thread: look at the group's jobs every ``interval`` seconds until the action ends."""
        try:
            tracker = self.sc.statusTracker()
            while not finished.wait(self.period):
                self._look(tracker)
            if "error" not in outcome:
                # the status store is fed asynchronously: let it catch up, then count every stage
                # of the finished jobs as done (a skipped stage never completes its tasks)
                try:
                    self.sc._jsc.sc().listenerBus().waitUntilEmpty(2000)
                except Exception:
                    pass
                self._look(tracker)
                for counts in self.stages.values():
                    counts[1] = counts[0]
                self._sum()
        except Exception as exc:  # progress is best effort; the action goes on
            log.debug("polling Spark's status tracker for %s failed: %r", self.group, exc)

    def _look(self, tracker: Any) -> None:
        for job_id in tracker.getJobIdsForGroup(self.group):
            job = tracker.getJobInfo(job_id)
            if job is None:
                continue
            for stage_id in job.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                counts = self.stages.setdefault(stage_id, [stage.numTasks, 0])
                counts[1] = max(counts[1], min(stage.numCompletedTasks, counts[0]))
        self._sum()

    def _sum(self) -> None:
        self.found = (sum(c[0] for c in self.stages.values()), sum(c[1] for c in self.stages.values()))


# -- the executor --------------------------------------------------------------------------------

class SparkExecutor(Executor):
    """Runs pipelines on Spark: ``SparkExecutor(master="local[2]")``, ``"spark://host:7077"``, ...

    ``conf`` is passed to SparkConf as it is; ``log_level`` sets Spark's own logging (WARN by default).
    """

    name = "spark"

    def __init__(self, master: str | None = None, conf: Mapping[str, Any] | None = None,
                 app_name: str = "atoll", log_level: str | None = None, chunk_size: int = 262_144):
        self.master = master or "local[*]"
        self.conf = dict(conf or {})
        self.app_name = app_name
        self.log_level = log_level
        #: elements of a generator input parallelized at a time
        self.chunk_size = chunk_size
        _check_master(self.master, _pyspark_version())
        self._local = threading.local()  # RDDs a run cached for its forks, per calling thread

    @classmethod
    def from_config(cls, config: Any = None) -> SparkExecutor:
        """Return the executor that the configuration (``load_config()`` when None) describes."""
        if config is None:
            from atoll.config import load_config

            config = load_config()
        master = config["spark_master"]
        if not master:
            zookeeper = config["zookeeper_host"]
            master = f"mesos://zk://{zookeeper}/mesos" if zookeeper else "local[*]"
        conf = dict(config["spark_conf"] or {})
        if config["spark_binary"]:
            conf.setdefault("spark.executor.uri", config["spark_binary"])
        return cls(master=master, conf=conf, log_level=config["spark_log_level"])

    def __repr__(self) -> str:
        return f"SparkExecutor(master={self.master!r})"

    @property
    def context(self) -> Any:
        """Return the SparkContext this executor runs on (started on first use)."""
        return spark_context(self.master, self.conf, self.app_name, self.log_level)

    # -- running --------------------------------------------------------------------------

    def run(self, pipeline, data: Any, kwargs: dict | None = None, *, checked: bool = False,
            errors: dead_letters.ErrorPolicy | None = None) -> Any:
        """Return ``pipeline``'s result on ``data``; RDDs cached for forks are released after."""
        with self._run_scope():
            return self._decoding(super().run, pipeline, data, kwargs, checked=checked, errors=errors)

    def stream(self, pipeline, data: Any, kwargs: dict | None = None, *, checked: bool = False,
               errors: dead_letters.ErrorPolicy | None = None) -> Generator:
        """Yield ``pipeline``'s result element by element (see :meth:`atoll.Executor.stream`), an
        element-wise last pass a partition at a time; RDDs cached for forks are released after."""
        with self._run_scope():
            return (yield from super().stream(pipeline, data, kwargs, checked=checked, errors=errors))

    @contextmanager
    def _run_scope(self) -> Iterator[None]:
        """A run: the workers' PYTHONPATH set, its own job group, RDDs it cached released after."""
        sc = self.context
        path = _worker_pythonpath()
        if sc.environment.get("PYTHONPATH") != path:
            sc.environment["PYTHONPATH"] = path
        outer = (getattr(self._local, "cached", None), getattr(self._local, "jobs", None),
                 getattr(self._local, "dropped", None))
        self._local.cached = []
        self._local.jobs = _RunJobs(sc, progress.current())
        self._local.dropped = None
        try:
            yield
        finally:
            for rdd in self._local.cached:
                rdd.unpersist()
            self._local.cached, self._local.jobs, self._local.dropped = outer

    def _action(self, call: Callable[[], Any]) -> Any:
        """Return ``call()``, a Spark action, run in the run's job group (see :class:`_RunJobs`)."""
        jobs = getattr(self._local, "jobs", None)
        if jobs is None:  # outside run(): a job group of its own
            jobs = _RunJobs(self.context, progress.current())
        return self._decoding(jobs.action, call)

    def _decoding(self, action, *args, **kwargs) -> Any:
        """Run ``action``; a Spark job failure that carries an atoll error raises that error."""
        try:
            return action(*args, **kwargs)
        except AtollError:
            raise
        except Exception as exc:
            decoded = _decoded(exc)
            if decoded is None:
                raise
            raise decoded from None

    def _rdd(self, data: Any) -> Any:
        from atoll.sources import FileSource

        if self.is_dataset(data):
            return data
        sc = self.context
        if isinstance(data, FileSource):
            ranges = self.byte_ranges(data)
            if data.local() and not any(r.end is None for r in ranges):
                # a local path (shared by the executors): Hadoop's reader, about a range a partition
                rdd = sc.textFile(data.spark_path(), max(1, len(ranges)))
                parse = data.partition_parser()
                if parse is not None:
                    rdd = rdd.mapPartitions(partial(_parse_partition, parse))
                return rdd
            # anything else: each partition reads its own byte range in the executor, through fsspec
            return sc.parallelize(ranges, max(1, len(ranges))).mapPartitions(_read_ranges)
        if isinstance(data, tuple):  # e.g. a fork's results, which may be RDDs themselves
            data = list(self.collect(data))
        if isinstance(data, (list, range)):
            return sc.parallelize(data, max(1, min(sc.defaultParallelism, len(data))))
        # any other iterable (a generator) is sent a chunk at a time, never held whole
        parts = [sc.parallelize(chunk, max(1, min(sc.defaultParallelism, len(chunk))))
                 for chunk in chunks_of(data, self.chunk_size)]
        if not parts:
            return sc.parallelize([], 1)
        return parts[0] if len(parts) == 1 else sc.union(parts)

    def run_pass(self, data: Any, steps: list[Step], aggregate: Step | None) -> Any:
        rdd = self._rdd(data)
        # pickled here with cloudpickle (not pyspark's copy of it), so modules registered by value
        # and exception types travel as they do on the local executor
        payload = _pickled(steps, aggregate)
        runner = partial(_run_partition, payload, salvage=self._salvage_of_pass())
        if aggregate is None:
            return rdd.mapPartitions(runner) if steps else rdd
        combined = rdd.mapPartitions(runner)
        if aggregate.op.keyed:
            return combined.reduceByKey(_MergeValues(payload), combined.getNumPartitions())
        return merge_partials(aggregate, self._action(combined.collect))

    def stream_pass(self, data: Any, steps: list[Step]) -> Iterator:
        """Yield the pass's results a partition at a time, each partition a Spark job of the run (as
        ``RDD.toLocalIterator`` runs them), so the driver holds one partition's results at a time."""
        rdd = self.run_pass(data, steps, None)
        for index in range(rdd.getNumPartitions()):
            yield self._action(partial(rdd.context.runJob, rdd, list, [index]))

    def _salvage_of_pass(self) -> tuple | None:
        """Return what a pass's partitions need to drop failing elements (see :func:`_run_partition`),
        or None under ``fail``; the accumulator is the run's, each pass numbered in the order it ran."""
        policy = dead_letters.settings()
        if policy is None:
            return None
        passes = getattr(self._local, "dropped", None)
        if passes is None:  # outside run(): the accumulator is read by no one
            passes = self._local.dropped = [self.context.accumulator({}, _Dropped()), 0]
        passes[1] += 1
        return policy, passes[0], passes[1]

    def salvaged(self, salvage: dead_letters.Salvage) -> None:
        dropped = getattr(self._local, "dropped", None)
        if dropped is None:
            return
        found = dropped[0].value
        for key in sorted(found):  # in the order of the passes, then of the input
            salvage.merge(found[key])

    def two_inputs(self, op: Any, left: Any, right: Any, info: Any) -> Any:
        """Run a two-input operator as Spark's own: ``RDD.union``, ``join``, ``leftOuterJoin``,
        ``cogroup`` (each input checked for (key, value) pairs with hashable keys on the workers)."""
        sides = [self._rdd(keyed_input(v) if isinstance(v, dict) else v) for v in (left, right)]
        if op.name == "union":
            return sides[0].union(sides[1])
        left_rdd, right_rdd = (rdd.mapPartitions(partial(_checked_pairs, op.name, which, info),
                                                 preservesPartitioning=True)
                               for which, rdd in enumerate(sides))
        if op.name == "join":
            return left_rdd.join(right_rdd)
        if op.name == "leftOuterJoin":
            return left_rdd.leftOuterJoin(right_rdd)
        # each key's values in input order, as on the other executors: tagged with their position
        left_rdd, right_rdd = (rdd.mapPartitionsWithIndex(_positioned, preservesPartitioning=True)
                               for rdd in (left_rdd, right_rdd))
        return left_rdd.cogroup(right_rdd).mapValues(_in_input_order)

    def sampled(self, value: Any, fraction: float, seed: int | None) -> Any:
        """Return Spark's own ``RDD.sample(False, fraction, seed)`` (seeded per partition)."""
        return self._rdd(value).sample(False, fraction, seed)

    def indexed(self, value: Any) -> Any:
        """Return Spark's own ``RDD.zipWithIndex()`` (indices in partition order: input order)."""
        return self._rdd(value).zipWithIndex()

    def is_dataset(self, value: Any) -> bool:
        try:
            from pyspark import RDD
        except ImportError:
            return False
        return isinstance(value, RDD)

    def collect_dataset(self, value: Any) -> Any:
        return self._action(value.collect)

    def reusable(self, value: Any) -> Any:
        if self.is_dataset(value) and not value.is_cached:  # a caller's own cache is left alone
            value.cache()
            cached = getattr(self._local, "cached", None)
            if cached is not None:
                cached.append(value)
            return value
        return super().reusable(value)
