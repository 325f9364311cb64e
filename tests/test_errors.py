"""The error model: failures keep their original type and carry stage, item and worker traceback;
they survive pickling (process boundaries); misuse is a PipelineError naming the stage."""

from __future__ import annotations

import json
import linecache
import pickle
import threading

import cloudpickle
import pytest

from atoll import LocalExecutor, Pipeline, PipelineError, SerialExecutor, StageFailure, StageInfo
from atoll.errors import NO_ITEM, stage_failure

INFO = StageInfo(2, "map", "parse")


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class HoldsLock(Exception):
    def __init__(self):
        super().__init__("with a lock")
        self.lock = threading.Lock()


def test_failure_is_original_type_and_stage_failure():
    err = stage_failure(KeyError("k"), INFO, {"a": 1}, "Traceback ...\nKeyError: 'k'\n")
    assert isinstance(err, KeyError) and isinstance(err, StageFailure) and isinstance(err, PipelineError)
    assert err.name == "KeyError" and err.args == ("k",)
    assert err.stage == INFO and err.item == {"a": 1}
    assert str(err) == "stage 2 map(parse) failed on item {'a': 1}: KeyError: 'k'"
    assert "KeyError: 'k'" in err.remote_traceback


def test_failure_without_item():
    err = stage_failure(ValueError("bad"), StageInfo(0, "to", "load"))
    assert err.item is NO_ITEM and str(err) == "stage 0 to(load) failed: ValueError: bad"


@pytest.mark.parametrize("original", [
    KeyError("k"), ZeroDivisionError("division by zero"), TwoArgError(404, "missing"),
    json.JSONDecodeError("Expecting value", "x", 0), FileNotFoundError(2, "No such file", "/nope"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
])
@pytest.mark.parametrize("pickler", [pickle, cloudpickle])
def test_failure_round_trips_through_pickle(original, pickler):
    err = stage_failure(original, INFO, [1, 2], "remote tb")
    back = pickle.loads(pickler.dumps(err))
    assert type(back.original) is type(original)
    assert isinstance(back, type(original)) and isinstance(back, StageFailure)
    assert back.args == original.args
    assert back.stage == INFO and back.item == [1, 2] and back.remote_traceback == "remote tb"
    assert str(back) == str(err)
    for attr in vars(original):
        assert getattr(back, attr) == getattr(original, attr)


def test_unpicklable_exception_and_item_degrade_to_text():
    err = stage_failure(HoldsLock(), INFO, threading.Lock(), "tb")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, StageFailure)
    assert "HoldsLock: with a lock" in str(back.original)
    assert "lock" in back.item  # the item's short repr


def test_unpicklable_item_from_a_worker():
    executor = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)
    with pytest.raises(TypeError) as caught:
        Pipeline().map(lambda x: threading.Lock()).map(lambda lock: lock + 1).run([1], executor=executor)
    assert "lock" in str(caught.value.item) and caught.value.stage.index == 1


def test_worker_traceback_text_names_the_user_function(cloudpickle_release):
    def parse_record(x):
        return int(x)

    executor = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)
    with pytest.raises(ValueError) as caught:
        Pipeline().map(parse_record).run(["1", "x"], executor=executor)
    err = caught.value
    assert "parse_record" in err.remote_traceback and "return int(x)" in err.remote_traceback
    assert f'File "{__file__}", line {parse_record.__code__.co_firstlineno + 1}, in parse_record' \
        in err.remote_traceback
    assert "<dynamic-code>" not in err.remote_traceback
    assert err.item == "x" and err.stage.describe() == "stage 0 map(test_worker_traceback_text_names_" \
        "the_user_function.<locals>.parse_record)"
    assert any("Worker traceback" in note for note in getattr(err, "__notes__", []))


def test_source_lines_only_the_caller_can_read_are_filled_in(cloudpickle_release):
    # a function compiled from text, as a notebook cell or the interactive prompt makes them: the
    # worker cannot read its source, the caller's linecache can
    cell = "<cell-7>"
    source = "def scale(x):\n    return 10 // x\n"
    linecache.cache[cell] = (len(source), None, source.splitlines(keepends=True), cell)
    namespace: dict = {}
    exec(compile(source, cell, "exec"), namespace)
    executor = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)
    with pytest.raises(ZeroDivisionError) as caught:
        Pipeline().map(namespace["scale"]).run([1, 0], executor=executor)
    assert f'File "{cell}", line 2, in scale\n    return 10 // x\n' in caught.value.remote_traceback


def test_serial_failure_keeps_local_traceback():
    def explode(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError) as caught:
        Pipeline().map(explode).run([1], executor=SerialExecutor())
    assert any(entry.name == "explode" for entry in caught.traceback)


def test_stage_info():
    assert INFO.describe() == "stage 2 map(parse)"
    assert INFO.to_dict() == {"index": 2, "operator": "map", "function": "parse", "path": "2"}
    nested = StageInfo(0, "map", "f").nested_in(StageInfo(3, "fork", "a|b"), branch=1)
    assert nested.to_dict()["path"] == "3/fork[1]/0"
    assert nested.describe() == "stage 3/fork[1]/0 map(f)"
    deeper = nested.nested_in(StageInfo(1, "to", "inner"))
    assert deeper.path == "1/3/fork[1]/0"


def test_pipeline_error_fields():
    err = PipelineError("bad input", stage=INFO, item=5)
    assert str(err) == "bad input" and err.message == "bad input"
    assert err.stage is INFO and err.item == 5 and err.remote_traceback == ""
    assert not isinstance(err, StageFailure)


def test_misuse_is_not_a_failure():
    with pytest.raises(PipelineError) as caught:
        Pipeline().map(len).map(abs)(7)
    assert not isinstance(caught.value, StageFailure)
    assert str(caught.value).startswith("stage 0 map(len): map needs a collection")


def test_failure_is_catchable_as_pipeline_error():
    with pytest.raises(PipelineError):
        Pipeline().map(lambda x: 1 / x)([0])


def test_fused_failure_is_located_by_a_staged_rerun():
    """The same function at two stages: the error names the stage where it actually failed."""
    calls = []

    def checked(x):
        calls.append(x)
        if x > 10:
            raise OverflowError(x)
        return x * 3

    with pytest.raises(OverflowError) as caught:
        Pipeline().map(checked).filter(None).map(checked).run([1, 2, 4], executor=SerialExecutor())
    assert caught.value.stage.index == 2 and caught.value.item == 12
    # the fused pass ran first, one loop taking each element through every stage; the partition was
    # then run again, stage by stage, to locate the failure
    assert calls == [1, 3, 2, 6, 4, 12] + [1, 2, 4, 3, 6, 12]


def _failing_once(n: int, attempts: list, error: Exception):
    """Return an identity function that records each element it is called with in ``attempts`` and
    raises ``error`` on its ``n``-th call only (a failure that does not recur)."""

    def flaky(x):
        attempts.append(x)
        if len(attempts) == n:
            raise error
        return x

    return flaky


def test_a_long_sequence_runs_in_one_pass_and_is_located_chunk_by_chunk_on_failure():
    """Longer than the serial executor's chunk: one compiled pass; when it fails, the sequence is run
    again chunk by chunk, and only the failing chunk stage by stage (what that holds is one chunk's
    intermediates, not the input's)."""
    calls = []

    def checked(x):
        calls.append(x)
        if x == 3 * 95:
            raise OverflowError(x)
        return x

    executor = SerialExecutor(chunk_size=10)
    p = Pipeline().map(lambda x: x * 3).map(checked).reduce(lambda a, b: a + b)
    assert p.run(list(range(90)), executor=executor) == 3 * sum(range(90))
    assert calls == [3 * x for x in range(90)]  # one pass, no re-run
    calls.clear()
    with pytest.raises(OverflowError) as caught:
        p.run(list(range(100)), executor=executor)
    assert caught.value.stage.index == 1 and caught.value.item == 285
    first = [3 * x for x in range(96)]  # the pass stopped at 95
    chunked = [3 * x for x in range(96)]  # again, chunk by chunk, up to the failing chunk's 95
    staged = [3 * x for x in range(90, 96)]  # that chunk stage by stage: the map of 90..99 ran whole
    assert calls == first + chunked + staged
    # a flaky failure that does not recur in the chunked re-run is still raised, located
    attempts = []
    flaky = _failing_once(50, attempts, ConnectionError("once"))
    with pytest.raises(ConnectionError) as caught:
        Pipeline().map(lambda x: x + 1).map(flaky).run(list(range(100)), executor=executor)
    assert caught.value.stage.index == 1 and len(attempts) == 50 + 100


def test_a_failure_that_does_not_recur_on_the_locating_rerun_is_still_raised():
    """A function that fails once and then succeeds: the pass fails, naming the stage it failed in."""
    attempts = []
    flaky = _failing_once(2, attempts, ConnectionError("first call on the second element"))
    with pytest.raises(ConnectionError) as caught:
        Pipeline().map(lambda x: x + 1).map(flaky).run([1, 2, 3], executor=SerialExecutor())
    assert caught.value.stage.index == 1 and caught.value.stage.function == "_failing_once.<locals>.flaky"
    assert attempts == [2, 3, 2, 3, 4]  # the fused pass failed at 3; the re-run went through


def test_interruptions_leave_a_pass_as_they_are_without_a_rerun():
    from atoll import operators

    class Interrupted(Exception):
        pass

    calls = []

    def interrupted_on_two(x):
        calls.append(x)
        if x == 2:
            raise Interrupted()
        return x

    before = operators._interruptions
    operators.never_rerun(Interrupted)
    try:
        with pytest.raises(Interrupted) as caught:
            Pipeline().map(interrupted_on_two).run([1, 2, 3], executor=SerialExecutor())
    finally:
        operators._interruptions = before
    assert type(caught.value) is Interrupted  # not wrapped as a StageFailure
    assert calls == [1, 2]  # the pass stopped there and was not run again


def test_a_non_recurring_failure_inside_a_fused_reduce_by_key_keeps_its_type():
    """The failure surfaces inside reduceByKey's loop (the fused pass is lazy): still a ValueError."""
    attempts = []

    def flaky_pair(x):
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first call only")
        return (x % 2, x)

    with pytest.raises(ValueError) as caught:
        Pipeline().map(flaky_pair).reduceByKey(lambda a, b: a + b).run([1, 2, 3],
                                                                        executor=SerialExecutor())
    assert isinstance(caught.value, StageFailure) and caught.value.stage.index == 0
    assert "first call only" in str(caught.value)


class _ClaimsToBeATuple:
    """A proxy whose ``__class__`` says tuple (``isinstance(x, tuple)`` is True; its type is not)."""

    def __init__(self, *values):
        self.values = values

    @property
    def __class__(self):
        return tuple

    def __iter__(self):
        return iter(self.values)


def test_a_compiled_pass_and_its_locating_rerun_spread_the_same_elements():
    """Whether an element is spread into ``f(*x)`` is decided by its type, in the compiled pass and in
    the stage-by-stage re-run alike: a proxy claiming to be a tuple is passed whole by both."""
    seen = []

    def record(*args):
        seen.append(len(args))
        if len(seen) == 4:
            raise ValueError("after the proxy")
        return args

    data = [(1, 2), _ClaimsToBeATuple(3, 4), 5]
    assert isinstance(data[1], tuple)
    with pytest.raises(ValueError):
        Pipeline().map(record).run(data + [6], executor=SerialExecutor())
    assert seen == [2, 1, 1, 1] + [2, 1, 1, 1]  # the compiled pass, then the re-run: the same calls


class _Words(tuple):
    """A tuple subclass holding a line and its separator."""


@pytest.mark.parametrize("executor", [SerialExecutor(),
                                      LocalExecutor(1, min_parallel_seconds=0, probe_seconds=0)],
                         ids=["serial", "worker"])
def test_a_str_method_spreads_tuples_with_no_test_per_string(executor):
    """A method of ``str`` taken from the class is called with each element, and given a tuple element
    spread only when it refuses it: the results of testing each element's type, failures included."""
    from atoll.operators import OPERATORS, Step, pass_source

    lines = ["a b", ("c-d", "-"), _Words(("e+f", "+")), "g"]
    words = Pipeline().flatMap(str.split).map(str.upper)
    assert words.run(lines, executor=executor) == ["A", "B", "C", "D", "E", "F", "G"]
    # an element that is neither a string nor a tuple fails as the method fails, at its stage and item
    with pytest.raises(TypeError, match="'split'") as caught:
        words.run(["a b", 5, "c"], executor=executor)
    assert caught.value.stage.index == 0 and caught.value.item == 5
    # a tuple the method cannot take spread fails with the method's own error, at that tuple
    with pytest.raises(TypeError, match="upper") as caught:
        Pipeline().map(str.upper).run(["a", ("b", "c")], executor=executor)
    assert caught.value.stage.index == 0 and caught.value.item == ("b", "c")
    # the pass does no per-element type test for it; a user's function still gets one
    source = pass_source([Step(OPERATORS["flatMap"], str.split, StageInfo(0, "flatMap", "split"))], None)
    assert "typeof(x) is" not in source and "except TypeError:" in source
    source = pass_source([Step(OPERATORS["flatMap"], _Words, StageInfo(0, "flatMap", "_Words"))], None)
    assert "typeof(x) is" in source and "except TypeError:" not in source


def test_a_reduce_by_key_stage_learns_how_to_fold_from_its_passes():
    """Keys mostly new: dict.get (a KeyError for each would cost more than the rest of the fold);
    keys mostly seen before: a lookup in a try. Either way the result is the same."""
    from operator import add

    from atoll import operators
    from atoll.operators import OPERATORS, Step, run_steps

    def step(name: str, func, index: int) -> Step:
        return Step(OPERATORS[name], func, StageInfo(index, name, f"learn-{func.__name__}"))

    def pair_with_one(x):
        return (x, 1)

    steps, by_key = [step("map", pair_with_one, 0)], step("reduceByKey", add, 1)
    distinct = list(range(20_000))
    assert not operators._keys_rare(by_key.info)  # nothing learnt: the first pass uses get
    first = run_steps(steps, distinct, by_key)
    assert not operators._keys_rare(by_key.info)  # 20,000 new keys in 20,000 pairs
    assert run_steps(steps, distinct, by_key) == first == dict.fromkeys(distinct, 1)
    repeated = [x % 10 for x in range(20_000)]
    operators._keys_seen.pop(by_key.info)  # the same stage over other data: learnt afresh
    counted = run_steps(steps, repeated, by_key)
    assert operators._keys_rare(by_key.info)  # 10 new keys in 20,000 pairs
    assert run_steps(steps, repeated, by_key) == counted == dict.fromkeys(range(10), 2_000)
    # folding on into a partial: only the keys the pass adds are new
    assert run_steps(steps, repeated, by_key, dict(counted)) == dict.fromkeys(range(10), 4_000)
    assert operators._keys_rare(by_key.info)
    # passes are summed: small passes of a fresh partial each (every key new in each) stay "get"
    operators._keys_seen.pop(by_key.info)
    for _ in range(50):
        run_steps(steps, distinct[:500], by_key)
    assert not operators._keys_rare(by_key.info)
