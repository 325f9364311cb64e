"""The conformance table: one list of cases that every executor must pass with identical results.

Each :class:`Case` is a pipeline, an input, and either the expected result or the expected error (its
type, the stage it names and the element that failed). ``test_conformance.py`` runs every case on every
executor of ``conftest.EXECUTOR_FIXTURES``. A new operator or executor is done when this table passes.

Functions here are module-level, lambdas and closures on purpose: each kind must survive the trip to a
worker. The module is registered with cloudpickle *by value*, so worker processes that cannot import it
(Spark's Python workers) still get its functions and exception types.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from atoll import Pipeline, PipelineError
from atoll.encoding import Counts
from atoll.errors import NO_ITEM

cloudpickle.register_pickle_by_value(sys.modules[__name__])

add = operator.add


class Fresh:
    """An input made anew for each run (a generator can be read only once)."""

    def __init__(self, factory: Callable[[], Any], label: str):
        self.factory = factory
        self.label = label

    def __call__(self) -> Any:
        return self.factory()

    def __repr__(self) -> str:
        return self.label


def gen(items) -> Fresh:
    """Return an input that is a new generator over ``items`` on every run."""
    items = list(items)
    return Fresh(lambda: (x for x in items), f"gen({items!r})")


def _never_read():
    raise AssertionError("the input was read although the pipeline should have failed first")
    yield  # makes this a generator function


NEVER_READ = Fresh(_never_read, "never_read()")


@dataclass
class Case:
    """One row of the table."""

    id: str
    pipeline: Pipeline
    data: Any
    expected: Any = None
    kwargs: dict = field(default_factory=dict)
    raises: type[BaseException] | None = None
    #: the stage the error names: its path as in ``StageInfo.to_dict()["path"]``, e.g. "1/fork[0]/0"
    stage: str | None = None
    #: the failing element the error carries (NO_ITEM: none expected / not checked)
    item: Any = NO_ITEM
    #: a user function failed (StageFailure expected), as opposed to misuse (plain PipelineError)
    failure: bool = False
    #: text the error message must contain
    message: str | None = None
    #: compare results as mappings (reduceByKey: key order is not guaranteed)
    as_mapping: bool = False
    #: compare results as multisets (distinct's order and a join's are not guaranteed)
    unordered: bool = False

    def input(self) -> Any:
        """Return the input for one run."""
        return self.data() if isinstance(self.data, Fresh) else self.data


# -- functions used by the cases -------------------------------------------------------------------

def double(x):
    return x * 2


def triple(x):
    return x * 3


def inc(x):
    return x + 1


def is_even(x):
    return x % 2 == 0


def tokenize(text, delimiter=" "):
    return text.split(delimiter)


def lowercase(text):
    return text.lower()


def count_length(items):
    return len(items)


def pair(word):
    return (word, 1)


def mul(a, b):
    return a * b


def scale(x, factor):
    return x * factor


def shift(x, by=0, times=1):
    return (x + by) * times


def repeat(x, n):
    return [x] * n


def spread3(a, b, c):
    return a + b * 10 + c * 100


def make_adder(n):
    def adder(x):
        return x + n
    return adder


def lookup(key):
    return {"a": 1, "b": 2}[key]


def inverse(x):
    return 1 / x


class CaseError(Exception):
    """An exception type of the user's own: must come back as itself from every executor."""


def explode_on_three(x):
    if x == 3:
        raise CaseError(f"no threes: {x}")
    return x


def bad_add(a, b):
    if a + b > 5:
        raise ValueError("sum too large")
    return a + b


CORAL = [
    "Coral reefs are diverse underwater ecosystems",
    "Coral reefs are built by colonies of tiny animals",
]

# -- the table -------------------------------------------------------------------------------------

P = Pipeline
words = P().flatMap(tokenize).map(lowercase)
wordcount = P().flatMap(tokenize).map(pair).reduceByKey(add)
deep = P("deep").map(P().map(P().to(sum)))

CASES: list[Case] = [
    # each operator alone
    Case("map", P().map(double), [1, 2, 3], [2, 4, 6]),
    Case("map-lambda", P().map(lambda x: x - 1), [1, 2, 3], [0, 1, 2]),
    Case("map-closure", P().map(make_adder(10)), [1, 2], [11, 12]),
    Case("map-builtin", P().map(str), [1, 2], ["1", "2"]),
    Case("flatMap", P().flatMap(tokenize), ["a b", "c", ""], ["a", "b", "c", ""]),
    Case("flatMap-empty-results", P().flatMap(lambda x: []), [1, 2, 3], []),
    Case("filter", P().filter(is_even), range(10), [0, 2, 4, 6, 8]),
    Case("filter-none-keeps-truthy", P().filter(None), [0, 1, "", "x", None, [], [0]], [1, "x", [0]]),
    Case("mapValues-pairs", P().mapValues(double), [("a", 1), ("b", 2)], [("a", 2), ("b", 4)]),
    Case("mapValues-dict", P().mapValues(len), {"a": "xyz", "b": ""}, [("a", 3), ("b", 0)]),
    Case("flatMapValues-pairs", P().flatMapValues(tokenize), [("a", "x y"), ("b", "")],
         [("a", "x"), ("a", "y"), ("b", "")]),
    Case("flatMapValues-dict", P().flatMapValues(range), {"a": 2, "b": 0, "c": 1},
         [("a", 0), ("a", 1), ("c", 0)]),
    Case("reduce", P().reduce(add), [1, 2, 3, 4], 10),
    Case("reduce-lambda-strings", P().reduce(lambda a, b: a + b), ["x", "y", "z"], "xyz"),
    Case("reduce-one-item", P().reduce(add), [42], 42),
    Case("reduce-lists", P().reduce(add), ([6, 9], [1, 1]), [6, 9, 1, 1]),
    Case("reduceByKey-pairs", P().reduceByKey(add), [("a", 1), ("b", 2), ("a", 3)],
         [("a", 4), ("b", 2)], as_mapping=True),
    Case("reduceByKey-dict", P().reduceByKey(add), {"a": 1, "b": 2}, [("a", 1), ("b", 2)],
         as_mapping=True),
    Case("reduceByKey-max", P().reduceByKey(max), [(1, 5), (2, 1), (1, 9), (1, 7)],
         [(1, 9), (2, 1)], as_mapping=True),
    Case("to", P().to(sum), [1, 2, 3], 6),
    Case("to-scalar-input", P().to(double), 21, 42),
    Case("to-spreads-tuple", P().to(spread3), (1, 2, 3), 321),
    Case("to-list-not-spread", P().to(len), [1, 2, 3], 3),
    Case("fork", P().fork(sum, len, max), [1, 5, 3], (9, 3, 5)),
    Case("forkMap", P().forkMap(double, triple), [1, 2], ([2, 4], [3, 6])),
    Case("split", P().split(double, len), (21, [1, 2]), (42, 2)),
    Case("split-list-input", P().split(sum, None), [[1, 2], "x"], (3, "x")),
    Case("splitMap", P().splitMap(double, str), ([1, 2], [3]), ([2, 4], ["3"])),

    # None as identity
    Case("map-none", P().map(None), [1, (2, 3)], [1, (2, 3)]),
    Case("to-none", P().to(None), [1, 2], [1, 2]),
    Case("to-none-tuple", P().to(None), (1, 2), (1, 2)),
    Case("split-none-branches", P().split(None, None), (1, (2, 3)), (1, (2, 3))),
    Case("fork-none-branch", P().map(inc).fork(None, sum), [1, 2], ([2, 3], 5)),
    Case("empty-pipeline", P(), [1, 2], [1, 2]),

    # tuple unpacking
    Case("map-unpacks-tuples", P().map(mul), [(2, 3), (4, 5)], [6, 20]),
    Case("map-lambda-unpacks", P().map(lambda a, b: a - b), [(5, 1), (3, 3)], [4, 0]),
    Case("map-mixed-tuples", P().map(lambda *xs: sum(xs)), [(1, 2), 3, (4, 5, 6)], [3, 3, 15]),
    Case("map-lists-not-unpacked", P().map(len), [[1, 2], [3]], [2, 1]),
    Case("flatMap-unpacks-tuples", P().flatMap(repeat), [("a", 2), ("b", 1)], ["a", "a", "b"]),
    Case("filter-passes-tuple-whole", P().filter(lambda t: t[0] > 1), [(1, 2), (2, 3)], [(2, 3)]),

    # combinations
    Case("map-filter-map-reduce", P().map(inc).filter(is_even).map(double).reduce(add), range(10),
         sum((x + 1) * 2 for x in range(10) if (x + 1) % 2 == 0)),
    Case("wordcount", wordcount, ["a b a", "c b a"], [("a", 3), ("b", 2), ("c", 1)],
         as_mapping=True),
    Case("wordcount-mapValues", wordcount.mapValues(double), ["a b a"], [("a", 4), ("b", 2)],
         as_mapping=True),
    Case("reduceByKey-then-to-dict", wordcount.to(dict), ["x y x"], {"x": 2, "y": 1}),
    Case("reduce-then-to", P().map(double).reduce(add).to(str), [1, 2], "6"),
    Case("two-aggregates", P().map(pair).reduceByKey(add).map(lambda k, v: v).reduce(add),
         list("abcab"), 5),
    Case("flatMapValues-then-reduceByKey", P().flatMapValues(range).reduceByKey(add),
         {"k": 3, "j": 1}, [("k", 3), ("j", 0)], as_mapping=True),
    # consecutive value stages with different functions: each must apply its own function
    Case("mapValues-then-mapValues", P().mapValues(double).mapValues(str), [("a", 1), ("b", 2)],
         [("a", "2"), ("b", "4")]),
    Case("mapValues-then-flatMapValues", P().mapValues(double).flatMapValues(range), {"a": 1, "b": 0},
         [("a", 0), ("a", 1)]),
    Case("flatMapValues-then-mapValues-then-reduceByKey",
         P().flatMapValues(range).mapValues(triple).reduceByKey(add), {"k": 3, "j": 1},
         [("k", 9), ("j", 0)], as_mapping=True),
    Case("fork-then-reduce", P().fork(P().map(double), P().map(triple)).reduce(add), [1],
         [2, 3]),
    Case("forkMap-split", P().forkMap(double, triple).split(len, sum), [1, 2, 3, 4], (4, 30)),
    Case("fork-then-map-over-tuple", P().fork(sum, len).map(double), [1, 2], [6, 4]),
    Case("map-after-to", P().to(sorted).map(double), [3, 1, 2], [2, 4, 6]),

    # empty input and one item
    Case("map-empty", P().map(double), [], []),
    Case("chain-empty", P().map(inc).filter(is_even).flatMap(repeat, 2), [], []),
    Case("filter-to-empty", P().filter(lambda x: False).map(double), [1, 2, 3], []),
    Case("reduceByKey-empty", P().reduceByKey(add), [], [], as_mapping=True),
    Case("mapValues-empty-dict", P().mapValues(double), {}, []),
    Case("fork-empty", P().forkMap(double, None), [], ([], [])),
    Case("map-one-item", P().map(double), [7], [14]),
    Case("reduceByKey-one-item", P().reduceByKey(add), [("k", 1)], [("k", 1)], as_mapping=True),
    Case("tuple-input", P().map(double), (1, 2), [2, 4]),
    Case("set-input", P().map(double).to(sorted), {3, 1}, [2, 6]),
    Case("dict-input-map-keys", P().map(str.upper), {"a": 1, "b": 2}, ["A", "B"]),
    Case("range-input", P().map(double), range(5), [0, 2, 4, 6, 8]),

    # generator input
    Case("generator-map", P().map(double), gen([1, 2, 3]), [2, 4, 6]),
    Case("generator-reduce", P().filter(is_even).reduce(add), gen(range(100)), 2450),
    Case("generator-empty", P().map(double), gen([]), []),
    Case("generator-fork", P().fork(sum, len), gen([1, 2, 3]), (6, 3)),
    Case("generator-wordcount", wordcount, gen(["a b", "b"]), [("a", 1), ("b", 2)],
         as_mapping=True),
    Case("generator-to", P().to(list), gen([1, 2]), [1, 2]),

    # nested pipelines, several levels
    Case("to-pipeline", P().map(lowercase).to(P().map(tokenize).map(count_length)), CORAL, [6, 9]),
    Case("map-pipeline", P().map(P().map(double).reduce(add)), [[1, 2], [3]], [6, 6]),
    Case("map-pipeline-gets-tuple-whole", P().map(P().map(double)), [(1, 2), (3,)], [[2, 4], [6]]),
    Case("map-pipeline-to-spreads", P().map(P().to(mul)), [(2, 3)], [6]),
    Case("nested-three-levels", deep, [[[1, 2], [3]], [[4]]], [[3, 3], [4]]),
    Case("to-to-to", P().to(P().to(P().to(sum))), [1, 2], 3),
    Case("fork-of-nested", P().fork(P().map(P().to(sum)), P().to(P().forkMap(None, double))),
         [[1], [2, 3]], ([1, 5], ([[1], [2, 3]], [[1, 1], [2, 3, 2, 3]]))),
    Case("split-of-nested", P().fork(sum, P().map(double)).split(P().to(str), P().reduce(add)),
         [1, 2], ("3", 6)),
    Case("splitMap-pipeline-branch", P().splitMap(P().map(inc), triple), ([1], [2]), ([2], [6])),
    Case("flatMap-pipeline", P().flatMap(P().map(double)), [[1], [2, 3]], [2, 4, 6]),
    Case("nested-reduceByKey", P().map(wordcount.to(sorted)), [["a b a"], ["c"]],
         [[("a", 2), ("b", 1)], [("c", 1)]]),

    # composition-time args and kwargs
    Case("bound-kwarg", P().flatMap(tokenize, delimiter=","), ["a,b", "c"], ["a", "b", "c"]),
    Case("bound-positional", P().map(scale, 3), [1, 2], [3, 6]),
    Case("bound-both", P().map(shift, 1, times=10), [0, 1], [10, 20]),
    Case("bound-to", P().to(sorted, reverse=True), [1, 3, 2], [3, 2, 1]),
    Case("bound-filter", P().filter(operator.lt, 2), [1, 2, 3, 0], [1, 0]),
    Case("bound-reduceByKey", P().reduceByKey(lambda a, b, bonus: a + b + bonus, bonus=100),
         [("k", 1), ("k", 2), ("j", 5)], [("k", 103), ("j", 5)], as_mapping=True),

    # runtime kwargs
    Case("runtime-kwarg", P().map(scale, kwargs=["factor"]), [1, 2], [3, 6], kwargs={"factor": 3}),
    Case("runtime-kwarg-str", P().map(shift, kwargs="by"), [1, 2], [2, 3], kwargs={"by": 1}),
    Case("runtime-and-bound", P().map(shift, times=2, kwargs=["by"]), [1], [6], kwargs={"by": 2}),
    Case("runtime-kwarg-function", P().map(lambda x, transform: transform(x), kwargs=["transform"])
         .reduce(add), ["1", "2", "3", "4"], 10, kwargs={"transform": int}),
    Case("runtime-kwarg-nested", P().fork(P().map(scale, kwargs=["factor"]), None), [1], ([5], [1]),
         kwargs={"factor": 5}),
    Case("runtime-kwarg-in-map-pipeline", P().map(P().map(scale, kwargs=["factor"])), [[1, 2]],
         [[2, 4]], kwargs={"factor": 2}),
    Case("runtime-kwarg-reduce", P().reduce(lambda a, b, cap: min(a + b, cap), kwargs=["cap"]),
         [1, 2, 3], 4, kwargs={"cap": 4}),
    Case("runtime-kwarg-missing", P().map(double).map(scale, kwargs=["factor"]), NEVER_READ,
         raises=PipelineError, message="missing runtime kwargs ['factor']"),
    # the original atoll raised KeyError here (the lookup of the name failed): still caught as one
    Case("runtime-kwarg-missing-is-a-key-error", P().map(scale, kwargs=["factor"]), NEVER_READ,
         raises=KeyError, message="missing runtime kwargs ['factor'] (needed by map(scale, "
         "factor=<runtime>)); it takes: factor"),
    Case("runtime-kwarg-missing-nested", P().fork(P().map(scale, kwargs=["factor"])), NEVER_READ,
         raises=PipelineError, message="factor"),
    Case("runtime-kwarg-unknown", P().map(double), NEVER_READ, kwargs={"colour": "red"},
         raises=PipelineError, message="unknown runtime kwargs ['colour']"),

    # failing user functions: the original type, the stage, the element
    Case("fail-map", P().map(inverse), [1, 0, 2], raises=ZeroDivisionError, stage="0", item=0,
         failure=True),
    Case("fail-custom-type", P().map(inc).map(explode_on_three), [0, 1, 2, 3], raises=CaseError,
         stage="1", item=3, failure=True),
    Case("fail-keyerror", P().map(lookup), ["a", "zz"], raises=KeyError, stage="0", item="zz",
         failure=True),
    Case("fail-lambda", P().map(double).filter(lambda x: 10 // (x - 4)), [1, 2, 3],
         raises=ZeroDivisionError, stage="1", item=4, failure=True),
    Case("fail-flatMap", P().flatMap(lambda x: iter(x)), [[1], 5], raises=TypeError, stage="0",
         item=5, failure=True),
    Case("fail-mapValues", P().mapValues(inverse), [("a", 1), ("b", 0)], raises=ZeroDivisionError,
         stage="0", item=("b", 0), failure=True),
    Case("fail-flatMapValues", P().flatMapValues(lambda v: [1 / v]), {"a": 0}, raises=ZeroDivisionError,
         stage="0", item=("a", 0), failure=True),
    Case("fail-reduce", P().reduce(bad_add), [1, 2, 3], raises=ValueError, stage="0", failure=True),
    Case("fail-reduceByKey", P().map(pair).reduceByKey(bad_add), ["a"] * 10, raises=ValueError,
         stage="1", failure=True),
    Case("fail-to", P().map(double).to(len).to(lookup), [1], raises=KeyError, stage="2",
         failure=True),
    Case("fail-generator-input", P().map(inverse), gen([2, 1, 0]), raises=ZeroDivisionError,
         stage="0", item=0, failure=True),
    Case("fail-nested-to", P().map(inc).to(P().map(inverse)), [-1, 1], raises=ZeroDivisionError,
         stage="1/0", item=0, failure=True),
    Case("fail-nested-map", P().map(P().map(inverse)), [[1], [2, 0]], raises=ZeroDivisionError,
         stage="0/0", item=0, failure=True),
    Case("fail-fork-branch", P().map(inc).fork(None, P().map(double).map(inverse)), [-1, 3],
         raises=ZeroDivisionError, stage="1/fork[1]/1", item=0, failure=True),
    Case("fail-split-branch", P().split(None, inverse), (1, 0), raises=ZeroDivisionError,
         stage="0/split[1]/0", failure=True),

    # misuse: a PipelineError that names the stage
    Case("misuse-map-int", P().map(double), 5, raises=PipelineError, stage="0",
         message="stage 0 map(double): map needs a collection"),
    Case("misuse-map-string", P().map(inc).map(double), "abc", raises=PipelineError, stage="0",
         message="needs a collection"),
    Case("misuse-map-after-reduce", P().reduce(add).map(double), [1, 2], raises=PipelineError,
         stage="1", message="stage 1 map(double)"),
    Case("misuse-mapValues-not-pairs", P().mapValues(double), [1, 2], raises=PipelineError,
         stage="0", message="mapValues needs (key, value) pairs"),
    Case("misuse-reduceByKey-not-pairs", P().reduceByKey(add), ["abc"], raises=PipelineError,
         stage="0", message="reduceByKey needs (key, value) pairs"),
    Case("misuse-reduceByKey-unhashable", P().reduceByKey(add), [([1], 2)], raises=PipelineError,
         stage="0", message="hashable"),
    Case("misuse-split-arity", P().split(sum, len), [[1], [2], [3]], raises=PipelineError,
         stage="0", message="needs a tuple or list of 2 elements"),
    Case("misuse-split-not-sequence", P().split(sum, len), 7, raises=PipelineError, stage="0",
         message="got int"),
    Case("misuse-reduce-empty", P().filter(is_even).reduce(add), [1, 3], raises=PipelineError,
         stage="1", message="nothing to reduce"),
    Case("misuse-reduce-empty-generator", P().reduce(add), gen([]), raises=PipelineError,
         stage="0", message="nothing to reduce"),
    Case("misuse-nested", P().fork(None, P().map(double)), 3, raises=PipelineError,
         stage="0/fork[1]/0", message="map needs a collection"),
]

# -- partitions and two inputs: keyBy, mapPartitions, union, join, leftOuterJoin, cogroup -----------

def by_parity(x):
    return (x % 2, x)


def by_mod3(x):
    return x % 3


def doubled_partition(items):
    return (x * 2 for x in items)


def first_letter(word):
    return word[:1] or None


left_right = P().fork(P().map(by_parity), P().keyBy(by_mod3))
users = [("u1", 3), ("u2", 5), ("u1", 7), (None, 1)]
profiles = [("u1", "Ann"), ("u3", "Cy"), ("u1", "Al"), (None, "nobody")]

CASES += [
    Case("keyBy", P().keyBy(len), ["ab", "c", ""], [(2, "ab"), (1, "c"), (0, "")]),
    Case("keyBy-tuple-whole", P().keyBy(len), [(1, 2), (3,)], [(2, (1, 2)), (1, (3,))]),
    Case("keyBy-then-reduceByKey", P().keyBy(first_letter).mapValues(len).reduceByKey(add),
         ["ab", "a", "b", ""], [("a", 3), ("b", 1), (None, 0)], as_mapping=True),
    Case("keyBy-empty", P().keyBy(len), [], []),
    Case("keyBy-fails", P().keyBy(len), ["a", 3], raises=TypeError, stage="0", item=3, failure=True),
    Case("mapPartitions", P().map(inc).mapPartitions(doubled_partition).filter(is_even), [1, 2, 3],
         [4, 6, 8]),
    Case("mapPartitions-lambda-generator", P().mapPartitions(lambda it: (x + 1 for x in it)),
         gen([1, 2, 3]), [2, 3, 4]),
    Case("mapPartitions-empty", P().mapPartitions(doubled_partition), [], []),
    Case("mapPartitions-then-reduce", P().mapPartitions(doubled_partition).reduce(add), [1, 2, 3], 12),
    Case("mapPartitions-fails", P().mapPartitions(lambda it: [1 / 0 for _ in it]), [1, 2],
         raises=ZeroDivisionError, stage="0", failure=True),
    Case("union-fork", P().fork(P().map(double), P().filter(is_even)).union(), [1, 2, 3, 4],
         [2, 4, 6, 8, 2, 4]),
    Case("union-side", P().map(inc).union(side="more"), [1, 2], [2, 3, 7], kwargs={"more": [7]}),
    Case("union-empty", P().fork(None, None).union(), [], []),
    Case("join-fork", left_right.join(), range(4),
         [(0, (0, 0)), (0, (0, 3)), (1, (1, 1)), (0, (2, 0)), (0, (2, 3)), (1, (3, 1))], unordered=True),
    Case("join-duplicate-keys-both-sides", P().split(None, None).join(), (users, profiles),
         [("u1", (3, "Ann")), ("u1", (3, "Al")), ("u1", (7, "Ann")), ("u1", (7, "Al")),
          (None, (1, "nobody"))], unordered=True),
    Case("join-side-dict", P().join(side="names"), [("a", 1), ("b", 2), ("a", 3)],
         [("a", (1, "A")), ("a", (3, "A"))], kwargs={"names": {"a": "A", "c": "C"}}, unordered=True),
    Case("join-one-element", P().join(side="names"), [("a", 1)], [("a", (1, "A"))],
         kwargs={"names": [("a", "A")]}),
    Case("join-empty", P().fork(None, None).join(), [], []),
    Case("join-empty-side", P().join(side="names"), [("a", 1)], [], kwargs={"names": []}),
    Case("leftOuterJoin", P().split(None, None).leftOuterJoin(), (users, profiles),
         [("u1", (3, "Ann")), ("u1", (3, "Al")), ("u2", (5, None)), ("u1", (7, "Ann")),
          ("u1", (7, "Al")), (None, (1, "nobody"))], unordered=True),
    Case("leftOuterJoin-side-empty", P().leftOuterJoin(side="names"), [("a", 1)], [("a", (1, None))],
         kwargs={"names": {}}),
    Case("cogroup", P().split(None, None).cogroup(), (users, profiles),
         [("u1", ([3, 7], ["Ann", "Al"])), ("u2", ([5], [])), (None, ([1], ["nobody"])),
          ("u3", ([], ["Cy"]))], unordered=True),
    Case("cogroup-side", P().keyBy(by_mod3).cogroup(side="extra"), [0, 1, 3],
         [(0, ([0, 3], ["zero"])), (1, ([1], [])), (2, ([], ["two"]))],
         kwargs={"extra": {0: "zero", 2: "two"}},
         unordered=True),
    Case("misuse-join-unhashable-left", P().split(None, None).join(), ([([1], 2)], [("a", 1)]),
         raises=PipelineError, stage="1", message="join needs hashable keys; the left input has key list"),
    Case("misuse-join-unhashable-side", P().join(side="names"), [("a", 1)], raises=PipelineError,
         stage="0", message="the right input has key list", kwargs={"names": [([1], 2)]}),
    Case("misuse-cogroup-not-pairs", P().fork(None, None).cogroup(), [1], raises=PipelineError,
         stage="1", message="cogroup needs (key, value) pairs or a dict as its"),
    Case("misuse-join-one-input", P().join(), [("a", 1)], raises=PipelineError, stage="0",
         message="needs two inputs"),
    Case("zipWithIndex", P().filter(is_even).zipWithIndex(), range(7), [(0, 0), (2, 1), (4, 2), (6, 3)]),
    Case("zipWithIndex-generator", P().zipWithIndex(), gen("abc"), [("a", 0), ("b", 1), ("c", 2)]),
    Case("zipWithIndex-empty", P().zipWithIndex(), [], []),
    Case("zipWithIndex-one", P().map(double).zipWithIndex(), [5], [(10, 0)]),
    Case("zipWithIndex-dict-keys", P().zipWithIndex(), {"k": 1, "j": 2}, [("k", 0), ("j", 1)]),
    Case("sample-none", P().sample(0.0, 3), range(20), []),
    Case("sample-all", P().map(inc).sample(1.0, 3), range(5), [1, 2, 3, 4, 5]),
    Case("sample-empty", P().sample(0.5, 3), [], []),
    Case("misuse-zipWithIndex-not-collection", P().zipWithIndex(), 5, raises=PipelineError, stage="0",
         message="zipWithIndex needs a collection"),
    Case("misuse-join-side-missing", P().join(side="names"), [("a", 1)], raises=KeyError,
         message="names"),
]


def by_len(word):
    return len(word)


def second(pair_):
    return pair_[1]


def append_to(acc, v):
    return acc + [v]


SCORES = [("ann", 3), ("bob", 5), ("cy", 3), ("dee", 5), ("ed", 1)]

CASES += [
    # aggregates, sets, groups and order: empty input, one element, ties, None keys, unhashables
    Case("count", P().filter(is_even).count(), range(10), 5),
    Case("count-empty", P().count(), [], 0),
    Case("count-generator", P().flatMap(tokenize).count(), gen(CORAL), 15),
    Case("sum", P().map(double).sum(), [1, 2, 3], 12),
    Case("sum-empty", P().sum(), [], 0),
    Case("sum-floats", P().sum(), [0.5, 0.25], 0.75),
    Case("min", P().min(), [3, 1, 4, 1, 5], 1),
    Case("max-strings", P().flatMap(tokenize).max(), CORAL, "underwater"),
    Case("max-one", P().max(), [7], 7),
    Case("max-ties-keep-first", P().max(), [(1, "a"), (2, "b"), (2, "b")], (2, "b")),
    Case("mean", P().mean(), [1, 2, 3, 4], 2.5),
    Case("stats", P().stats(), [2, 4, 4, 4, 5, 5, 7, 9],
         {"count": 8, "mean": 5.0, "stdev": 2.0, "min": 2, "max": 9}),
    Case("stats-one", P().stats(), [3], {"count": 1, "mean": 3.0, "stdev": 0.0, "min": 3, "max": 3}),
    Case("stats-empty", P().stats(), [], {"count": 0, "mean": None, "stdev": None, "min": None,
                                          "max": None}),
    Case("countByValue", P().flatMap(tokenize).map(lowercase).countByValue(), CORAL,
         Counts({"coral": 2, "reefs": 2, "are": 2, "diverse": 1, "underwater": 1, "ecosystems": 1, "built": 1,
          "by": 1, "colonies": 1, "of": 1, "tiny": 1, "animals": 1})),
    Case("countByValue-flatMap-last", P().flatMap(str.split).countByValue(), ["a b a", "", "b a"],
         Counts({"a": 3, "b": 2})),
    Case("countByValue-alone", P().countByValue(), [1, None, 1, (2, 3)], Counts({1: 2, None: 1, (2, 3): 1})),
    Case("countByValue-empty", P().countByValue(), [], Counts()),
    Case("countByValue-generator", P().countByValue(), gen("abca"), Counts({"a": 2, "b": 1, "c": 1})),
    Case("countByKey", P().countByKey(), [("a", 1), (None, 2), ("a", 3)], Counts({"a": 2, None: 1})),
    Case("countByKey-dict", P().countByKey(), {"a": 1, "b": 2}, Counts({"a": 1, "b": 1})),
    Case("distinct", P().distinct(), [3, 1, 3, None, 1], [1, 3, None], unordered=True),
    Case("distinct-empty", P().distinct(), [], []),
    Case("distinct-after-flatMap", P().flatMap(tokenize).distinct(), ["a b", "b c"], ["a", "b", "c"],
         unordered=True),
    Case("groupByKey", P().groupByKey(), [("a", 1), ("b", 2), ("a", 3), (None, 4), ("a", 5)],
         [("a", [1, 3, 5]), ("b", [2]), (None, [4])], as_mapping=True),
    Case("groupByKey-empty", P().groupByKey(), [], []),
    Case("foldByKey", P().foldByKey(0, add), [("a", 1), ("b", 2), ("a", 3)], [("a", 4), ("b", 2)],
         as_mapping=True),
    Case("foldByKey-mutable-zero-copied", P().foldByKey([], add),
         [("a", [1]), ("b", [2]), ("a", [3])], [("a", [1, 3]), ("b", [2])], as_mapping=True),
    Case("aggregateByKey", P().aggregateByKey([], append_to, add), [("a", 1), ("b", 2), ("a", 3)],
         [("a", [1, 3]), ("b", [2])], as_mapping=True),
    Case("combineByKey", P().combineByKey(str, lambda c, v: c + str(v), add),
         [("a", 1), ("b", 2), ("a", 3)], [("a", "13"), ("b", "2")], as_mapping=True),
    Case("sortBy", P().sortBy(), [3, 1, 2], [1, 2, 3]),
    Case("sortBy-ties-stable", P().sortBy(second), SCORES,
         [("ed", 1), ("ann", 3), ("cy", 3), ("bob", 5), ("dee", 5)]),
    Case("sortBy-descending-ties-stable", P().sortBy(second, ascending=False), SCORES,
         [("bob", 5), ("dee", 5), ("ann", 3), ("cy", 3), ("ed", 1)]),
    Case("sortBy-empty", P().sortBy(), [], []),
    Case("sortBy-one", P().sortBy(by_len), ["x"], ["x"]),
    Case("sortBy-key-flatMap", P().flatMap(tokenize).sortBy(by_len), ["ccc a", "bb dd"],
         ["a", "bb", "dd", "ccc"]),
    Case("sortByKey", P().sortByKey(), [("b", 1), ("a", 2), ("b", 0)], [("a", 2), ("b", 1), ("b", 0)]),
    Case("sortByKey-descending", P().sortByKey(ascending=False), {"a": 1, "c": 2, "b": 3},
         [("c", 2), ("b", 3), ("a", 1)]),
    Case("top", P().top(2), [3, 9, 1, 7], [9, 7]),
    Case("top-key-ties-first-met", P().top(2, key=second), SCORES, [("bob", 5), ("dee", 5)]),
    Case("top-more-than-input", P().top(10), [2, 1], [2, 1]),
    Case("top-empty", P().top(3), [], []),
    Case("takeOrdered", P().takeOrdered(3, key=second), SCORES, [("ed", 1), ("ann", 3), ("cy", 3)]),
    Case("take", P().map(double).take(3), range(10), [0, 2, 4]),
    Case("take-zero", P().take(0), [1, 2], []),
    Case("take-generator", P().take(2), gen([5, 6, 7]), [5, 6]),
    Case("first", P().filter(is_even).first(), [1, 3, 4, 6], 4),

    Case("misuse-countByValue-unhashable", P().map(lambda x: [x]).countByValue(), [1, 2],
         raises=PipelineError, stage="1", item=[1],
         message="countByValue needs hashable elements; got list"),
    Case("misuse-distinct-unhashable", P().distinct(), [1, {"a": 1}], raises=PipelineError, stage="0",
         message="distinct needs hashable elements; got dict"),
    Case("misuse-groupByKey-unhashable", P().groupByKey(), [([1], 2)], raises=PipelineError, stage="0",
         message="groupByKey needs hashable keys; got list"),
    Case("misuse-groupByKey-not-pairs", P().groupByKey(), [1], raises=PipelineError, stage="0",
         message="groupByKey needs (key, value) pairs"),
    Case("misuse-countByKey-unhashable", P().countByKey(), [({}, 2)], raises=PipelineError, stage="0",
         message="countByKey needs hashable keys; got dict"),
    Case("misuse-max-empty", P().filter(is_even).max(), [1], raises=PipelineError, stage="1",
         message="max of an empty input"),
    Case("misuse-mean-empty", P().mean(), [], raises=PipelineError, stage="0",
         message="mean of an empty input"),
    Case("misuse-first-empty", P().first(), [], raises=PipelineError, stage="0",
         message="first of an empty input"),
    Case("misuse-sum-strings", P().sum(), [1, "a"], raises=TypeError, stage="0", failure=True),
]


def case_ids() -> list[str]:
    """Return the ids of every case (unique: checked by the suite)."""
    return [case.id for case in CASES]
