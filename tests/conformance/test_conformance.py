"""Run the conformance table (cases.py) on every executor: same input, same result, same errors."""

from __future__ import annotations

import os
import traceback

import pytest

from atoll import Pipeline, PipelineError, StageFailure
from atoll.errors import NO_ITEM
from tests.conformance.cases import CASES, case_ids


def _same(result, expected, as_mapping: bool, unordered: bool = False) -> bool:
    if unordered:
        return type(result) is type(expected) and sorted(map(repr, result)) == sorted(map(repr, expected))
    if as_mapping:
        pairs = list(result)
        return len(pairs) == len(dict(pairs)) and dict(pairs) == dict(expected)
    return type(result) is type(expected) and result == expected


def test_case_ids_are_unique():
    ids = case_ids()
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_case(executor, case):
    if case.raises is None:
        result = case.pipeline.run(case.input(), executor=executor, **case.kwargs)
        assert _same(result, case.expected, case.as_mapping, case.unordered), (result, case.expected)
        return
    with pytest.raises(case.raises) as caught:
        case.pipeline.run(case.input(), executor=executor, **case.kwargs)
    err = caught.value
    assert isinstance(err, PipelineError)
    assert isinstance(err, StageFailure) is case.failure, repr(err)
    if case.message is not None:
        assert case.message in str(err)
    if case.stage is not None:
        assert err.stage is not None, str(err)
        assert err.stage.to_dict()["path"] == case.stage, err.stage
        assert f"stage {case.stage} " in str(err)
    if case.failure:
        assert type(err.original) is case.raises
        assert err.name == case.raises.__name__
        if case.item is not NO_ITEM:
            assert err.item == case.item
        # the worker-side traceback names the user's function and the original exception
        assert case.raises.__name__ in err.remote_traceback
        frames = "".join(traceback.format_tb(err.original.__traceback__)) if (
            err.original.__traceback__) else err.remote_traceback
        assert "File " in frames


def test_user_exception_message_survives(executor):
    with pytest.raises(KeyError) as caught:
        Pipeline().map(lambda k: {"a": 1}[k]).run(["a", "missing"], executor=executor)
    assert caught.value.args == ("missing",)
    assert "missing" in str(caught.value) and "stage 0 map(" in str(caught.value)
    assert "<lambda>" in caught.value.stage.function


def test_local_executor_really_uses_workers(local_executor):
    pids = Pipeline().map(lambda _: os.getpid()).run([1], executor=local_executor)
    assert pids[0] != os.getpid()
    many = set(Pipeline().map(lambda _: os.getpid()).run(range(40), executor=local_executor))
    assert os.getpid() not in many
