"""The local executor: chunked reading of generators, memory, progress bar, functions from __main__,
dill, clean-up after errors, nested pipelines in workers, argument validation."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tracemalloc
from operator import add

import psutil
import pytest

from atoll import LocalExecutor, Pipeline, PipelineError, SerialExecutor
from atoll.executors.local import shutdown_worker_pools
from atoll.parallelism import usable_cores


def forced(n_jobs: int = 2, **options) -> LocalExecutor:
    """A LocalExecutor that sends every element to the workers."""
    return LocalExecutor(n_jobs, min_parallel_seconds=0, probe_seconds=0, **options)


class Recording:
    """A generator-like input that records how many elements have been read from it."""

    def __init__(self, n: int):
        self.n = n
        self.read = 0

    def __iter__(self):
        for i in range(self.n):
            self.read = i + 1
            yield i


def test_generator_is_read_chunk_by_chunk_on_workers(tmp_path):
    """Each worker appends a byte to a file when it finishes a chunk; the generator checks, whenever a
    new chunk starts being read, that only the chunks in flight (joblib sends 2 * n_jobs ahead) have
    been read beyond those finished."""
    done_file = tmp_path / "done"
    done_file.write_bytes(b"")
    chunk, n = 500, 20_000
    ahead = []

    def source():
        for i in range(n):
            if i % chunk == 0:
                ahead.append(i // chunk - done_file.stat().st_size)
            yield i

    def mark_done(x):
        if x % chunk == chunk - 1:
            with open(done_file, "ab") as f:
                f.write(b".")
        return x

    executor = forced(2, max_chunk=chunk)
    result = Pipeline().map(mark_done).reduce(add).run(source(), executor=executor)
    assert result == sum(range(n))
    assert len(ahead) == n // chunk and done_file.stat().st_size == n // chunk
    assert max(ahead) <= 2 * 2 + 1, ahead


def test_generator_is_read_chunk_by_chunk_serially():
    source = Recording(10_000)
    gaps = []

    def f(x):
        gaps.append(source.read - x)
        return x

    SerialExecutor(chunk_size=500).run(Pipeline().map(f).reduce(add), iter(source))
    assert max(gaps) <= 500 and source.read == 10_000


def _peak(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("executor", [SerialExecutor(), forced(2, max_chunk=20_000)],
                         ids=["serial", "local"])
def test_generator_input_never_held_whole(executor):
    n = 300_000
    w1 = Pipeline().map(lambda x: x + 1).filter(lambda x: x % 2 == 0).map(lambda x: x * 2).reduce(add)
    expected = sum((x + 1) * 2 for x in range(n) if (x + 1) % 2 == 0)
    held = _peak(lambda: list(range(1_000, n + 1_000)))
    result = []
    peak = _peak(lambda: result.append(w1.run((x + 1_000 - 1_000 for x in range(n)),
                                              executor=executor)))
    assert result == [expected]
    assert peak < 0.5 * held, (peak, held)


def test_progress_bar(capfd):
    executor = forced(2, max_chunk=10, progress=True)
    assert Pipeline().map(lambda x: x * 2).run(range(100), executor=executor) == list(range(0, 200, 2))
    err = capfd.readouterr().err
    assert "atoll" in err and "10/10" in err and "chunk" in err


def test_progress_through_call():
    # p(data, n_jobs=2, progress=True) builds a LocalExecutor with the bar switched on
    from atoll.executors import choose_executor

    chosen = choose_executor(n_jobs=2, progress=True)
    assert isinstance(chosen, LocalExecutor) and chosen.progress


MAIN_SCRIPT = """
import os
from operator import add
from atoll import LocalExecutor, Pipeline

def square(x):
    return x * x

class Scaler:
    def __init__(self, k):
        self.k = k
    def __call__(self, x):
        return x * self.k

def make_offset(n):
    def offset(x):
        return x + n
    return offset

if __name__ == "__main__":
    ex = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0, max_chunk=3, serializer=SERIALIZER)
    p = (Pipeline().map(square).map(lambda x: x - 1).map(make_offset(100)).map(Scaler(2))
         .map(lambda x: (x, os.getpid())))
    out = p.run(range(10), executor=ex)
    assert [v for v, _ in out] == [(x * x - 1 + 100) * 2 for x in range(10)], out
    assert os.getpid() not in {pid for _, pid in out}, "ran in the main process"
    assert Pipeline().map(square).reduce(add).run(range(10), executor=ex) == 285
    print("OK", len({pid for _, pid in out}))
"""


@pytest.mark.parametrize("serializer", ["cloudpickle", "dill"])
def test_functions_from_main_lambdas_closures(tmp_path, serializer):
    script = tmp_path / "main_pipeline.py"
    script.write_text(MAIN_SCRIPT.replace("SERIALIZER", repr(serializer)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK")


def test_dill_serializer_with_closure():
    k = 7
    executor = forced(2, serializer="dill", max_chunk=2)
    assert Pipeline().map(lambda x: x * k).run([1, 2, 3], executor=executor) == [7, 14, 21]


def test_serializer_validation():
    with pytest.raises(PipelineError, match="serializer must be one of cloudpickle, dill"):
        LocalExecutor(2, serializer="json")


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_n_jobs_validation(n_jobs):
    with pytest.raises(PipelineError, match="n_jobs"):
        LocalExecutor(n_jobs)


def test_n_jobs_validation_through_call():
    with pytest.raises(PipelineError, match="n_jobs"):
        Pipeline().map(abs)([1], n_jobs=0)


def test_n_jobs_all_cores():
    assert LocalExecutor(-1).n_jobs == usable_cores()
    assert LocalExecutor(None).n_jobs == usable_cores()
    assert usable_cores() <= (os.cpu_count() or 1)


def test_negative_n_jobs_count_back_from_the_cores_as_in_joblib():
    assert LocalExecutor(-2).n_jobs == max(1, usable_cores() - 1)
    assert LocalExecutor(-1000).n_jobs == 1
    assert Pipeline().map(abs)([-1, 2, -3], n_jobs=-2) == [1, 2, 3]


def _workers() -> set[int]:
    """Return the pids of this process's loky worker processes (other children, e.g. a Spark JVM
    started by another test of the session, come and go on their own)."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "popen_loky" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


def test_no_hang_and_no_leaked_workers_after_errors():
    shutdown_worker_pools()  # pools of other sizes, left by earlier tests, would be counted too
    executor = forced(2, max_chunk=5)
    assert Pipeline().map(abs).run(range(20), executor=executor) == list(range(20))  # pool warm
    before = _workers()
    assert len(before) == 2, before
    failing = Pipeline().map(lambda x: 1 // (x - 13))
    for _ in range(5):
        with pytest.raises(ZeroDivisionError):
            failing.run(range(100), executor=executor)
        with pytest.raises(KeyError):  # raised while the generator is still being read
            Pipeline().map(lambda x: {}[x]).run((x for x in range(10_000)), executor=executor)
    assert Pipeline().map(abs).run(range(-5, 5), executor=executor) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    after = _workers()
    # a failing chunk does not cost a new pool: the same worker processes serve the next run
    assert after == before, (before, after)


@pytest.mark.parametrize("aggregate", [None, "reduce", "reduceByKey"])
def test_worker_killed_is_an_error_not_a_hang(aggregate):
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    executor = forced(2, max_chunk=1)
    dying = Pipeline().map(lambda x: os._exit(3) if x == 2 else (x, x))
    if aggregate is not None:  # the partials are merged as they come: the merge is not what failed
        dying = getattr(dying, aggregate)(add)
    with pytest.raises(TerminatedWorkerError) as caught:
        dying.run(range(4), executor=executor)
    assert not isinstance(caught.value, PipelineError) and "stage" not in str(caught.value)
    assert "terminated" in str(caught.value).lower()
    # the pool recovers for the next run
    assert Pipeline().map(abs).run([-1, 2], executor=executor) == [1, 2]


@pytest.mark.parametrize("aggregate", ["reduce", "reduceByKey"])
@pytest.mark.parametrize("executor", [forced(2, max_chunk=5), LocalExecutor(2, probe_seconds=0, max_chunk=5)],
                         ids=["workers", "alongside"])
def test_a_chunks_failure_keeps_its_stage_through_the_merge_of_an_aggregate(executor, aggregate):
    """A worker's chunk fails at the map: the error names the map, as on the serial executor, not
    the aggregate whose merge was waiting for that chunk."""
    failing = getattr(Pipeline().map(lambda x: (x % 3, 1 // (x - 3))), aggregate)(add)
    for run_on in (SerialExecutor(), executor):
        with pytest.raises(ZeroDivisionError) as caught:
            failing.run(list(range(100)), executor=run_on)
        assert caught.value.stage.to_dict()["path"] == "0" and caught.value.item == 3
        message = str(caught.value)
        assert message.startswith("stage 0 map(") and ") failed on item 3: ZeroDivisionError" in message


def test_nested_pipeline_runs_serially_inside_the_worker():
    inner = Pipeline().map(lambda x: (x, os.getpid()))
    out = Pipeline().map(inner).map(lambda rows: (os.getpid(), rows)).run(
        [[1, 2, 3], [4, 5]], executor=forced(2, max_chunk=1))
    for outer_pid, rows in out:
        assert outer_pid != os.getpid()
        assert {pid for _, pid in rows} == {outer_pid}  # the nested pipeline stayed in that worker


def test_fork_and_to_run_their_passes_on_workers():
    p = Pipeline().fork(Pipeline().map(lambda _: os.getpid()), Pipeline().to(lambda xs: os.getpid()))
    mapped, whole = p.run([1, 2, 3, 4], executor=forced(2, max_chunk=2))
    assert os.getpid() not in mapped
    assert whole == os.getpid()  # `to` sees the whole input: it runs where the pipeline was called


def test_small_input_stays_in_process_by_default():
    executor = LocalExecutor(2)
    assert Pipeline().map(lambda _: os.getpid()).run([1, 2, 3], executor=executor) == [os.getpid()] * 3
    assert executor.last_plan["chunks"] == 0


def test_a_large_cheap_input_is_shared_by_the_workers_and_this_process():
    executor = LocalExecutor(2)
    assert Pipeline().map(lambda x: x + 1).reduce(add).run(range(2_000_000), executor=executor) == sum(
        range(1, 2_000_001))
    plan = executor.last_plan
    assert plan["chunks"] >= 1 and plan["here"] >= 1, plan


def test_a_fold_by_key_over_distinct_keys_stays_in_this_process():
    """Every element its own key: each chunk's partial would be as large as the chunk, and unpickling
    and merging them here costs more than the workers save (1.4x serial's time, measured). The probe
    sees the keys per element hold as its slices grow, and the pass stays here, folded on into the
    probe's partials."""
    executor = LocalExecutor(2, probe_seconds=0.05)  # a probe long enough on a loaded machine too
    data = list(range(400_000))
    out = Pipeline().map(lambda x: (x, 1)).reduceByKey(add).run(data, executor=executor)
    assert out == [(x, 1) for x in data]
    plan = executor.last_plan
    assert plan["inline"] == len(data) - plan["probe"] and plan["chunks"] == plan["here"] == 0, plan


def test_a_word_count_is_still_shared_with_the_workers():
    """Words of a vocabulary: the keys per line fall as the probe's slices grow, so the partials
    stay small and the pass is shared; so are keys drawn at random from 10,000."""
    vocabulary = [f"w{i}" for i in range(300)]
    lines = [" ".join(vocabulary[(i * 7 + j * 13) % 300] for j in range(10)) for i in range(150_000)]
    executor = LocalExecutor(2)
    count = Pipeline().flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
    out = dict(count.run(lines, executor=executor))
    assert sum(out.values()) == 1_500_000 and set(out) == set(vocabulary)
    plan = executor.last_plan
    assert plan["chunks"] >= 1 and plan["here"] >= 1, plan
    rng = random.Random(5)
    keys = [rng.randrange(10_000) for _ in range(1_000_000)]
    out = dict(Pipeline().map(lambda k: (k, 1)).reduceByKey(add).run(keys, executor=executor))
    assert sum(out.values()) == len(keys)
    plan = executor.last_plan
    assert plan["chunks"] >= 1 and plan["here"] >= 1, plan


def test_expensive_items_go_to_workers():
    import time

    executor = LocalExecutor(2)
    out = Pipeline().map(lambda x: (time.sleep(0.01), os.getpid())[1]).run(range(40), executor=executor)
    assert set(out) - {os.getpid()}, executor.last_plan


JOBLIB_SIDE_BY_SIDE = """
import os, time
from joblib import Parallel, delayed
from atoll import LocalExecutor, Pipeline
from atoll.executors.local import worker_pool

def atoll_pids():
    p = Pipeline().map(lambda x: (time.sleep(0.05), os.getpid())[1])
    return set(p.run(range(12), executor=LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0,
                                                        max_chunk=1)))

first = atoll_pids()                                        # atoll's pool first
pool = worker_pool(2)
assert sorted(Parallel(n_jobs=2)(delayed(abs)(x) for x in range(-3, 3))) == [0, 1, 1, 2, 2, 3]
joblib_pids = set(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(8)))
second = atoll_pids()
assert worker_pool(2) is pool and second & first, "a joblib call replaced atoll's workers"
assert not (first | second) & joblib_pids, "atoll and joblib share worker processes"
assert os.getpid() not in first | second | joblib_pids
print("side by side ok")
"""


def test_joblib_parallel_and_the_local_executor_share_a_process():
    """A user's own joblib.Parallel calls and atoll's workers coexist in one process, in either order."""
    for script in (JOBLIB_SIDE_BY_SIDE,
                   "from joblib import Parallel, delayed\n"
                   "assert Parallel(n_jobs=2)(delayed(abs)(x) for x in [-1, 2]) == [1, 2]\n"
                   + JOBLIB_SIDE_BY_SIDE):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "side by side ok" in done.stdout, done.stdout + done.stderr


def test_worker_processes_exit_when_their_parent_is_killed():
    # kill -9 skips atexit: the pool's workers must notice on their own (a Celery hard time limit
    # kills the pool process that ran a parallel pipeline this way)
    script = (
        "import time\n"
        "from atoll import LocalExecutor, Pipeline\n"
        "ex = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)\n"
        "print(Pipeline().map(lambda x: x + 1).run(list(range(1000)), executor=ex)[-1], flush=True)\n"
        "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "1000"
        workers = [p for p in psutil.Process(parent.pid).children(recursive=True)
                   if "resource_tracker" not in " ".join(p.cmdline())]
        assert len(workers) >= 2
    finally:
        parent.kill()
        parent.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"orphaned worker processes: {[p.pid for p in alive]}"


def test_tuples_and_main_classes_travel_to_workers():
    """Chunks go to the workers pickled by the C pickler; what it cannot carry goes by cloudpickle."""
    script = (
        "from atoll import LocalExecutor, Pipeline\n"
        "class Point:\n"
        "    def __init__(self, x): self.x = x\n"
        "ex = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0, max_chunk=3)\n"
        "pairs = [(i % 3, i) for i in range(20)]\n"
        "assert sorted(Pipeline().map(lambda k, v: (k, v * 2)).reduceByKey(max).run(pairs, executor=ex))"
        " == [(0, 36), (1, 38), (2, 34)]\n"
        "assert Pipeline().map(lambda p: Point(p.x + 1)).map(lambda p: p.x).run("
        "[Point(i) for i in range(10)], executor=ex) == list(range(1, 11))\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_chunk_the_worker_cannot_unpickle_by_name_is_sent_again_by_value():
    """Elements of a module that exists only in this process: plain pickle names the module, the
    worker cannot import it, and the chunk goes again with cloudpickle, which sends it by value."""
    import types

    import cloudpickle

    module = types.ModuleType("atoll_test_only_here")
    exec("class Box:\n    def __init__(self, v):\n        self.v = v\n", module.__dict__)
    sys.modules[module.__name__] = module
    cloudpickle.register_pickle_by_value(module)
    try:
        boxes = [module.Box(i) for i in range(10)]
        out = Pipeline().map(lambda b: b.v * 3).run(boxes, executor=forced(2, max_chunk=2))
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        del sys.modules[module.__name__]
    assert out == [i * 3 for i in range(10)]


def test_workers_are_not_held_back_by_a_slow_oldest_chunk(tmp_path):
    """The first chunk waits until the other worker has finished 6 later chunks, more than the
    2 * n_jobs in flight: that happens only if chunks keep being submitted while the oldest one
    runs (it gives up after 60 s)."""
    import time

    done_file = tmp_path / "done"
    done_file.write_bytes(b"")

    def work(x):
        if x == 0:
            deadline = time.monotonic() + 60
            while done_file.stat().st_size < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
            return done_file.stat().st_size >= 6
        with open(done_file, "ab") as f:
            f.write(b".")
        return True

    out = Pipeline().map(work).run(range(20), executor=forced(2, max_chunk=1))
    assert out == [True] * 20


def test_a_slow_first_element_does_not_cut_the_input_into_crumbs():
    """The probe times the first element at 20 ms (it sleeps; the rest are cheap, as after a pause of
    the machine): the input is cut into at most MAX_ROUNDS chunks per worker, not 0.025 s / 20 ms."""
    import time

    from atoll.executors.local import MAX_ROUNDS

    executor = LocalExecutor(2)
    p = Pipeline().map(lambda x: (time.sleep(0.02) if x == 0 else None, x)[1]).reduce(add)
    assert p.run(range(100_000), executor=executor) == sum(range(100_000))
    plan = executor.last_plan
    assert plan["chunks"] == 0 or plan["chunks"] <= MAX_ROUNDS * 2, plan


def test_a_known_length_is_cut_into_equal_rounds_for_every_worker():
    """399 items, at most 7 a chunk: 58 chunks of 6 or 7 (an even count), not 57 of 7 and a lone last
    round for one worker."""
    executor = forced(2, max_chunk=7)
    sizes = Pipeline().map(lambda x: 1).run(range(399), executor=executor)
    assert sizes == [1] * 399
    assert executor.last_plan["chunks"] == 58 and executor.last_plan["chunk_size"] == 7


def _larger_of_two_distinct(a: int, b: int) -> int:
    """max() for a fold over distinct elements: a real fold never meets the same value twice."""
    if a == b:
        raise AssertionError(f"called with {a!r} twice: not a pair from the data")
    return max(a, b)


def _key_of(x: int) -> tuple[int, int]:
    return (x % 7, x)


def test_scheduling_calls_the_users_functions_on_real_elements_only():
    """The probe times what a partial aggregate costs once it is back; it must not do so by calling
    the user's reduce function on something made up (a partial merged with itself)."""
    executor = LocalExecutor(2, min_parallel_seconds=0)  # the probe runs, then the workers
    data = list(range(200_000))
    assert Pipeline().reduce(_larger_of_two_distinct).run(data, executor=executor) == 199_999
    assert executor.last_plan["probe"] > 0 and executor.last_plan["chunks"] > 0
    by_key = Pipeline().map(_key_of).reduceByKey(_larger_of_two_distinct).run(data, executor=executor)
    assert sorted(by_key) == [(k, max(x for x in data if x % 7 == k)) for k in range(7)]


# -- this process working alongside the workers ----------------------------------------------------

def alongside(n_jobs: int = 2, **options) -> LocalExecutor:
    """A LocalExecutor that skips the probe: every pass is shared by ``n_jobs - 1`` workers and this
    process, however small."""
    return LocalExecutor(n_jobs, probe_seconds=0, **options)


def _with_pid(x: int) -> tuple[int, int]:
    return (x, os.getpid())


@pytest.mark.parametrize("n_jobs", [2, 3])
def test_this_process_takes_chunks_from_the_back_while_the_workers_take_the_front(n_jobs):
    executor = alongside(n_jobs, max_chunk=50)
    out = Pipeline().map(_with_pid).run(list(range(2000)), executor=executor)
    assert [x for x, _ in out] == list(range(2000))  # in input order
    pids = [pid for _, pid in out]
    here = pids.index(os.getpid())
    assert here > 0 and set(pids[here:]) == {os.getpid()}  # the front to the workers, the back here
    assert len(set(pids[:here])) <= n_jobs - 1  # n_jobs - 1 workers
    plan = executor.last_plan
    assert plan["chunks"] >= 1 and plan["here"] >= 1 and plan["chunk_size"] <= 50, plan
    # an aggregate's partials from both sides are combined in order (a fold that is not commutative)
    assert Pipeline().map(str).reduce(add).run(list(range(500)), executor=executor) == "".join(
        map(str, range(500)))
    assert dict(Pipeline().map(lambda x: (x % 3, [x])).reduceByKey(add).run(range(500), executor=executor)) \
        == {k: list(range(k, 500, 3)) for k in range(3)}


def _fails_late_at_the_front_and_at_once_at_the_back(x: int) -> int:
    import time

    if x == 3:  # a worker's, at the front: it fails half a second after this process fails on 1999
        time.sleep(0.5)
        raise ValueError("front")
    if x == 1999:
        raise KeyError("back")
    return x


def test_the_first_failure_in_input_order_is_raised_whichever_side_fails_first():
    executor = alongside(2, max_chunk=50)
    with pytest.raises(ValueError) as caught:
        Pipeline().map(_fails_late_at_the_front_and_at_once_at_the_back).run(list(range(2000)),
                                                                             executor=executor)
    assert caught.value.item == 3 and caught.value.stage.index == 0
    # a failure in this process's part alone is raised with its stage and item
    with pytest.raises(KeyError) as caught:
        Pipeline().map(_fails_late_at_the_front_and_at_once_at_the_back).run(list(range(4, 2000)),
                                                                             executor=executor)
    assert caught.value.item == 1999 and executor.last_plan["here"] >= 1
    # and the same workers serve the next pass
    assert Pipeline().map(_with_pid).run(list(range(200)), executor=executor)[0][1] != os.getpid()


def _fails_at_the_start(x: int) -> int:
    import time

    if x == 0:
        raise ValueError("the first element")
    time.sleep(0.001)
    return x


def test_a_worker_failure_stops_this_process_taking_more_chunks():
    """The whole pass would take 50 s on two processes; the worker's first chunk fails at once."""
    executor = alongside(2, max_chunk=10)
    with pytest.raises(ValueError) as caught:
        Pipeline().map(_fails_at_the_start).run(list(range(100_000)), executor=executor)
    assert caught.value.item == 0
    # this process looked at the workers' results between its chunks and stopped taking more
    assert executor.last_plan["here"] < 1_000, executor.last_plan


def test_the_progress_bar_counts_the_chunks_of_both_sides(capfd):
    executor = alongside(2, max_chunk=10, progress=True)
    assert Pipeline().map(lambda x: x * 2).run(list(range(100)), executor=executor) == list(range(0, 200, 2))
    plan = executor.last_plan
    assert plan["here"] >= 1 and plan["chunks"] >= 1
    err = capfd.readouterr().err
    assert f"atoll: {plan['chunks'] + plan['here']}chunk" in err, err


def _merge_fails_on_two_sums(a: int, b: int) -> int:
    """A reduce that fails only merging two chunks' sums: in the calling process, chunks in flight."""
    if a > 5 and b > 5:
        raise ValueError("merging partials")
    return a + b


def test_passes_ended_early_leave_no_worker_alive_and_no_pool_thread_dead(monkeypatch):
    """A pass that ends while chunks are queued kills its workers. Through loky's
    ``shutdown(kill_workers=True)`` that killed loky's manager thread (KeyError, InvalidStateError)
    and, when a queued chunk had been cancelled first, left the workers running: 58 of them after 40
    such passes."""
    import threading

    dead_threads: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: dead_threads.append(args.exc_value))
    shutdown_worker_pools()
    executor = forced(2, max_chunk=1)
    p = Pipeline().map(lambda x: (0, x)).reduceByKey(_merge_fails_on_two_sums)
    for _ in range(20):
        with pytest.raises(ValueError, match="merging partials"):
            p.run(list(range(400)), executor=executor)
    shutdown_worker_pools()
    assert not dead_threads, dead_threads
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in _workers() if psutil.pid_exists(pid)],
                                 timeout=10)
    assert not alive, alive
