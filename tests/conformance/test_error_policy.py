"""Run the error-policy table (error_cases.py) on every executor under ``skip`` and ``collect``: the same
results, counts and dead letters everywhere; and what ``pipeline(data)`` returns is unchanged."""

from __future__ import annotations

import pytest

from atoll import DeadLetter, Pipeline, RunResult, TooManyErrors
from tests.conformance.error_cases import ERROR_CASES, error_case_ids


def _same(result, case) -> bool:
    if case.unordered:
        return sorted(result) == sorted(case.expected)
    if case.as_mapping:
        return dict(result) == dict(case.expected) and len(list(result)) == len(dict(result))
    return type(result) is type(case.expected) and result == case.expected


@pytest.mark.parametrize("on_error", ["skip", "collect"])
@pytest.mark.parametrize("case", ERROR_CASES, ids=error_case_ids())
def test_error_case(executor, case, on_error):
    def run():
        return case.pipeline.run(case.input(), executor=executor, on_error=on_error,
                                 max_errors=case.max_errors)

    if case.raises is not None:
        with pytest.raises(case.raises) as caught:
            run()
        if case.raises is TooManyErrors:
            assert caught.value.skipped > case.max_errors if isinstance(case.max_errors, int) else True
            assert "max_errors" in str(caught.value)
        return
    outcome = run()
    assert isinstance(outcome, RunResult)
    assert _same(outcome.results, case), (outcome.results, case.expected)
    assert outcome.skipped == len(case.letters)
    by_stage: dict[str, int] = {}
    for path, _, _ in case.letters:
        by_stage[path] = by_stage.get(path, 0) + 1
    assert outcome.by_stage == by_stage
    if on_error == "skip":
        assert outcome.errors == []
        return
    got = [(e.stage.to_dict()["path"], e.element, e.error) for e in outcome.errors]
    assert got == case.letters
    for letter in outcome.errors:
        assert isinstance(letter, DeadLetter)
        assert letter.message and letter.error in letter.traceback


def test_a_dead_letter_names_the_users_function_and_not_atolls_frames(executor):
    def parse(line):
        return int(line)

    _, errors, _ = Pipeline().map(parse).run(["1", "x"], executor=executor, on_error="collect")
    [letter] = errors
    assert letter.stage.function.endswith("parse") and letter.stage.operator == "map"
    assert "in parse" in letter.traceback and "operators.py" not in letter.traceback
    assert letter.message == "invalid literal for int() with base 10: 'x'"
    assert letter.to_dict() == {"stage": {"index": 0, "operator": "map", "function": letter.stage.function,
                                          "path": "0"},
                                "error": "ValueError", "message": letter.message,
                                "traceback": letter.traceback, "element": "x"}


def test_fail_is_the_default_and_plain_calls_return_what_they_did(executor):
    p = Pipeline().map(lambda x: 1 / x)
    assert p.run([1, 2], executor=executor) == [1.0, 0.5]
    with pytest.raises(ZeroDivisionError):
        p.run([1, 0], executor=executor)
    with pytest.raises(ZeroDivisionError):
        p.run([1, 0], executor=executor, on_error="fail")
    assert p.run([1, 2], executor=executor, on_error="fail") == RunResult([1.0, 0.5], [], 0, {})
