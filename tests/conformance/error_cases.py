"""The error-policy table: pipelines whose functions fail on some elements, run with ``on_error="skip"``
and ``"collect"`` on every executor, with the results, the count of dropped elements and the dead letters
(stage path, element, error name) each must give — in the same order everywhere (by pass, then input).

The failures sit at every operator that drops elements, in nested pipelines and branches, on the first and
last element of the input (so of a chunk of the local executors, which take one or two elements a chunk,
and of a Spark partition), on every element, and in a fold's function (which fails the run under every
policy). Registered with cloudpickle by value, as ``cases.py``, so Spark's workers get the functions.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from atoll import Pipeline, PipelineError, TooManyErrors
from atoll.encoding import Counts
from tests.conformance.cases import Fresh, gen

cloudpickle.register_pickle_by_value(sys.modules[__name__])

add = operator.add
P = Pipeline


def inverse(x):
    return 1 / x


def words(text):
    return text.split()


def needs_text(comment):
    return comment["text"]


def positive(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x > 0


def by_inverse(x):
    return 1 / x


def fold_no_threes(a, b):
    if b == 3:
        raise ValueError("no threes in the sum")
    return a + b


@dataclass
class ErrorCase:
    """One row: run ``pipeline`` on ``data`` under ``on_error`` (and ``max_errors``)."""

    id: str
    pipeline: Pipeline
    data: Any
    expected: Any = None
    #: the dead letters, in order: (stage path, element, error type name)
    letters: list = field(default_factory=list)
    max_errors: int | float | None = None
    #: the run fails with this type instead (whatever the policy)
    raises: type[BaseException] | None = None
    #: compare results as a mapping (reduceByKey)
    as_mapping: bool = False
    #: compare results as a multiset (distinct)
    unordered: bool = False

    def input(self) -> Any:
        return self.data() if isinstance(self.data, Fresh) else self.data


ZERO = "ZeroDivisionError"

ERROR_CASES: list[ErrorCase] = [
    ErrorCase("map", P().map(inverse), [1, 0, 2, 0, 4], [1.0, 0.5, 0.25], [("0", 0, ZERO), ("0", 0, ZERO)]),
    ErrorCase("map-first-and-last", P().map(inverse), [0, 1, 2, 0], [1.0, 0.5],
              [("0", 0, ZERO), ("0", 0, ZERO)]),
    ErrorCase("map-every-element", P().map(inverse), [0, 0, 0], [], [("0", 0, ZERO)] * 3),
    ErrorCase("map-one-element", P().map(inverse), [0], [], [("0", 0, ZERO)]),
    ErrorCase("map-generator", P().map(inverse), gen([2, 0, 1]), [0.5, 1.0], [("0", 0, ZERO)]),
    ErrorCase("map-range", P().map(inverse), range(3), [1.0, 0.5], [("0", 0, ZERO)]),
    ErrorCase("map-missing-key", P().map(needs_text), [{"text": "a"}, {"user": "x"}, {"text": "b"}],
              ["a", "b"], [("0", {"user": "x"}, "KeyError")]),
    ErrorCase("flatMap", P().flatMap(words), ["a b", None, "c"], ["a", "b", "c"],
              [("0", None, "AttributeError")]),
    ErrorCase("filter", P().filter(positive), [1, -1, 0, 2], [1, 2], [("0", -1, "ValueError")]),
    ErrorCase("mapValues", P().mapValues(inverse), [("a", 1), ("b", 0), ("c", 2)],
              [("a", 1.0), ("c", 0.5)], [("0", ("b", 0), ZERO)]),
    ErrorCase("mapValues-not-a-pair", P().mapValues(inverse), [("a", 1), 5], [("a", 1.0)],
              [("0", 5, "PipelineError")]),
    ErrorCase("flatMapValues", P().flatMapValues(words), [("a", "x y"), ("b", 3)],
              [("a", "x"), ("a", "y")], [("0", ("b", 3), "AttributeError")]),
    ErrorCase("keyBy", P().keyBy(inverse), [1, 0], [(1.0, 1)], [("0", 0, ZERO)]),
    ErrorCase("second-stage-gets-the-intermediate", P().flatMap(words).map(int).map(inverse),
              ["1 x 2", "0"], [1.0, 0.5], [("1", "x", "ValueError"), ("2", 0, ZERO)]),
    ErrorCase("before-reduce", P().map(inverse).reduce(add), [1, 0, 2], 1.5, [("0", 0, ZERO)]),
    ErrorCase("before-reduceByKey", P().flatMap(words).map(lambda w: (w, 1 // (w != "x"))).reduceByKey(add),
              ["a x b", "a x"], [("a", 2), ("b", 1)], [("1", "x", ZERO), ("1", "x", ZERO)],
              as_mapping=True),
    ErrorCase("before-count", P().map(inverse).count(), [0, 1, 0, 2], 2, [("0", 0, ZERO)] * 2),
    ErrorCase("sortBy-key", P().sortBy(by_inverse), [2, 0, 1], [2, 1], [("0", 0, ZERO)]),
    ErrorCase("top-key", P().top(1, key=by_inverse), [2, 0, 1], [1], [("0", 0, ZERO)]),
    ErrorCase("before-countByValue", P().map(inverse).countByValue(), [1, 0, 1], Counts({1.0: 2}),
              [("0", 0, ZERO)]),
    ErrorCase("before-distinct", P().map(inverse).distinct(), [1, 0, 1, 2], [1.0, 0.5], [("0", 0, ZERO)],
              unordered=True),
    ErrorCase("before-groupByKey", P().mapValues(inverse).groupByKey(), [("a", 1), ("a", 0), ("b", 2)],
              [("a", [1.0]), ("b", [0.5])], [("0", ("a", 0), ZERO)], as_mapping=True),
    ErrorCase("before-take", P().map(inverse).take(2), [0, 1, 0, 2, 4], [1.0, 0.5],
              [("0", 0, ZERO), ("0", 0, ZERO)]),
    ErrorCase("takeOrdered-key", P().takeOrdered(2, key=by_inverse), [4, 0, 1, 2], [4, 2], [("0", 0, ZERO)]),
    ErrorCase("join-branch", P().fork(P().mapValues(inverse), None).join(),
              [("a", 1), ("b", 0)], [("a", (1.0, 1))], [("0/fork[0]/0", ("b", 0), ZERO)]),
    ErrorCase("nested-map", P().map(P().map(inverse)), [[1], [2, 0]], [[1.0], [0.5]], [("0/0", 0, ZERO)]),
    ErrorCase("nested-empty-reduce-drops-the-outer", P().map(P().map(inverse).reduce(add)), [[1], [0]], [1.0],
              [("0/0", 0, ZERO), ("0", [0], "PipelineError")]),
    ErrorCase("fork-branch", P().fork(None, P().map(inverse)), [1, 0], ([1, 0], [1.0]),
              [("0/fork[1]/0", 0, ZERO)]),
    ErrorCase("after-fork-by-pass", P().map(inverse).fork(P().to(sum), P().map(inverse)), [1, 0, 2],
              (1.5, [1.0, 2.0]), [("0", 0, ZERO)]),
    ErrorCase("passes-in-order", P().map(inverse).to(list).map(inverse), [0, 1, 2], [1.0, 2.0],
              [("0", 0, ZERO)]),
    ErrorCase("nothing-fails", P().map(inverse), [1, 2], [1.0, 0.5], []),
    ErrorCase("empty-input", P().map(inverse), [], [], []),
    # bounds
    ErrorCase("max-errors-count-holds", P().map(inverse), [0, 1, 0], [1.0], [("0", 0, ZERO)] * 2,
              max_errors=2),
    ErrorCase("max-errors-count-exceeded", P().map(inverse), [0, 1, 0, 0], max_errors=2,
              raises=TooManyErrors),
    ErrorCase("max-errors-zero", P().map(inverse), [1, 0], max_errors=0, raises=TooManyErrors),
    ErrorCase("max-errors-fraction-holds", P().map(inverse), [0, 1, 2, 3], [1.0, 0.5, 1 / 3],
              [("0", 0, ZERO)], max_errors=0.25),
    ErrorCase("max-errors-fraction-exceeded", P().map(inverse), [0, 1, 0, 3], max_errors=0.25,
              raises=TooManyErrors),
    # a fold's own function fails the run under every policy
    ErrorCase("reduce-function-fails-the-run", P().map(int).reduce(fold_no_threes), ["1", "x", "3"],
              raises=ValueError),
    ErrorCase("aggregateByKey-function-fails-the-run", P().aggregateByKey(0, fold_no_threes, add),
              [("a", 1), ("a", 3)], raises=ValueError),
    ErrorCase("mapPartitions-fails-the-run", P().mapPartitions(lambda xs: [1 / x for x in xs]), [1, 0],
              raises=ZeroDivisionError),
    ErrorCase("to-fails-the-run", P().map(inverse).to(lambda xs: 1 / len(xs)), [0], raises=ZeroDivisionError),
]


def error_case_ids() -> list[str]:
    return [case.id for case in ERROR_CASES]


assert issubclass(TooManyErrors, PipelineError)
