"""Run control (:mod:`atoll.progress`): progress reports from every executor, and in-flight work stopped
when an exception is raised in the calling thread (as Celery's soft time limit does, from a signal
handler) on the real local worker pool and the real Spark."""

from __future__ import annotations

import logging
import operator
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from atoll import LocalExecutor, Pipeline, SerialExecutor, progress
from atoll.progress import RunControl
from tests.spark_cluster import require_spark


def forced(n_jobs: int = 2, **options) -> LocalExecutor:
    """A LocalExecutor that sends every element to the workers."""
    return LocalExecutor(n_jobs, min_parallel_seconds=0, probe_seconds=0, **options)


class Recorder:
    """An ``on_progress`` that keeps every call."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))

    def check(self) -> tuple[int, int]:
        """Assert the calls only ever grow and end complete; return the last one."""
        assert self.calls, "no progress reported"
        for (d0, t0), (d1, t1) in zip(self.calls, self.calls[1:]):
            assert d0 <= d1 and t0 <= t1, self.calls
        assert all(d <= t for d, t in self.calls), self.calls
        done, total = self.calls[-1]
        assert done == total, self.calls
        return done, total


class Stop(Exception):
    """Raised by a signal handler in the main thread while a pass runs."""


class RaiseWhenStarted:
    """Raise ``exc_type`` in the main thread, from a signal handler, once a file ``started-*``
    appears in ``folder`` (work is in flight): as Celery does, the signal is sent to the process
    (``os.kill``). ``sent`` is the monotonic time the signal was sent."""

    def __init__(self, folder: Path, exc_type: type[BaseException]):
        self.folder, self.exc_type = folder, exc_type
        self.sent: float | None = None
        self.done = threading.Event()

    def _handler(self, signum, frame):
        raise self.exc_type("stopped from a signal handler")

    def _watch(self) -> None:
        deadline = time.monotonic() + 90
        while not self.done.is_set() and time.monotonic() < deadline:
            if any(self.folder.glob("started-*")):
                self.sent = time.monotonic()
                os.kill(os.getpid(), signal.SIGALRM)
                return
            time.sleep(0.05)

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._handler)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.watcher.join()
        signal.signal(signal.SIGALRM, self.previous)
        return False

    def wait_past(self, seconds: float) -> None:
        """Sleep until ``seconds`` after the signal: work running then would have ended by now."""
        assert self.sent is not None, "no work started"
        time.sleep(max(0.0, self.sent + seconds - time.monotonic()))


# -- RunControl on its own --------------------------------------------------------------------------

def test_counts_and_throttled_reports():
    calls = Recorder()
    run = RunControl(on_progress=calls, interval=3600)
    run.add_total(3)
    run.advance()
    run.add_total(2)
    run.advance(4)
    assert (run.done, run.total) == (5, 5)
    assert calls.calls == [(0, 3)]  # the first change, then nothing within the interval
    run.flush()
    run.flush()  # nothing new: no second call
    assert calls.calls == [(0, 3), (5, 5)]


def test_every_change_is_reported_without_an_interval():
    calls = Recorder()
    run = RunControl(on_progress=calls, interval=0)
    run.add_total(2)
    run.advance()
    run.advance()
    assert calls.calls == [(0, 2), (1, 2), (2, 2)]


def test_using_sets_the_current_control_and_flushes_at_the_end():
    calls = Recorder()
    outer, inner = RunControl(), RunControl(on_progress=calls, interval=3600)
    assert progress.current() is None
    with progress.using(outer):
        assert progress.current() is outer
        with progress.using(inner) as given:
            assert given is inner and progress.current() is inner
            inner.add_total(1)
            inner.advance()
        assert progress.current() is outer
    assert progress.current() is None
    assert calls.calls == [(0, 1), (1, 1)]


def test_a_failing_callback_is_logged_once_and_the_run_goes_on(caplog):
    def broken(done, total):
        raise OSError("the job store is down")

    run = RunControl(on_progress=broken, interval=0)
    with caplog.at_level(logging.DEBUG, logger="atoll.progress"):
        with progress.using(run):
            assert Pipeline().map(abs).run([-1, 2], executor=SerialExecutor()) == [1, 2]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the job store is down" in warnings[0].getMessage()
    assert (run.done, run.total) == (1, 1)


def test_a_callback_exception_of_a_propagated_type_stops_the_run():
    def interrupted(done, total):
        raise Stop("raised while on_progress ran")

    with pytest.raises(Stop):
        with progress.using(RunControl(on_progress=interrupted, interval=0, propagate=(Stop,))):
            Pipeline().map(abs).run([1], executor=SerialExecutor())


# -- serial executor ----------------------------------------------------------------------------------

def test_serial_passes_count_one_each_and_nested_pipelines_do_not_count():
    calls = Recorder()
    inner = Pipeline().map(lambda x: x + 1).reduce(operator.add)
    p = Pipeline().map(inner).reduce(operator.add).to(lambda total: [total]).map(str)
    with progress.using(RunControl(on_progress=calls, interval=0)):
        assert p.run([[i] for i in range(100)], executor=SerialExecutor()) == ["5050"]
    assert calls.check() == (2, 2)  # two passes; the nested pipeline ran 100 times uncounted


# -- local executor -----------------------------------------------------------------------------------

def test_local_chunks_are_counted_as_they_finish():
    calls = Recorder()
    executor = forced(2, max_chunk=5)
    with progress.using(RunControl(on_progress=calls, interval=0)):
        out = Pipeline().map(lambda x: x * 2).run(range(100), executor=executor)
    assert out == list(range(0, 200, 2))
    chunks = executor.last_plan["chunks"]
    assert chunks >= 20
    assert calls.check() == (chunks, chunks)
    assert calls.calls[0][1] == chunks  # a known length announces every chunk up front
    assert len(calls.calls) > 2  # chunks were seen finishing one after another


def test_local_generator_chunks_are_announced_as_they_are_submitted():
    calls = Recorder()
    executor = forced(2, max_chunk=5)
    with progress.using(RunControl(on_progress=calls, interval=0)):
        out = Pipeline().map(lambda x: x + 1).reduce(operator.add).run((x for x in range(100)),
                                                                        executor=executor)
    assert out == 5050
    assert calls.check() == (20, 20)
    assert len({total for _, total in calls.calls}) > 1  # the total grew as the input was read


def test_local_reports_are_throttled():
    calls = Recorder()
    executor = forced(2, max_chunk=5)
    with progress.using(RunControl(on_progress=calls, interval=3600)):
        Pipeline().map(abs).map(abs).reduce(operator.add).run(range(100), executor=executor)
    chunks = executor.last_plan["chunks"]
    # one pass: the first state within the interval, then the last one when `using` ends
    assert calls.calls == [(0, chunks), (chunks, chunks)]


def test_local_pass_that_stays_in_process_counts_one():
    calls = Recorder()
    with progress.using(RunControl(on_progress=calls, interval=0)):
        assert Pipeline().map(abs).run([-1, -2, 3], executor=LocalExecutor(2)) == [1, 2, 3]
    assert calls.check() == (1, 1)


def _loky_workers() -> set[int]:
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "popen_loky" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


def _slow_element(folder: str, seconds: float, unmarked: int | None = None):
    """Return a function that records its worker, sleeps, then leaves a marker file. The process
    ``unmarked`` (a pid) leaves no ``started-*`` file."""

    def slow(x):
        if os.getpid() != unmarked:
            Path(folder, f"started-{x}").write_text(str(os.getpid()))
        time.sleep(seconds)
        Path(folder, f"done-{x}").write_text(str(os.getpid()))
        return x

    return slow


@pytest.mark.slow
def test_an_exception_in_the_main_thread_kills_the_running_chunks(tmp_path):
    executor = forced(2, max_chunk=1)
    assert Pipeline().map(abs).run(range(-4, 4), executor=executor) == [4, 3, 2, 1, 0, 1, 2, 3]
    sleep = 4.0
    slow = Pipeline().map(_slow_element(str(tmp_path), sleep))
    with RaiseWhenStarted(tmp_path, Stop) as stop:
        with pytest.raises(Stop) as caught:
            slow.run(range(6), executor=executor)
    assert type(caught.value) is Stop  # the exception's type is kept
    busy = {int(p.read_text()) for p in tmp_path.glob("started-*")}
    assert busy, "no chunk had started when the exception was raised"
    # the workers running chunks are gone: killed, not left to finish
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in busy if psutil.pid_exists(pid)],
                                 timeout=10)
    assert not alive, f"workers still running: {alive}"
    assert not busy & _loky_workers()
    # no chunk finishes later, and the chunks not yet started never start
    stop.wait_past(sleep + 1.0)
    assert not list(tmp_path.glob("done-*"))
    assert len(list(tmp_path.glob("started-*"))) == len(busy)
    # the next pass starts a new pool
    assert Pipeline().map(abs).run(range(-4, 4), executor=executor) == [4, 3, 2, 1, 0, 1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("aggregate", ["reduce", "reduceByKey"])
def test_an_exception_in_the_main_thread_leaves_an_aggregate_as_it_is(tmp_path, aggregate):
    """Raised while the partials of running chunks are merged: the exception, not a failure of the
    aggregate's stage."""
    executor = forced(2, max_chunk=1)
    slow = Pipeline().map(_slow_element(str(tmp_path), 2.0)).map(lambda x: (x % 2, x))
    with RaiseWhenStarted(tmp_path, Stop):
        with pytest.raises(Stop) as caught:
            getattr(slow, aggregate)(operator.add).run(range(4), executor=executor)
    assert type(caught.value) is Stop


@pytest.mark.slow
def test_keyboard_interrupt_stops_a_local_pass_too(tmp_path):
    executor = forced(2, max_chunk=1)
    slow = Pipeline().map(_slow_element(str(tmp_path), 4.0))
    with RaiseWhenStarted(tmp_path, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            slow.run(range(4), executor=executor)
    busy = {int(p.read_text()) for p in tmp_path.glob("started-*")}
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in busy if psutil.pid_exists(pid)],
                                 timeout=10)
    assert busy and not alive


def test_chunks_shared_with_this_process_are_counted_on_both_sides():
    calls = Recorder()
    executor = LocalExecutor(2, probe_seconds=0, max_chunk=5)
    with progress.using(RunControl(on_progress=calls, interval=0)):
        out = Pipeline().map(lambda x: x * 2).run(list(range(100)), executor=executor)
    assert out == list(range(0, 200, 2))
    plan = executor.last_plan
    assert plan["chunks"] >= 1 and plan["here"] >= 1
    assert calls.check() == (plan["chunks"] + plan["here"],) * 2


@pytest.mark.slow
def test_an_interrupt_while_this_process_works_alongside_kills_the_workers_chunks(tmp_path):
    executor = LocalExecutor(2, probe_seconds=0, max_chunk=1)
    slow = Pipeline().map(_slow_element(str(tmp_path), 4.0, unmarked=os.getpid()))  # workers only
    with RaiseWhenStarted(tmp_path, KeyboardInterrupt) as stop:
        with pytest.raises(KeyboardInterrupt):
            slow.run(list(range(6)), executor=executor)
    assert executor.last_plan["here"] >= 1  # this process was running a chunk of its own
    busy = {int(p.read_text()) for p in tmp_path.glob("started-*")}
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in busy if psutil.pid_exists(pid)],
                                 timeout=10)
    assert busy and not alive
    stop.wait_past(5.0)
    assert not list(tmp_path.glob("done-*"))  # no chunk finished, here or in a worker
    assert Pipeline().map(abs).run(list(range(-4, 4)), executor=executor) == [4, 3, 2, 1, 0, 1, 2, 3]


@pytest.mark.slow
def test_a_pass_of_another_thread_on_the_same_workers_is_not_broken(tmp_path, caplog):
    executor = forced(2, max_chunk=1)
    results: list = []

    def other_pass():
        p = Pipeline().map(lambda x: (time.sleep(0.2), x * 10)[1])
        results.append(p.run(range(20), executor=executor))

    slow = Pipeline().map(_slow_element(str(tmp_path), 2.0))
    other = threading.Thread(target=other_pass)
    try:
        with caplog.at_level(logging.INFO, logger="atoll.executors.local"), \
                RaiseWhenStarted(tmp_path, Stop):
            other.start()
            with pytest.raises(Stop):
                slow.run(range(4), executor=executor)
    finally:
        other.join()
    # the workers were shared: left running, so the other thread's pass ended normally
    assert "another pass uses the same workers" in caplog.text
    assert results == [[x * 10 for x in range(20)]]


# -- Spark ----------------------------------------------------------------------------------------------

@pytest.fixture
def spark(spark_local_executor):
    require_spark()
    return spark_local_executor


@pytest.mark.spark
def test_spark_tasks_are_counted(spark):
    from atoll.executors.spark import SparkExecutor

    # a generator is parallelized 10 elements at a time: 6 slices of 2 partitions each
    executor = SparkExecutor(master=spark.master, chunk_size=10)
    calls = Recorder()
    with progress.using(RunControl(on_progress=calls, interval=0.05)):
        out = Pipeline().map(lambda x: (time.sleep(0.02), x * 2)[1]).run((x for x in range(60)),
                                                                          executor=executor)
    assert out == list(range(0, 120, 2))
    assert calls.check() == (12, 12)


@pytest.mark.spark
def test_spark_reduce_by_key_counts_both_stages(spark):
    calls = Recorder()
    with progress.using(RunControl(on_progress=calls, interval=3600)):
        out = (Pipeline().map(lambda x: (x % 3, x)).reduceByKey(operator.add)
               .run(list(range(30)), executor=spark))
    assert dict(out) == {0: 135, 1: 145, 2: 155}
    partitions = spark.context.defaultParallelism
    _, total = calls.check()
    assert total == 2 * partitions  # the map side and the reduce side of the shuffle
    assert len(calls.calls) <= 2  # throttled: the first state seen, then the last at the end


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("spark_fixture", ["spark_local_executor", "spark_cluster_executor"])
def test_an_exception_in_the_main_thread_cancels_the_spark_job_group(spark_fixture, request, tmp_path):
    from celery.exceptions import SoftTimeLimitExceeded

    spark = request.getfixturevalue(spark_fixture)  # local mode first: the cluster's context is last

    sleep = 8.0

    def slow(x):
        from pyspark import TaskContext

        group = TaskContext.get().getLocalProperty("spark.jobGroup.id")
        Path(tmp_path, f"started-{x}").write_text(group)
        time.sleep(sleep)
        Path(tmp_path, f"done-{x}").write_text(group)
        return x

    with RaiseWhenStarted(tmp_path, SoftTimeLimitExceeded) as stop:
        with pytest.raises(SoftTimeLimitExceeded) as caught:
            Pipeline().map(slow).run(list(range(4)), executor=spark)
    assert type(caught.value) is SoftTimeLimitExceeded  # not py4j's error
    groups = {p.read_text() for p in tmp_path.glob("started-*")}
    assert len(groups) == 1, groups
    group = groups.pop()
    assert group.startswith("atoll-")
    tracker = spark.context.statusTracker()
    jobs = tracker.getJobIdsForGroup(group)
    assert jobs
    deadline = time.monotonic() + 30
    while any(tracker.getJobInfo(j).status == "RUNNING" for j in jobs):
        assert time.monotonic() < deadline, "the job group is still running"
        time.sleep(0.1)
    assert {tracker.getJobInfo(j).status for j in jobs} == {"FAILED"}  # cancelled
    # the tasks were killed: none of them gets to the end of its sleep
    stop.wait_past(sleep + 2.0)
    assert not list(tmp_path.glob("done-*"))
    assert Pipeline().map(abs).run([-1, 2], executor=spark) == [1, 2]
