"""What each operator does, defined once and shared by every executor.

Each of the twelve operators is one object (:class:`Operator`; the aggregates are :class:`Aggregate`,
``to`` and the branching ones :class:`Whole`): what it does to one partition (a list or range), the
lines it adds to a compiled fused pass, for ``reduce`` and ``reduceByKey`` how partial results combine
across partitions, and for ``to``, ``fork``, ``forkMap``, ``split`` and ``splitMap`` what it does to
the whole input (:meth:`Whole.apply`, called by the executors' interpreter). :func:`run_steps` runs a
fused run of stages as one generated Python loop (:func:`compiled_pass`, compiled once per pipeline
signature and cached), and only when it fails runs the partition again stage by stage, with each
operator's :meth:`Operator.partition`, to name the stage and element that failed. The partition functions
(``map_partition`` and the rest) are that staged form.
"""

from __future__ import annotations

import copy
import functools
import heapq
import logging
import operator
import random
import time
import traceback
import types
from abc import ABC, abstractmethod
from collections import _count_elements as count_elements
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import chain, count, starmap
from typing import Any, NamedTuple, Protocol

from atoll import capture, dead_letters
from atoll.dead_letters import Salvage, TooManyErrors
from atoll.encoding import Counts
from atoll.errors import NO_ITEM, PipelineError, StageFailure, StageInfo, stage_failure

__all__ = [
    "EMPTY", "Operator", "Aggregate", "Whole", "Branching", "Walker", "OPERATORS", "operator_named",
    "MAP", "FLAT_MAP", "FILTER", "MAP_VALUES", "FLAT_MAP_VALUES", "REDUCE", "REDUCE_BY_KEY", "TO", "FORK",
    "FORK_MAP", "SPLIT", "SPLIT_MAP", "COUNT", "SUM", "MIN", "MAX", "MEAN", "STATS",
    "COUNT_BY_VALUE", "DISTINCT", "SORT_BY", "SORT_BY_KEY", "TOP", "TAKE_ORDERED", "TAKE", "FIRST",
    "COMBINE_BY_KEY", "AGGREGATE_BY_KEY", "FOLD_BY_KEY", "GROUP_BY_KEY", "COUNT_BY_KEY", "Selection",
    "Combiner", "Zero", "identity", "first_of", "one", "plus_one", "listed", "appended", "extended",
    "Step", "ElementFailed", "SALVAGE_SLICE", "SALVAGE_SLICES",
    "map_partition", "flat_map_partition", "filter_partition", "map_values_partition",
    "flat_map_values_partition", "reduce_partition", "reduce_by_key_partition", "merge_reduced",
    "merge_by_key", "merge_partials", "pass_source", "compiled_pass", "run_steps", "call_whole",
    "never_rerun",
    "KEY_BY", "MAP_PARTITIONS", "UNION", "JOIN", "LEFT_OUTER_JOIN", "COGROUP", "TwoInputs",
    "key_by_partition", "map_partitions_partition", "index_by_key", "check_pairs", "join_pairs",
    "cogroup_pairs",
    "union_items", "keyed_input", "SAMPLE", "ZIP_WITH_INDEX", "sample_items", "zip_with_index_items",
]


logger = logging.getLogger(__name__)


def identity(x: Any) -> Any:
    """Return ``x``: the function of a ``None`` stage."""
    return x


class _Empty:
    """The partial result of reducing an empty partition."""

    def __repr__(self) -> str:
        return "EMPTY"

    def __reduce__(self):
        return "EMPTY"


EMPTY: Any = _Empty()


class ElementFailed(Exception):
    """Raised by an element-wise operator: ``original`` failed on ``item``."""

    def __init__(self, original: BaseException, item: Any):
        super().__init__(original, item)
        self.original = original
        self.item = item


def _failed_item(items, it) -> Any:
    """Return the element being processed when ``it`` (an iterator over ``items``) stopped."""
    try:
        return items[len(items) - it.__length_hint__() - 1]
    except (TypeError, IndexError):
        return NO_ITEM


def _tuple_kind(items) -> str:
    """Return 'plain', 'tuples' or 'mixed': are the elements tuples (to be unpacked)?"""
    if type(items) is range:
        return "plain"
    types = set(map(type, items))
    tuples = sum(1 for t in types if issubclass(t, tuple))
    return "plain" if not tuples else "tuples" if tuples == len(types) else "mixed"


def _spread(f: Callable) -> Callable:
    def call(x):
        # by the element's own type, as the compiled pass and _tuple_kind decide: isinstance would
        # also believe an object whose __class__ claims to be a tuple (a proxy)
        return f(*x) if issubclass(type(x), tuple) else f(x)
    return call


def _applied(f: Callable, items, it, unpack: bool):
    """Return the lazy ``f(x)`` over ``it``, unpacking tuple elements when ``unpack``."""
    kind = _tuple_kind(items) if unpack else "plain"
    if kind == "plain":
        return map(f, it)
    if kind == "tuples":
        return starmap(f, it)
    return map(_spread(f), it)


def map_partition(f: Callable, items, unpack: bool = True) -> list:
    """Return ``[f(x) for x in items]``; a tuple element is unpacked into ``f(*x)``.

    >>> map_partition(lambda a, b: a * b, [(2, 3), (4, 5)])
    [6, 20]
    """
    it = iter(items)
    try:
        return list(_applied(f, items, it, unpack))
    except Exception as exc:
        raise ElementFailed(exc, _failed_item(items, it)) from exc


def flat_map_partition(f: Callable, items, unpack: bool = True) -> list:
    """Return the concatenation of ``f(x)`` for each element.

    >>> flat_map_partition(str.split, ["a b", "c"])
    ['a', 'b', 'c']
    """
    it = iter(items)
    try:
        return list(chain.from_iterable(_applied(f, items, it, unpack)))
    except Exception as exc:
        raise ElementFailed(exc, _failed_item(items, it)) from exc


def filter_partition(f: Callable, items) -> list:
    """Return the elements for which ``f(x)`` is truthy (the element is passed whole).

    >>> filter_partition(lambda x: x % 2 == 0, range(5))
    [0, 2, 4]
    """
    it = iter(items)
    try:
        return list(filter(f, it))
    except Exception as exc:
        raise ElementFailed(exc, _failed_item(items, it)) from exc


def _not_a_pair(item: Any) -> bool:
    """Return True when ``item`` is known and is not a (key, value) pair."""
    return item is not NO_ITEM and not (isinstance(item, (tuple, list)) and len(item) == 2)


def _pair_error(op: str, item: Any) -> PipelineError:
    return PipelineError(f"{op} needs (key, value) pairs or a dict; got {type(item).__name__} "
                         f"{item!r}", item=item)


def map_values_partition(f: Callable, items) -> list:
    """Return ``[(k, f(v)) for k, v in items]``.

    >>> map_values_partition(len, [("a", "xyz"), ("b", "")])
    [('a', 3), ('b', 0)]
    """
    it = iter(items)
    try:
        return [(k, f(v)) for k, v in it]
    except Exception as exc:
        item = _failed_item(items, it)
        if _not_a_pair(item):
            raise _pair_error("mapValues", item) from None
        raise ElementFailed(exc, item) from exc


def flat_map_values_partition(f: Callable, items) -> list:
    """Return ``[(k, w) for k, v in items for w in f(v)]``.

    >>> flat_map_values_partition(str.split, [("a", "x y")])
    [('a', 'x'), ('a', 'y')]
    """
    it = iter(items)
    try:
        return [(k, w) for k, v in it for w in f(v)]
    except Exception as exc:
        item = _failed_item(items, it)
        if _not_a_pair(item):
            raise _pair_error("flatMapValues", item) from None
        raise ElementFailed(exc, item) from exc


def reduce_partition(f: Callable, items, acc: Any = EMPTY) -> Any:
    """Return the left fold of ``items`` with ``f`` (from ``acc`` when given), or :data:`EMPTY` for an
    empty partition.

    >>> reduce_partition(lambda a, b: a + b, [1, 2, 3]), reduce_partition(max, [])
    (6, EMPTY)
    """
    if acc is not EMPTY:
        return functools.reduce(f, items, acc)
    return functools.reduce(f, items) if len(items) else EMPTY


def reduce_by_key_partition(f: Callable, items, into: dict | None = None) -> dict:
    """Return ``{key: fold of its values}`` over (key, value) pairs, folding into ``into`` if given.

    >>> reduce_by_key_partition(lambda a, b: a + b, [("a", 1), ("b", 2), ("a", 3)])
    {'a': 4, 'b': 2}
    """
    acc = {} if into is None else into
    it = iter(items)
    try:
        if f is operator.add:  # the common word-count case: the + inline, no call per element
            for k, v in it:
                if k in acc:
                    acc[k] = acc[k] + v
                else:
                    acc[k] = v
        else:
            for k, v in it:
                if k in acc:
                    acc[k] = f(acc[k], v)
                else:
                    acc[k] = v
    except Exception as exc:
        item = _failed_item(items, it)
        if _not_a_pair(item):
            raise _pair_error("reduceByKey", item) from None
        if item is not NO_ITEM and isinstance(exc, TypeError) and "unhashable" in str(exc):
            raise PipelineError(f"reduceByKey needs hashable keys; got {type(item[0]).__name__} "
                                f"{item[0]!r}", item=item) from None
        raise ElementFailed(exc, NO_ITEM) from exc
    return acc


def merge_reduced(f: Callable, partials: Iterable) -> Any:
    """Return the fold of the non-empty partial results, in order (EMPTY when all are empty).

    >>> merge_reduced(lambda a, b: a + b, [EMPTY, 3, 4])
    7
    """
    present = [p for p in partials if p is not EMPTY]
    return functools.reduce(f, present) if present else EMPTY


def merge_by_key(f: Callable, partials: Iterable[dict], into: dict | None = None) -> dict:
    """Return the per-key fold of several partial dictionaries, folded into ``into`` in place when
    given (it is returned), into a new dictionary otherwise.

    >>> merge_by_key(lambda a, b: a + b, [{"a": 1}, {"a": 2, "b": 5}])
    {'a': 3, 'b': 5}
    """
    acc = {} if into is None else into
    add = f is operator.add  # the word-count case: the + inline, no call per key
    for part in partials:
        if not acc:  # nothing to fold with yet: a partial is copied in whole (never kept as it is)
            acc.update(part)
            continue
        for k, v in part.items():
            if k in acc:
                acc[k] = acc[k] + v if add else f(acc[k], v)
            else:
                acc[k] = v
    return acc


def _locate(exc: BaseException, info: StageInfo, item: Any = NO_ITEM) -> BaseException:
    """Return the exception to raise for ``exc`` escaping the stage ``info``."""
    if isinstance(exc, StageFailure):  # a nested pipeline failed: keep its stage, seen from here
        if exc.stage is not None and exc.stage is not info:
            exc.stage = exc.stage.nested_in(info)
        return exc
    if isinstance(exc, PipelineError):
        if exc.stage is None:
            exc.stage = info
            exc.args = (f"{info.describe()}: {exc.message}",)
        return exc
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return stage_failure(exc, info, item, tb).with_traceback(exc.__traceback__)


# -- operators as objects ------------------------------------------------------------------------

class Operator(ABC):
    """One element-wise operator, defined once: what it does to a partition (``partition()``, the
    staged form that locates failures) and the lines it adds to a compiled fused pass (``fuse()``)."""

    #: the DSL's name of the operator
    name = ""
    #: it runs inside a fused pass over the elements (element-wise, or an aggregate ending the pass);
    #: otherwise the interpreter applies it to the whole input (:class:`Whole`)
    joins_pass = True
    #: its branches each see the input, or one element of it (fork, forkMap, split, splitMap)
    branching = False
    #: its function may not be None (the identity): an aggregate needs a function of two arguments
    needs_function = False
    #: it reads (key, value) pairs: a dict input is read as its items
    pairs = False
    #: what its output elements are, given its input's ("plain", "tuples" or "mixed"; None: the
    #: same as its input), so that a later map knows whether to spread them without looking
    makes: str | None = "mixed"
    #: its function takes a tuple element spread into arguments (``f(*x)``)
    spreads = False
    #: it takes a function (``sample``, ``zipWithIndex``, the two-input operators, ``count()``,
    #: ``countByValue()`` and the other aggregates with no function of the user's take none)
    takes_function = True
    #: its function takes a whole partition (``mapPartitions``): the pass runs it between loops
    whole_partition = False

    @abstractmethod
    def partition(self, step: Step, items) -> list:
        """Return the operator applied to one partition (raises :class:`ElementFailed` on failure)."""

    def output_kind(self, func: Callable, kind: str) -> str:
        """Return what the elements are after this operator with ``func``, given ``kind`` before."""
        return kind if self.makes is None else self.makes

    @abstractmethod
    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        """Return the source lines this operator adds to a fused pass and whether they open a loop.

        The current element is ``x``; ``f`` is the name of the bound function, ``n`` the stage's
        position in the pass (for names of its own). ``spread`` says whether a map spreads a tuple
        element into arguments: ``"yes"``, ``"no"``, ``"check"`` (each element, when the kinds of
        elements are not known) or ``"try"`` (not known, and ``f`` cannot take a tuple: see
        :func:`_call`). Lines after an opened loop go inside it.
        """

    def __repr__(self) -> str:
        return f"<operator {self.name}>"

    def __reduce__(self):
        return (operator_named, (self.name,))


#: builtins whose result is never a tuple: a map with one of them makes plain elements
_PLAIN_RESULTS = frozenset(map(id, (
    str, int, float, bool, len, ord, chr, hash, repr, str.lower, str.upper, str.strip, str.lstrip,
    str.rstrip, str.casefold, str.title, str.encode, bytes.decode)))
#: builtins that return a list of strings (or bytes): a flatMap with one makes plain elements
_PLAIN_PARTS = frozenset(map(id, (str.split, str.rsplit, str.splitlines, bytes.split, bytes.rsplit,
                                  bytes.splitlines)))
#: the method descriptors of these types refuse a tuple before they do anything (no class can derive
#: from one of them and from ``tuple``: their layouts conflict)
_NOT_TUPLES = (str, bytes)
_DESCRIPTORS = (types.MethodDescriptorType, types.WrapperDescriptorType)


def _refuses_tuples(func: Callable) -> bool:
    """True for a method of ``str`` or ``bytes`` taken from the class (``str.split``): called with a
    tuple it raises ``TypeError`` at once, with no effect, so a pass may call it and spread the tuple
    only on that error."""
    return type(func) in _DESCRIPTORS and getattr(func, "__objclass__", None) in _NOT_TUPLES


def _one_of(func: Callable, known: frozenset) -> bool:
    return id(func) in known  # by identity: a user's callable need not be hashable


def _applied_source(f: str, spread: str) -> str:
    """Return the expression of ``f`` applied to ``x`` when the pass knows how (``"yes"``: spread)."""
    return f"{f}(*x)" if spread == "yes" else f"{f}(x)"


def _call(f: str, spread: str, n: int, target: str) -> list[str]:
    """Return the lines that store ``f`` applied to the element ``x`` in ``target``.

    A tuple element is spread into the arguments (the DSL's ``f(*x)``). When the pass does not know
    whether elements are tuples (``spread == "check"``) it asks each element's type, and remembers the
    last plain type (``p<n>``) and the last tuple type (``q<n>``) it saw, so that elements of one type
    cost a ``type(x) is`` test (the builtin bound as the local ``typeof``): cheaper than ``isinstance``
    and than scanning the partition first. A method of ``str`` or ``bytes`` (``spread == "try"``) is
    called with the element first and given it spread only when that raises ``TypeError`` on a tuple:
    no test at all while the elements are strings.
    """
    if spread in ("yes", "no"):
        return [f"{target} = {_applied_source(f, spread)}"]
    if spread == "try":  # nothing to test per element: the call itself refuses a tuple
        return ["try:", f"    {target} = {f}(x)", "except TypeError:",
                "    if not issubclass(type(x), tuple):", "        raise", f"    {target} = {f}(*x)"]
    return [f"if typeof(x) is p{n}:", f"    {target} = {f}(x)",
            f"elif typeof(x) is q{n}:", f"    {target} = {f}(*x)",
            "elif issubclass(typeof(x), tuple):", f"    q{n} = typeof(x)", f"    {target} = {f}(*x)",
            "else:", f"    p{n} = typeof(x)", f"    {target} = {f}(x)"]


class Map(Operator):
    """``map(f)``: ``f(x)`` for each element, ``f(*x)`` for a tuple element."""

    name = "map"
    spreads = True

    def partition(self, step: Step, items) -> list:
        return map_partition(step.func, items, step.unpack)

    def output_kind(self, func: Callable, kind: str) -> str:
        return "plain" if _one_of(func, _PLAIN_RESULTS) else "mixed"

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        return _call(f, spread, n, "x"), False


class FlatMap(Operator):
    """``flatMap(f)``: the concatenation of ``f(x)``."""

    name = "flatMap"
    spreads = True

    def partition(self, step: Step, items) -> list:
        return flat_map_partition(step.func, items, step.unpack)

    def output_kind(self, func: Callable, kind: str) -> str:
        return "plain" if _one_of(func, _PLAIN_PARTS) else "mixed"

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        if spread in ("yes", "no"):
            return [f"for x in {_applied_source(f, spread)}:"], True
        return [*_call(f, spread, n, f"r{n}"), f"for x in r{n}:"], True


class Filter(Operator):
    """``filter(f)``: the elements for which ``f(x)`` is truthy."""

    name = "filter"
    makes = None

    def partition(self, step: Step, items) -> list:
        return filter_partition(step.func, items)

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        return [f"if not {f}(x):", "    continue"], False


class MapValues(Operator):
    """``mapValues(f)``: ``(k, f(v))`` for each pair."""

    name = "mapValues"
    pairs = True
    makes = "tuples"

    def partition(self, step: Step, items) -> list:
        return map_values_partition(step.func, items)

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        return [f"k{n}, v{n} = x", f"x = (k{n}, {f}(v{n}))"], False


class FlatMapValues(Operator):
    """``flatMapValues(f)``: ``(k, w)`` for each ``w`` in ``f(v)``."""

    name = "flatMapValues"
    pairs = True
    makes = "tuples"

    def partition(self, step: Step, items) -> list:
        return flat_map_values_partition(step.func, items)

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        # the key has a name of its own: a later stage in the inner loop must not overwrite it
        return [f"k{n}, v{n} = x", f"for w{n} in {f}(v{n}):", f"    x = (k{n}, w{n})"], True


class Aggregate(Operator):
    """An operator that folds a collection: a partial per partition, then the partials combined."""

    #: its result is (key, value) pairs combined per key (Spark's ``reduceByKey``), not one value
    keyed = False
    needs_function = True
    #: its first element is folded in differently (it starts the accumulator): a fused pass with no
    #: inner loop takes it in a loop of its own, so the main loop does not test for it each time
    peels = False

    def prelude(self) -> list[str]:
        """Return the lines a pass runs before its loop, whether or not it was given a partial."""
        return []

    @abstractmethod
    def start(self) -> list[str]:
        """Return the lines that start the accumulator ``acc`` when the pass was given none
        (``acc is EMPTY``); a pass given a partial result folds into it."""

    @abstractmethod
    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        """Return the lines that fold ``x`` into the accumulator ``acc`` (``add``: the function is
        ``operator.add``, written as ``+``; ``started``: ``acc`` is known to hold a value;
        ``keys_rare``: a fold by key expects few new keys, see :func:`run_steps`)."""

    @abstractmethod
    def partition(self, step: Step, items, acc: Any = EMPTY) -> Any:
        """Return the partial result of one partition, folded on from the partial ``acc`` if given."""

    @abstractmethod
    def combined(self, step: Step, partials: Iterable) -> Any:
        """Return the partial result of consecutive partitions from theirs, in order (the partials
        are the passes' own: the first may be folded into in place)."""

    @abstractmethod
    def merge(self, step: Step, partials: Iterable) -> Any:
        """Return the stage's result from the partial results of its partitions, in order."""

    @abstractmethod
    def rows(self, partial: Any) -> Iterable:
        """Return a partial result as the rows of a distributed dataset."""

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        raise TypeError(f"{self.name} ends a fused pass; it does not join one")


class Reduce(Aggregate):
    """``reduce(f)``: the left fold of the elements (:data:`EMPTY` for an empty partition)."""

    name = "reduce"
    peels = True

    def partition(self, step: Step, items, acc: Any = EMPTY) -> Any:
        return reduce_partition(step.func, items, acc)

    def start(self) -> list[str]:
        return []  # EMPTY until the first element

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        folded = "acc = acc + x" if add else "acc = fa(acc, x)"
        return [folded] if started else ["if acc is EMPTY:", "    acc = x", "else:", "    " + folded]

    def combined(self, step: Step, partials: Iterable) -> Any:
        return merge_reduced(step.func, partials)

    def merge(self, step: Step, partials: Iterable) -> Any:
        result = self.combined(step, partials)
        if result is EMPTY:
            raise PipelineError("nothing to reduce: the input is empty")
        return result

    def rows(self, partial: Any) -> Iterable:
        return [partial]


class ReduceByKey(Aggregate):
    """``reduceByKey(f)``: the fold of each key's values, as (key, value) pairs."""

    name = "reduceByKey"
    pairs = True
    keyed = True

    def partition(self, step: Step, items, acc: Any = EMPTY) -> dict:
        return reduce_by_key_partition(step.func, items, None if acc is EMPTY else dict(acc))

    def start(self) -> list[str]:
        return ["acc = {}"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        combined = "    acc[k] = seen + v" if add else "    acc[k] = fa(seen, v)"
        if keys_rare:  # one lookup for a key seen before; a new key costs a KeyError (~150 ns)
            return ["k, v = x", "try:", "    seen = acc[k]", "except KeyError:", "    acc[k] = v",
                    "else:", combined]
        # a call of dict.get for every pair (~10 ns more than a lookup), no exception for a new key
        return ["k, v = x", "seen = acc.get(k, EMPTY)", "if seen is EMPTY:", "    acc[k] = v", "else:",
                combined]

    def combined(self, step: Step, partials: Iterable) -> dict:
        it = iter(partials)
        return merge_by_key(step.func, it, into=next(it, {}))  # into the first: no copy of it

    def merge(self, step: Step, partials: Iterable) -> list:
        it = iter(partials)
        first = next(it, EMPTY)
        second = next(it, EMPTY)
        if second is EMPTY:  # one partition (a serial pass): its pairs as they are, no merged copy
            return [] if first is EMPTY else list(first.items())
        return list(self.combined(step, chain((first, second), it)).items())

    def rows(self, partial: Any) -> Iterable:
        return iter(partial.items())


class _NoFunction(Aggregate):
    """An aggregate that takes no function of the user's (``count``, ``countByValue``, ...)."""

    needs_function = False
    takes_function = False

    def combined(self, step: Step, partials: Iterable) -> Any:
        present = [p for p in partials if p is not EMPTY]
        if not present:
            return EMPTY
        return functools.reduce(self.combine_two, present)

    def combine_two(self, a: Any, b: Any) -> Any:
        """Return two partial results combined (``a`` may be changed in place)."""
        return a + b

    def merge(self, step: Step, partials: Iterable) -> Any:
        return self.finish(self.combined(step, partials))

    def finish(self, partial: Any) -> Any:
        """Return the stage's result from the partial result of the whole input."""
        return partial

    def rows(self, partial: Any) -> Iterable:
        return [partial]


class Count(_NoFunction):
    """``count()``: the number of elements."""

    name = "count"

    def partition(self, step: Step, items, acc: Any = EMPTY) -> int:
        return (0 if acc is EMPTY else acc) + len(items)

    def start(self) -> list[str]:
        return ["acc = 0"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["acc += 1"]

    def finish(self, partial: Any) -> int:
        return 0 if partial is EMPTY else partial


class Sum(_NoFunction):
    """``sum()``: the sum of the elements (0 for an empty input, as in PySpark)."""

    name = "sum"

    def partition(self, step: Step, items, acc: Any = EMPTY) -> Any:
        try:
            return sum(items, 0 if acc is EMPTY else acc)
        except TypeError as exc:
            bad = next((x for x in items if not isinstance(x, (int, float, complex))), NO_ITEM)
            raise ElementFailed(exc, bad) from exc

    def start(self) -> list[str]:
        return ["acc = 0"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["acc = acc + x"]

    def finish(self, partial: Any) -> Any:
        return 0 if partial is EMPTY else partial


class _Extreme(_NoFunction):
    """``min()`` / ``max()``: the smallest / largest element (an error naming the stage when the
    input is empty, as PySpark's ``min`` raises); of equal elements, the first is kept."""

    peels = True

    def __init__(self, name: str, beats: str, pick: Callable):
        self.name = name
        self.beats = beats  # "<" for min, ">" for max
        self.pick = pick

    def partition(self, step: Step, items, acc: Any = EMPTY) -> Any:
        try:
            best = self.pick(items) if len(items) else EMPTY
        except TypeError as exc:
            raise ElementFailed(exc, NO_ITEM) from exc
        if acc is EMPTY or best is EMPTY:
            return acc if best is EMPTY else best
        return self.combine_two(acc, best)

    def start(self) -> list[str]:
        return []

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        if started:
            return [f"if x {self.beats} acc:", "    acc = x"]
        return ["if acc is EMPTY:", "    acc = x", f"elif x {self.beats} acc:", "    acc = x"]

    def combine_two(self, a: Any, b: Any) -> Any:
        return b if (b < a if self.beats == "<" else b > a) else a

    def finish(self, partial: Any) -> Any:
        if partial is EMPTY:
            raise PipelineError(f"{self.name} of an empty input")
        return partial

    def __reduce__(self):
        return (operator_named, (self.name,))


class Stats(_NoFunction):
    """``stats()``: count, mean, stdev (of the population, as PySpark's), min and max in one pass.

    The partial result is ``[n, mean, m2, min, max]`` (Welford's update per element, Chan's merge of
    two partials), so the variance does not lose precision as a sum of squares would.
    """

    name = "stats"

    def partition(self, step: Step, items, acc: Any = EMPTY) -> Any:
        it = iter(items)
        try:
            for x in it:
                acc = self._one(acc, x)
        except TypeError as exc:
            raise ElementFailed(exc, _failed_item(items, it)) from exc
        return acc

    @staticmethod
    def one(acc: Any, x: Any) -> list:
        if acc is EMPTY:
            return [1, x + 0.0, 0.0, x, x]
        n = acc[0] + 1
        delta = x - acc[1]
        mean = acc[1] + delta / n
        acc[0], acc[1], acc[2] = n, mean, acc[2] + delta * (x - mean)
        if x < acc[3]:
            acc[3] = x
        if x > acc[4]:
            acc[4] = x
        return acc

    def start(self) -> list[str]:
        return []

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        first = ["acc = [1, x + 0.0, 0.0, x, x]"]
        update = ["n_, mean_, m2_, lo_, hi_ = acc", "n_ += 1", "delta_ = x - mean_",
                  "mean_ += delta_ / n_", "m2_ += delta_ * (x - mean_)",
                  "if x < lo_:", "    lo_ = x", "if x > hi_:", "    hi_ = x",
                  "acc[0] = n_; acc[1] = mean_; acc[2] = m2_; acc[3] = lo_; acc[4] = hi_"]
        if started:
            return update
        return ["if acc is EMPTY:", *["    " + line for line in first], "else:",
                *["    " + line for line in update]]

    def combine_two(self, a: list, b: list) -> list:
        n = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / n
        m2 = a[2] + b[2] + delta * delta * a[0] * b[0] / n
        return [n, mean, m2, min(a[3], b[3]), max(a[4], b[4])]

    def finish(self, partial: Any) -> dict:
        if partial is EMPTY:
            return {"count": 0, "mean": None, "stdev": None, "min": None, "max": None}
        n, mean, m2, lo, hi = partial
        return {"count": n, "mean": mean, "stdev": (m2 / n) ** 0.5, "min": lo, "max": hi}


class Mean(Stats):
    """``mean()``: the arithmetic mean of the elements (an error naming the stage when empty)."""

    name = "mean"

    def finish(self, partial: Any) -> float:
        if partial is EMPTY:
            raise PipelineError("mean of an empty input")
        return partial[1]


class CountByValue(_NoFunction):
    """``countByValue()``: a dict ``{element: how many times it occurs}`` (PySpark's
    ``countByValue``, Dask bag's ``frequencies``), in order of first occurrence on the serial executor.

    Counted in C (``collections.Counter``'s counting loop): a fused pass collects the elements its
    stages make into a buffer of at most 65536 and counts the buffer at once; when its last stage is a
    ``flatMap``, each element's iterable is counted as it is made, with no buffer. Its memory is one
    entry per distinct element. Over HTTP the dict is sent as a list of ``[element, count]`` pairs.
    """

    name = "countByValue"
    batched = True

    def partition(self, step: Step, items, acc: Any = EMPTY) -> dict:
        acc = {} if acc is EMPTY else dict(acc)
        try:
            count_elements(acc, items)
        except TypeError as exc:
            _raise_unhashable(self.name, items, exc)
        return acc

    def start(self) -> list[str]:
        return ["acc = {}"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["acc[x] = acc.get(x, 0) + 1"]

    def absorb(self, expr: str, many: bool = False) -> list[str]:
        return [f"count_elements(acc, {expr})"]

    def close(self) -> list[str]:
        return []

    def combined(self, step: Step, partials: Iterable) -> Any:
        it = iter(partials)
        return merge_by_key(operator.add, it, into=next(it, {}))

    def finish(self, partial: Any) -> dict:
        return Counts() if partial is EMPTY else Counts(partial)


class Distinct(_NoFunction):
    """``distinct()``: each element once, as a list in no guaranteed order (as PySpark's).

    A partial result is a partition's set of elements, taken in C (``set.update``); the sets of the
    partitions are merged. Its memory is one entry per distinct element, in the process that merges.
    """

    name = "distinct"
    batched = True

    def partition(self, step: Step, items, acc: Any = EMPTY) -> set:
        acc = set() if acc is EMPTY else set(acc)
        try:
            acc.update(items)
        except TypeError as exc:
            _raise_unhashable(self.name, items, exc)
        return acc

    def start(self) -> list[str]:
        return ["acc = set()"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["acc.add(x)"]

    def absorb(self, expr: str, many: bool = False) -> list[str]:
        return [f"acc.update({expr})"]

    def close(self) -> list[str]:
        return []

    def combine_two(self, a: set, b: set) -> set:
        a |= b
        return a

    def finish(self, partial: Any) -> list:
        return [] if partial is EMPTY else list(partial)


class Selection:
    """The parameters of a selection or order stage (``sortBy``, ``top``, ``takeOrdered``, ``take``):
    how many elements (``n``, None: all), the key function (None: the elements themselves) and the
    direction. It is the stage's function, called as the key."""

    __slots__ = ("n", "key", "reverse", "__qualname__")

    def __init__(self, n: int | None, key: Callable | None, reverse: bool, shown: str):
        self.n, self.key, self.reverse = n, key, reverse
        self.__qualname__ = shown

    def __call__(self, x: Any) -> Any:
        return x if self.key is None else self.key(x)

    def __reduce__(self):
        return (Selection, (self.n, self.key, self.reverse, self.__qualname__))


class _Ordered(_NoFunction):
    """A list-valued aggregate over a :class:`Selection`: partials are lists, closed at the end of
    each pass (sorted, or cut to the ``n`` that matter)."""

    takes_function = True
    batched = True

    def start(self) -> list[str]:
        return ["acc = []"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["acc.append(x)"]

    def partition(self, step: Step, items, acc: Any = EMPTY) -> list:
        acc = [] if acc is EMPTY else list(acc)
        acc.extend(items)
        try:
            return self.closed(step.func, acc)
        except TypeError as exc:
            raise ElementFailed(exc, NO_ITEM) from exc

    def closed(self, sel: Selection, acc: list) -> list:
        """Return the list ``acc`` closed as a pass closes it."""
        namespace = {"acc": acc, "fa": sel, "nlargest": heapq.nlargest, "nsmallest": heapq.nsmallest}
        exec("\n".join(self.close()), namespace)  # the very lines a compiled pass ends with
        return namespace["acc"]

    def finish(self, partial: Any) -> list:
        return [] if partial is EMPTY else partial


class SortBy(_Ordered):
    """``sortBy(key, ascending)``: the elements sorted by ``key(x)`` (the elements themselves when
    None). The sort is stable: elements with equal keys keep their input order, on every executor.

    Each partition's pass ends with its run sorted (``list.sort``); the sorted runs are merged with
    ``heapq.merge`` in the process that asks for the result. Memory: the whole input, once, there.
    """

    name = "sortBy"

    def absorb(self, expr: str, many: bool = False) -> list[str]:
        return [f"acc.extend({expr})"]

    def close(self) -> list[str]:
        return ["acc.sort(key=fa.key, reverse=fa.reverse)"]

    def combined(self, step: Step, partials: Iterable) -> Any:
        """Merge the sorted runs all at once (``heapq.merge``), never two by two."""
        runs = [p for p in partials if p is not EMPTY]
        if len(runs) <= 1:
            return runs[0] if runs else EMPTY
        sel = step.func
        return list(heapq.merge(*runs, key=sel.key, reverse=sel.reverse))


class SortByKey(SortBy):
    """``sortByKey(ascending)``: (key, value) pairs sorted by key, stably."""

    name = "sortByKey"
    pairs = True


class Top(_Ordered):
    """``top(n, key)``: the ``n`` largest elements, largest first (``takeOrdered``: the ``n``
    smallest, smallest first); of equal elements, the first met comes first. Memory: ``n`` elements
    per partition, plus a buffer of at most 65536 in a pass."""

    name = "top"

    def __init__(self, name: str = "top", pick: str = "nlargest"):
        self.name = name
        self.pick = pick

    def absorb(self, expr: str, many: bool = False) -> list[str]:
        if many:  # a whole batch: chosen from at once, never copied
            return [f"acc[:] = {self.pick}(fa.n, chain(acc, {expr}), key=fa.key)"]
        return [f"acc.extend({expr})", "if len(acc) > 65535:",
                f"    acc[:] = {self.pick}(fa.n, acc, key=fa.key)"]

    def close(self) -> list[str]:
        return [f"acc[:] = {self.pick}(fa.n, acc, key=fa.key)"]

    def combined(self, step: Step, partials: Iterable) -> Any:
        present = [p for p in partials if p is not EMPTY]
        if not present:
            return EMPTY
        sel = step.func
        pick = heapq.nlargest if self.pick == "nlargest" else heapq.nsmallest
        return pick(sel.n, chain.from_iterable(present), key=sel.key)


class Take(_Ordered):
    """``take(n)``: the first ``n`` elements, in input order (``first()``: the first element, an
    error naming the stage when there is none). The pass reads its whole input."""

    name = "take"

    def __init__(self, name: str = "take"):
        self.name = name

    def absorb(self, expr: str, many: bool = False) -> list[str]:
        return ["if len(acc) < fa.n:", f"    acc.extend({expr})"]

    def close(self) -> list[str]:
        return ["del acc[fa.n:]"]

    def combined(self, step: Step, partials: Iterable) -> Any:
        out: list = []
        for p in partials:
            if p is not EMPTY and len(out) < step.func.n:
                out.extend(p)
        del out[step.func.n:]
        return out

    def merge(self, step: Step, partials: Iterable) -> Any:
        result = self.combined(step, partials)
        if self.name == "first":
            if not result:
                raise PipelineError("first of an empty input")
            return result[0]
        return result


class Combiner:
    """The functions of a keyed fold (``combineByKey``, ``aggregateByKey``, ``foldByKey``,
    ``groupByKey``, ``countByKey``): make a key's first combiner from a value, fold a value into a
    combiner, merge two combiners. It is the stage's function (called, it merges two combiners)."""

    __slots__ = ("create", "merge_value", "merge_combiners", "__qualname__")

    def __init__(self, create: Callable, merge_value: Callable, merge_combiners: Callable, shown: str):
        self.create, self.merge_value, self.merge_combiners = create, merge_value, merge_combiners
        self.__qualname__ = shown

    def __call__(self, a: Any, b: Any) -> Any:
        return self.merge_combiners(a, b)

    def __reduce__(self):
        return (Combiner, (self.create, self.merge_value, self.merge_combiners, self.__qualname__))


class Zero:
    """``aggregateByKey``'s first combiner of a key: a fresh copy of the zero value folded with the
    key's first value (a copy per key, as PySpark: a mutable zero is never shared)."""

    __slots__ = ("zero", "seq")

    def __init__(self, zero: Any, seq: Callable):
        self.zero, self.seq = zero, seq

    def __call__(self, v: Any) -> Any:
        return self.seq(copy.deepcopy(self.zero), v)


def first_of(pair: Any) -> Any:
    """Return a pair's key (``sortByKey``'s key)."""
    return pair[0]


def one(v: Any) -> int:
    return 1


def plus_one(c: int, v: Any) -> int:
    return c + 1


def listed(v: Any) -> list:
    return [v]


def appended(c: list, v: Any) -> list:
    c.append(v)
    return c


def extended(a: list, b: list) -> list:
    a.extend(b)
    return a


class CombineByKey(Aggregate):
    """``combineByKey(create, merge_value, merge_combiners)`` and the keyed folds made of it:
    ``aggregateByKey(zero, seq, comb)``, ``foldByKey(zero, f)``, ``groupByKey()`` (each key's values
    in a list, in input order) and ``countByKey()`` (a dict ``{key: number of pairs}``, as PySpark's).
    Partials are dicts of combiners, one per key; memory is one combiner per distinct key (for
    ``groupByKey``, every value)."""

    keyed = False
    pairs = True
    needs_function = False

    def __init__(self, name: str, as_dict: bool = False):
        self.name = name
        self.as_dict = as_dict

    def prelude(self) -> list[str]:
        return ["create_ = fa.create", "merge_ = fa.merge_value"]

    def start(self) -> list[str]:
        return ["acc = {}"]

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["k, v = x", "if k in acc:", "    acc[k] = merge_(acc[k], v)", "else:",
                "    acc[k] = create_(v)"]

    def partition(self, step: Step, items, acc: Any = EMPTY) -> dict:
        acc = {} if acc is EMPTY else dict(acc)
        comb = step.func
        it = iter(items)
        try:
            for k, v in it:
                acc[k] = comb.merge_value(acc[k], v) if k in acc else comb.create(v)
        except Exception as exc:
            item = _failed_item(items, it)
            if _not_a_pair(item):
                raise _pair_error(self.name, item) from None
            if item is not NO_ITEM and isinstance(exc, TypeError) and not _hashable(item[0]):
                raise PipelineError(f"{self.name} needs hashable keys; got {type(item[0]).__name__} "
                                    f"{item[0]!r}", item=item) from None
            raise ElementFailed(exc, item) from exc
        return acc

    def combined(self, step: Step, partials: Iterable) -> Any:
        it = iter(partials)
        return merge_by_key(step.func.merge_combiners, it, into=next(it, {}))

    def merge(self, step: Step, partials: Iterable) -> Any:
        merged = self.combined(step, partials)
        return Counts(merged) if self.as_dict else list(merged.items())

    def rows(self, partial: Any) -> Iterable:
        return [partial]


class GroupByKey(CombineByKey):
    """``groupByKey()``: ``[(key, [its values in input order]), ...]`` (Dask bag's ``groupby`` with
    the key taken from pairs; ``foldby`` is ``aggregateByKey``). Memory: every value, once."""

    def start(self) -> list[str]:
        return ["acc = defaultdict(list)"]  # as a hand-written group: one lookup and an append

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["k, v = x", "acc[k].append(v)"]

    def partition(self, step: Step, items, acc: Any = EMPTY) -> dict:
        return defaultdict(list, super().partition(step, items, acc))

    def merge(self, step: Step, partials: Iterable) -> Any:
        return list(self.combined(step, partials).items())


class CountByKey(CombineByKey):
    """``countByKey()``: a dict ``{key: how many pairs have it}``."""

    def fold(self, add: bool, started: bool = False, keys_rare: bool = True) -> list[str]:
        return ["k, v = x", "acc[k] = acc.get(k, 0) + 1"]


def _raise_unhashable(op: str, items, exc: BaseException) -> None:
    bad = next((x for x in items if not _hashable(x)), NO_ITEM)
    if bad is not NO_ITEM:
        raise PipelineError(f"{op} needs hashable elements; got {type(bad).__name__} {bad!r}",
                            item=bad) from None
    raise ElementFailed(exc, NO_ITEM) from exc


def _add_counts(acc: dict, part: dict) -> None:
    """Add the counts of ``part`` into ``acc``."""
    for k, n in part.items():
        acc[k] = acc.get(k, 0) + n


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


class Walker(Protocol):
    """What a :class:`Whole` operator asks of the interpreter that applies it (an executor)."""

    def walk(self, pipeline: Any, value: Any, kwargs: dict, outer: StageInfo | None = None,
             branch: int | None = None) -> Any:
        """Return ``pipeline`` run on ``value`` (a branch or a nested pipeline)."""

    def collect(self, value: Any) -> Any:
        """Return ``value`` with the executor's datasets in it turned into lists."""

    def reusable(self, value: Any) -> Any:
        """Return ``value`` in a form that several branches can each read."""

    def bound(self, stage: Any, kwargs: dict) -> Callable:
        """Return the stage's function with its arguments bound."""

    def two_inputs(self, op: Any, left: Any, right: Any, info: StageInfo) -> Any:
        """Return the two-input operator ``op`` (:class:`TwoInputs`) applied to ``left`` and ``right``."""

    def sampled(self, value: Any, fraction: float, seed: int | None) -> Any:
        """Return ``sample(fraction, seed)`` of ``value``."""

    def indexed(self, value: Any) -> Any:
        """Return ``zipWithIndex()`` of ``value``."""


class Whole(Operator):
    """An operator the interpreter applies to the whole input (:meth:`apply`): it joins no fused pass."""

    joins_pass = False
    makes = None

    def partition(self, step: Step, items) -> list:
        raise TypeError(f"{self.name} runs on the whole input; it has no partition form")

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        raise TypeError(f"{self.name} runs on the whole input; it does not join a fused pass")

    @abstractmethod
    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        """Return the stage's result on ``value`` (``walker`` runs branches and nested pipelines)."""


class To(Whole):
    """``to(f)``: ``f`` called once on the whole input (a tuple is spread into arguments)."""

    name = "to"

    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        if stage.func is None:  # identity: a tuple passes through whole, not spread
            return walker.collect(value)
        if stage.nested is not None:
            return walker.walk(stage.nested, value, kwargs, info)
        return call_whole(walker.bound(stage, kwargs), walker.collect(value), info)


class Branching(Whole):
    """An operator with branches; a bare function given as a branch becomes a one-stage branch of
    the operator :attr:`bare` (``to`` for fork and split, ``map`` for forkMap and splitMap)."""

    branching = True

    def __init__(self, name: str, bare: Operator):
        self.name = name
        self.bare = bare


class Fork(Branching):
    """``fork(b1, b2, ...)``: a tuple of each branch's result on the same input."""

    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        shared = walker.reusable(value)
        return tuple(walker.walk(b, shared, kwargs, info, j) for j, b in enumerate(stage.branches))


class Split(Branching):
    """``split(b1, b2, ...)``: element i of a tuple or list input fed to branch i."""

    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        parts = walker.collect(value)
        if not isinstance(parts, (tuple, list)) or len(parts) != len(stage.branches):
            got = (f"{type(parts).__name__} of {len(parts)}"
                   if isinstance(parts, (tuple, list)) else type(parts).__name__)
            raise PipelineError(f"{info.describe()}: needs a tuple or list of {len(stage.branches)} "
                                f"elements, one per branch; got {got}", stage=info)
        return tuple(walker.walk(b, part, kwargs, info, j)
                     for j, (b, part) in enumerate(zip(stage.branches, parts)))


MAP, FLAT_MAP, FILTER, MAP_VALUES, FLAT_MAP_VALUES = Map(), FlatMap(), Filter(), MapValues(), FlatMapValues()
REDUCE, REDUCE_BY_KEY, TO = Reduce(), ReduceByKey(), To()
COUNT, SUM, STATS, MEAN, COUNT_BY_VALUE = Count(), Sum(), Stats(), Mean(), CountByValue()
MIN, MAX = _Extreme("min", "<", min), _Extreme("max", ">", max)
DISTINCT, SORT_BY, SORT_BY_KEY = Distinct(), SortBy(), SortByKey()
TOP, TAKE_ORDERED = Top("top", "nlargest"), Top("takeOrdered", "nsmallest")
TAKE, FIRST = Take(), Take("first")
COMBINE_BY_KEY, AGGREGATE_BY_KEY, FOLD_BY_KEY = (CombineByKey("combineByKey"), CombineByKey("aggregateByKey"),
                                                 CombineByKey("foldByKey"))
GROUP_BY_KEY, COUNT_BY_KEY = GroupByKey("groupByKey"), CountByKey("countByKey", as_dict=True)
FORK, FORK_MAP = Fork("fork", TO), Fork("forkMap", MAP)
SPLIT, SPLIT_MAP = Split("split", TO), Split("splitMap", MAP)

#: the operators, by their DSL names
OPERATORS: dict[str, Operator] = {op.name: op for op in (
    MAP, FLAT_MAP, FILTER, MAP_VALUES, FLAT_MAP_VALUES, REDUCE, REDUCE_BY_KEY, TO, FORK, FORK_MAP, SPLIT,
    SPLIT_MAP, COUNT, SUM, MIN, MAX, MEAN, STATS, COUNT_BY_VALUE, DISTINCT, SORT_BY, SORT_BY_KEY, TOP,
    TAKE_ORDERED, TAKE, FIRST, COMBINE_BY_KEY, AGGREGATE_BY_KEY, FOLD_BY_KEY, GROUP_BY_KEY, COUNT_BY_KEY)}


# == partitions and two inputs: keyBy, mapPartitions, union, join, leftOuterJoin, cogroup ==========

def key_by_partition(f: Callable, items) -> list:
    """Return ``[(f(x), x) for x in items]`` (the element is passed whole, as PySpark's ``keyBy``).

    >>> key_by_partition(len, ["ab", "c"])
    [(2, 'ab'), (1, 'c')]
    """
    it = iter(items)
    try:
        return [(f(x), x) for x in it]
    except Exception as exc:
        raise ElementFailed(exc, _failed_item(items, it)) from exc


def map_partitions_partition(f: Callable, items) -> list:
    """Return ``list(f(iterator over items))``: ``f`` sees a whole partition at once.

    >>> map_partitions_partition(lambda it: [sum(it)], [1, 2, 3])
    [6]
    """
    return list(f(iter(items)))


class KeyBy(Operator):
    """``keyBy(f)``: ``(f(x), x)`` for each element (``x`` passed whole, never spread)."""

    name = "keyBy"
    makes = "tuples"

    def partition(self, step: Step, items) -> list:
        return key_by_partition(step.func, items)

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        return [f"x = ({f}(x), x)"], False


class MapPartitions(Operator):
    """``mapPartitions(f)``: ``f(iterator)`` once per partition, its iterable's elements the result.

    It joins a fused pass without being part of its loop: the pass runs the element-wise stages
    before it as one compiled loop, hands their list to ``f``, and runs the stages after it as another
    loop, all in the same process (one round per run of narrow stages, as on Spark). What a partition is
    depends on the executor (a local chunk, a Spark partition, the whole input serially): a function
    whose result depends on where partitions end gives executor-dependent results, as on Spark."""

    name = "mapPartitions"
    whole_partition = True

    def partition(self, step: Step, items) -> list:
        return map_partitions_partition(step.func, items)

    def fuse(self, f: str, spread: str, n: int) -> tuple[list[str], bool]:
        raise TypeError("mapPartitions runs between compiled loops; it does not join one")


def _run_segments(steps: list[Step], items, aggregate: Step | None, acc: Any) -> Any:
    """Run a pass holding ``mapPartitions`` steps: the element-wise runs between them as compiled
    loops, each ``mapPartitions`` on the list the loop before it made."""
    segment: list[Step] = []
    for step in steps:
        if not step.op.whole_partition:
            segment.append(step)
            continue
        if segment:
            items, segment = run_steps(segment, items), []
        try:
            items = step.op.partition(step, items)
        except Exception as exc:
            raise _locate(exc, step.info) from None
    return run_steps(segment, items, aggregate, acc)


def _side_name(which: int) -> str:
    return ("left", "right")[which]


def _unhashable(op: str, which: int, item: Any) -> PipelineError:
    key = item[0]
    return PipelineError(f"{op} needs hashable keys; the {_side_name(which)} input has key "
                         f"{type(key).__name__} {key!r} in {item!r}", item=item)


def _bad_pair(op: str, which: int, items, it, exc: Exception) -> PipelineError:
    """Return the error for the element of one input of a two-input operator that stopped ``it``."""
    item = _failed_item(items, it)
    if item is NO_ITEM or _not_a_pair(item):
        shown = "" if item is NO_ITEM else f"; got {type(item).__name__} {item!r}"
        return PipelineError(f"{op} needs (key, value) pairs or a dict as its {_side_name(which)} "
                             f"input{shown}", item=item)
    if isinstance(exc, TypeError) and "unhashable" in str(exc):
        return _unhashable(op, which, item)
    return PipelineError(f"{op}: {type(exc).__name__}: {exc} at {item!r}", item=item)


def keyed_input(value: Any) -> list | tuple:
    """Return one input of a two-input operator as a sequence: a dict as its items."""
    if isinstance(value, dict):
        return list(value.items())
    return value if isinstance(value, (list, tuple)) else list(value)


def index_by_key(op: str, items, which: int = 1) -> dict:
    """Return ``{key: [values in order]}`` over (key, value) pairs (the indexed side of a join).

    >>> index_by_key("join", [("a", 1), ("b", 2), ("a", 3)])
    {'a': [1, 3], 'b': [2]}
    """
    index: dict = {}
    it = iter(items)
    try:
        for k, w in it:
            found = index.get(k)
            if found is None:
                index[k] = [w]
            else:
                found.append(w)
    except (TypeError, ValueError) as exc:
        raise _bad_pair(op, which, items, it, exc) from None
    return index


def check_pairs(op: str, items, which: int) -> None:
    """Raise the PipelineError :func:`index_by_key` would for ``items`` (not pairs, unhashable keys).

    >>> check_pairs("join", [("a", 1), ([2], 3)], 1)
    Traceback (most recent call last):
    ...
    atoll.errors.PipelineError: join needs hashable keys; the right input has key list [2] in ([2], 3)
    """
    it = iter(items)
    try:
        for k, _ in it:
            hash(k)
    except (TypeError, ValueError) as exc:
        raise _bad_pair(op, which, items, it, exc) from None


def join_pairs(left, right, outer: bool = False) -> list:
    """Return ``(k, (v, w))`` for each pair of the left and right inputs with equal keys, in the left
    input's order, then the right's; ``outer``: a left pair with no match gives ``(k, (v, None))``.

    >>> join_pairs([("a", 1), ("b", 2), ("a", 3)], [("a", "x"), ("a", "y")])
    [('a', (1, 'x')), ('a', (1, 'y')), ('a', (3, 'x')), ('a', (3, 'y'))]
    >>> join_pairs([("b", 2)], [], outer=True)
    [('b', (2, None))]
    """
    op = "leftOuterJoin" if outer else "join"
    index = index_by_key(op, right)
    out: list = []
    append = out.append
    get = index.get
    it = iter(left)
    try:
        if outer:
            for k, v in it:
                ws = get(k)
                if ws is None:
                    append((k, (v, None)))
                else:
                    for w in ws:
                        append((k, (v, w)))
        else:
            for k, v in it:
                ws = get(k)
                if ws is not None:
                    for w in ws:
                        append((k, (v, w)))
    except (TypeError, ValueError) as exc:
        raise _bad_pair(op, 0, left, it, exc) from None
    return out


def cogroup_pairs(left, right) -> list:
    """Return ``(k, ([left values], [right values]))`` for each key of either input, keys in order of
    first appearance (the left input's first).

    >>> cogroup_pairs([("a", 1), ("b", 2), ("a", 3)], [("c", 0), ("a", 9)])
    [('a', ([1, 3], [9])), ('b', ([2], [])), ('c', ([], [0]))]
    """
    lefts, rights = index_by_key("cogroup", left, 0), index_by_key("cogroup", right, 1)
    return [(k, (lefts.get(k, []), rights.get(k, []))) for k in chain(lefts, (k for k in rights
                                                                              if k not in lefts))]


def union_items(left, right) -> list:
    """Return the elements of the left input, then those of the right.

    >>> union_items([1, 2], (3,))
    [1, 2, 3]
    """
    return [*left, *right]


class TwoInputs(Whole):
    """An operator over two inputs: the two results of a ``fork`` (or any two-element tuple or list),
    or the pipeline's input and a keyed *side input*, a runtime keyword argument named at composition
    (``.join(side="profiles")``, then ``p(data, profiles={...})``).

    :meth:`combine` is the operator on two lists; executors may run it natively (Spark's ``RDD.join``
    and the rest) through their ``two_inputs``. A dict input is read as its (key, value) items.
    """

    #: it needs (key, value) pairs on both sides
    keyed = True
    takes_function = False

    def __init__(self, name: str, combine: Callable[[Any, Any], list], keyed: bool = True):
        self.name = name
        self._combine = combine
        self.keyed = keyed

    def combine(self, left: Any, right: Any) -> list:
        """Return the operator's result on two collections (in the executor's process)."""
        return self._combine(keyed_input(left), keyed_input(right))

    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        if stage.runtime_kwargs:  # a side input: the pipeline's value on the left
            left, right = value, kwargs[stage.runtime_kwargs[0]]
            if isinstance(right, (str, bytes)) or not isinstance(right, Iterable):
                raise PipelineError(f"{info.describe()}: the side input {stage.runtime_kwargs[0]!r} "
                                    f"must be a dict or a collection of (key, value) pairs; got "
                                    f"{type(right).__name__}", stage=info)
        else:
            pair = value if type(value) is tuple else walker.collect(value)  # a fork's: datasets kept
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                got = (f"{type(pair).__name__} of {len(pair)}" if isinstance(pair, (tuple, list))
                       else type(pair).__name__)
                raise PipelineError(f"{info.describe()}: needs two inputs (a fork of two branches, or "
                                    f"side='<runtime kwarg>'); got {got}", stage=info)
            left, right = pair
        for side in (left, right):
            if isinstance(side, (str, bytes)) or not (isinstance(side, Iterable) or
                                                      _is_dataset(walker, side)):
                raise PipelineError(f"{info.describe()}: each input must be a collection; got "
                                    f"{type(side).__name__}", stage=info)
        try:
            return walker.two_inputs(self, left, right, info)
        except PipelineError as exc:
            raise _locate(exc, info) from None


def _is_dataset(walker: Any, value: Any) -> bool:
    check = getattr(walker, "is_dataset", None)
    return bool(check and check(value))


def sample_items(items: Iterable, fraction: float, seed: int | None) -> list:
    """Return the elements kept by a Bernoulli draw of probability ``fraction`` each, in order, from
    one ``random.Random(seed)`` stream over the whole input (the same sample for the same seed).

    >>> sample_items(range(10), 0.5, 3) == sample_items(range(10), 0.5, 3)
    True
    """
    draw = random.Random(seed).random
    return [x for x in items if draw() < fraction]


def zip_with_index_items(items: Iterable) -> list:
    """Return ``(x, i)`` for the i-th element, counted from 0 in input order.

    >>> zip_with_index_items("ab")
    [('a', 0), ('b', 1)]
    """
    return list(zip(items, count()))


class Sample(Whole):
    """``sample(fraction, seed)``: each element kept with probability ``fraction`` (no replacement).

    Serial and local: one seeded stream over the whole input, read where the input is (the caller's
    process), so both give the same sample for the same seed whatever the chunks. Spark: its own
    ``RDD.sample(False, fraction, seed)``, seeded per partition: the same for the same seed and
    partitioning there, another sample than the serial and local executors'.
    """

    name = "sample"
    takes_function = False

    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        fraction, seed = stage.args
        return walker.sampled(_collection(walker, value, info, self.name), fraction, seed)


class ZipWithIndex(Whole):
    """``zipWithIndex()``: ``(x, i)`` with ``i`` the element's position in the input, on every
    executor (Spark's own ``RDD.zipWithIndex``, which counts each partition first)."""

    name = "zipWithIndex"
    takes_function = False

    def apply(self, walker: Walker, stage: Any, value: Any, kwargs: dict, info: StageInfo) -> Any:
        return walker.indexed(_collection(walker, value, info, self.name))


def _collection(walker: Any, value: Any, info: StageInfo, op: str) -> Any:
    """Return ``value`` if a whole-input operator can read it (a dict as its keys, as ``map``)."""
    if _is_dataset(walker, value):
        return value
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise PipelineError(f"{info.describe()}: {op} needs a collection; got {type(value).__name__}",
                            stage=info)
    return value


KEY_BY, MAP_PARTITIONS = KeyBy(), MapPartitions()
SAMPLE, ZIP_WITH_INDEX = Sample(), ZipWithIndex()
UNION = TwoInputs("union", union_items, keyed=False)
JOIN = TwoInputs("join", join_pairs)
LEFT_OUTER_JOIN = TwoInputs("leftOuterJoin", functools.partial(join_pairs, outer=True))
COGROUP = TwoInputs("cogroup", cogroup_pairs)
OPERATORS.update((op.name, op) for op in (KEY_BY, MAP_PARTITIONS, UNION, JOIN, LEFT_OUTER_JOIN, COGROUP,
                                          SAMPLE, ZIP_WITH_INDEX))
# == end of partitions and two inputs ================================================================


def operator_named(name: str) -> Operator:
    """Return the operator object of a DSL operator name (``"map"``, ``"reduceByKey"``, ...)."""
    return OPERATORS[name]


class Step(NamedTuple):
    """One element-wise or aggregate stage ready to run: operator, bound function, where it is."""

    op: Operator
    func: Callable
    info: StageInfo
    unpack: bool = True


# -- compiled fused passes -----------------------------------------------------------------------

_compiled: dict[tuple, Callable] = {}


def _spreads(steps: list[Step], kind: str) -> list[str]:
    """Return, per step, how its function takes a tuple element ("yes", "no", "check", "try"),
    following the kind of elements (``kind`` is the input's) through the steps."""
    out = []
    for step in steps:
        if not (step.unpack and step.op.spreads):
            out.append("no")
        else:
            spread = {"plain": "no", "tuples": "yes"}.get(kind, "check")
            out.append("try" if spread == "check" and _refuses_tuples(step.func) else spread)
        kind = step.op.output_kind(step.func, kind)
    return out


def pass_source(steps: list[Step], aggregate: Step | None, kind: str = "mixed",
                keys_rare: bool = True) -> str:
    """Return the Python source of the fused pass over ``steps`` then ``aggregate``: one ``for``
    loop, the user's functions as locals, a filter an ``if``, a flatMap an inner loop, the aggregate
    folded into ``acc`` in place (from ``acc`` when the pass is given a partial result to go on from).

    ``kind`` is what the input's elements are: ``"plain"`` (no tuples), ``"tuples"`` or
    ``"mixed"`` (not known: a map asks each element's type, see ``_call``). ``keys_rare`` chooses
    how a ``reduceByKey`` folds (see ``run_steps``).

    >>> info = StageInfo(0, "map", "f")
    >>> print(pass_source([Step(OPERATORS["filter"], bool, info)], None))
    def fused_pass(items, fs, fa, EMPTY, acc=EMPTY):
        f0, = fs
        out = []
        append = out.append
        for x in items:
            if not f0(x):
                continue
            append(x)
        return out
    """
    names = [f"f{i}" for i in range(len(steps))]
    spreads = _spreads(steps, kind)
    lines = ["def fused_pass(items, fs, fa, EMPTY, acc=EMPTY):"]
    if steps:
        lines.append(f"    {', '.join(names)}, = fs")
    checked = [f"p{n} = q{n} = None" for n, spread in enumerate(spreads) if spread == "check"]
    if checked:  # the builtin as a local: one load fewer per test
        checked.append("typeof = type")
    lines += ["    " + line for line in checked]

    def body(depth: int) -> tuple[list[str], int]:
        """The steps' lines inside the loop over ``x`` (at ``depth``), and the depth they end at."""
        out: list[str] = []
        for n, (step, name, spread) in enumerate(zip(steps, names, spreads)):
            more, opens = step.op.fuse(name, spread, n)
            out += ["    " * depth + line for line in more]
            depth += opens
        return out, depth

    def folded(fold: list[str]) -> list[str]:
        inner, depth = body(2)
        # ``x = f(x)`` then ``k, v = x``: one line, ``k, v = f(x)``, with no store of ``x`` between
        if inner and fold and fold[0].endswith(" = x") and inner[-1].startswith("    " * depth + "x = "):
            last = inner.pop()
            fold = [fold[0][:-1] + last.lstrip()[4:], *fold[1:]]
        return inner + ["    " * depth + line for line in fold]

    if aggregate is None:
        lines += ["    out = []", "    append = out.append", "    for x in items:", *folded(["append(x)"]),
                  "    return out"]
        return "\n".join(lines)
    lines += ["    " + line for line in aggregate.op.prelude()]
    if getattr(aggregate.op, "batched", False):
        return "\n".join(lines + _batched_lines(aggregate.op, body, steps, spreads))
    op, add, start = aggregate.op, aggregate.func is operator.add, aggregate.op.start()
    lines += ["    if acc is EMPTY:", *["        " + line for line in start]] if start else []
    if op.peels and body(2)[1] == 2:  # no inner loop: the first element is folded in a loop of its own
        first, _ = body(3)
        lines += ["    it = iter(items)", "    if acc is EMPTY:", "        for x in it:", *first,
                  "            acc = x", "            break", "    for x in it:",
                  *folded(op.fold(add, True, keys_rare))]
    else:
        lines += ["    for x in items:", *folded(op.fold(add, keys_rare=keys_rare))]
    lines.append("    return acc")
    return "\n".join(lines)


def _batched_lines(op: Aggregate, body: Callable[[int], tuple[list[str], int]], steps: list[Step],
                   spreads: list[str]) -> list[str]:
    """Return the loop of a pass whose aggregate takes elements many at a time, in C (``countByValue``
    counts them with ``collections.Counter``'s loop, ``distinct`` adds them to a set, ...): the
    elements go to a buffer taken every 65536 of them, or, when the last stage opens a loop over an
    iterable (a ``flatMap``), that iterable is taken whole where the loop would be, and with no stage
    at all the input is taken whole."""
    inner, depth = body(2)
    last = inner[-1].strip() if inner else ""
    lines = ["    if acc is EMPTY:", *["        " + line for line in op.start()]]
    if not inner:
        return [*lines, *["    " + line for line in [*op.absorb("items", True), *op.close()]],
                "    return acc"]
    if op is COUNT_BY_VALUE and len(steps) == 1 and steps[0].op is FLAT_MAP and spreads[0] in ("no", "try"):
        # W3's flatMap(str.split).countByValue(): no Python loop at all, the parts counted as ``map``
        # makes them. A method of str refuses a tuple with a TypeError before doing anything: then the
        # counts made so far are dropped and the loop below spreads the tuples.
        fast = ["    part = {}", "    count_elements(part, chain.from_iterable(map(f0, items)))",
                "    if acc:", "        add_counts(acc, part)", "    else:", "        acc = part",
                "    return acc"]
        if spreads[0] == "no":
            return lines + fast
        lines += ["    try:", *["    " + line for line in fast], "    except TypeError:", "        pass"]
    if depth > 2 and last.startswith("for x in ") and last.endswith(":"):
        indent = inner[-1][:len(inner[-1]) - len(inner[-1].lstrip())]
        inner[-1:] = [indent + line for line in op.absorb(last[len("for x in "):-1])]
        return lines + ["    for x in items:", *inner, *["    " + line for line in op.close()],
                        "    return acc"]
    return lines + ["    out = []", "    append = out.append", "    for x in items:",
                    "        if len(out) > 65535:",
                    *["            " + line for line in op.absorb("out", True)],
                    "            out.clear()", *inner, "    " * depth + "append(x)",
                    *["    " + line for line in [*op.absorb("out", True), *op.close()]], "    return acc"]


def compiled_pass(steps: list[Step], aggregate: Step | None, kind: str = "mixed",
                  keys_rare: bool = True) -> Callable:
    """Return the compiled fused pass for these steps, compiled once per signature in each process.

    The signature is the operators, how each takes tuple elements, the aggregate, whether its
    function is ``operator.add`` and how a fold by key is written (``keys_rare``); the functions
    themselves are arguments, so pipelines of the same shape share one compiled pass. It is called
    as ``fused_pass(items, functions, aggregate's function, EMPTY)``, or with a fifth argument, a
    partial aggregate to fold on into.
    """
    key = (tuple((s.op.name, spread) for s, spread in zip(steps, _spreads(steps, kind))),
           None if aggregate is None else (aggregate.op.name, aggregate.func is operator.add,
                                           aggregate.op.keyed and keys_rare))
    found = _compiled.get(key)
    if found is None:
        namespace: dict[str, Any] = {"EMPTY": EMPTY, "count_elements": count_elements,
                                     "nlargest": heapq.nlargest, "nsmallest": heapq.nsmallest,
                                     "identity": identity, "defaultdict": defaultdict, "chain": chain,
                                     "add_counts": _add_counts}
        exec(compile(pass_source(steps, aggregate, kind, keys_rare), "<atoll fused pass>", "exec"),
             namespace)
        found = _compiled[key] = namespace["fused_pass"]
    return found


def run_steps(steps: Iterable[Step], items, aggregate: Step | None = None, acc: Any = EMPTY,
              rerun: Callable[[], Any] | None = None) -> Any:
    """Run a fused chain of element-wise steps over one partition, then its aggregate if any.

    Returns the resulting list, or the partial aggregate (see :func:`reduce_partition`,
    :func:`reduce_by_key_partition`), folded on from ``acc`` when given (a partial aggregate of the
    partitions before this one, which the pass may change in place). The steps run as one compiled
    loop (:func:`compiled_pass`).

    A ``reduceByKey`` stage learns how to fold from its passes in this process: with a lookup in a
    ``try`` while new keys are rare (a word count: one lookup per pair), with ``dict.get`` when the
    ``KeyError`` of each new key would cost more than a twentieth of the pass (keys mostly distinct:
    2.5x faster there). Its first pass, with nothing learnt, uses ``dict.get``.

    Under a ``skip`` or ``collect`` error policy (:mod:`atoll.dead_letters`), a pass that raises is
    run again one element at a time and the failing elements are dropped (:func:`_salvaged`).

    Otherwise, if anything raises, the partition is run again stage by stage (each operator's
    :meth:`Operator.partition`) to name the stage and the element that failed (so on failure,
    functions before the failing one may run twice on that partition), or by ``rerun()`` when given
    (which must raise the located error when the failure recurs). A failure that does not recur in
    that second run is raised all the same, never swallowed.

    >>> info = StageInfo(0, "map", "f")
    >>> run_steps([Step(OPERATORS["map"], lambda x: x + 1, info)], [1, 2],
    ...           Step(OPERATORS["reduce"], max, info))
    3
    """
    steps = list(steps)
    if not isinstance(items, (list, tuple, range)):
        items = list(items)
    salvage = dead_letters.current()
    if salvage is not None and aggregate is not None and acc is not EMPTY:
        # from nothing, then combined: a pass that fails must leave the partial before it as it was
        return combine_partials(aggregate, [acc, run_steps(steps, items, aggregate, rerun=rerun)])
    if any(s.op.whole_partition for s in steps):  # mapPartitions
        return _run_segments(steps, items, aggregate, acc)
    if salvage is not None and (steps or aggregate is not None):
        return _run_salvaging(salvage, steps, items, aggregate)
    try:
        return _fused(steps, items, aggregate, acc)
    except _interruptions:
        raise
    except Exception as exc:
        first = exc
    logger.debug("fused pass failed; running it stage by stage to locate the failure")
    with capture.paused():  # what the first run printed is recorded once
        if rerun is None:
            _run_staged(steps, items, aggregate, acc)  # raises the located error when the failure recurs
        else:
            rerun()
    # It did not recur (a function that fails only now and then): the first failure stands, located
    # by the user function its traceback passes through.
    step = _step_in_traceback(first, [*steps, aggregate] if aggregate else steps)
    logger.warning("%s: failed once and not when run again stage by stage; reporting the first failure",
                   step.info.describe())
    raise _locate(first, step.info) from None


def _fused(steps: list[Step], items, aggregate: Step | None, acc: Any) -> Any:
    """Return the compiled pass's result over ``items`` (see :func:`run_steps`)."""
    keyed = aggregate is not None and aggregate.op.keyed
    keys_rare = keyed and _keys_rare(aggregate.info)
    fused = compiled_pass(steps, aggregate, "plain" if type(items) is range else "mixed", keys_rare)
    known = len(acc) if keyed and acc is not EMPTY else 0  # a pass folds into ``acc`` in place
    started = time.perf_counter() if keyed else 0.0  # what a fold by key learns from
    result = fused(items, tuple(s.func for s in steps), aggregate and aggregate.func, EMPTY, acc)
    if keyed:
        _learn_keys(aggregate.info, len(result) - known, time.perf_counter() - started)
    return result


_interruptions: tuple[type[BaseException], ...] = ()

#: elements run at once when a failed pass is run again element by element (its intermediates)
SALVAGE_SLICE = 65536
#: the slice sizes a failed pass is compiled again in under ``skip`` or ``collect``, largest first,
#: before the elements of a smallest slice that still raises are run one at a time: the element by
#: element run (about 5x slower than a compiled pass) meets only the slices holding a failure
SALVAGE_SLICES = (4096, 64)


def _pass_path(steps: list[Step], aggregate: Step | None) -> str:
    """Return the path of a pass's first stage: the name its elements are counted under."""
    info = (steps[0] if steps else aggregate).info
    return info.path or str(info.index)


def _run_salvaging(salvage: Salvage, steps: list[Step], items, aggregate: Step | None) -> Any:
    """Run the pass as :func:`run_steps` does under ``skip`` or ``collect``: the compiled pass over the
    whole input first; if it raises, again over slices of :data:`SALVAGE_SLICES` elements, then of
    the next size within a slice that raises, and only within the smallest slices that raise one
    element at a time (:func:`_salvaged`). What nested pipelines dropped in a compiled run that
    failed is forgotten: the next run meets those failures again."""
    where = _pass_path(steps, aggregate)
    salvage.entered(where, len(items))
    return _in_slices(salvage, where, steps, items, aggregate, (len(items), *SALVAGE_SLICES))


def _in_slices(salvage: Salvage, where: str, steps: list[Step], items, aggregate: Step | None,
               sizes: tuple[int, ...]) -> Any:
    """Return the pass over ``items`` compiled a slice of ``sizes[0]`` elements at a time, a slice
    that raises run again in the next size down (see :func:`_run_salvaging`); the slices' results
    joined in order (partial aggregates combined)."""
    size, smaller = max(sizes[0], 1), tuple(s for s in sizes[1:] if s < sizes[0])
    parts = []
    for at in range(0, max(len(items), 1), size):
        part = items[at:at + size]
        with dead_letters.salvaging(salvage.policy) as inner:
            try:
                result = _fused(steps, part, aggregate, EMPTY)
            except (*_interruptions, TooManyErrors):
                raise
            except Exception:
                inner = None
        if (inner is None and aggregate is not None and steps and len(part) <= SALVAGE_SLICES[0]
                and not _sort_key(aggregate)):
            # the element-wise stages' results of the slice (a bounded list), then one fold over them:
            # no partial per smaller slice to combine
            outputs = (_in_slices(salvage, where, steps, part, None, smaller) if smaller
                       else _salvaged(salvage, where, steps, part, None))
            result = _folded(aggregate, outputs)
        elif inner is None:
            result = (_in_slices(salvage, where, steps, part, aggregate, smaller) if smaller
                      else _salvaged(salvage, where, steps, part, aggregate))
        elif inner.skipped or inner.passes:  # what nested pipelines dropped in a slice that ran
            salvage.merge(inner.export())
        parts.append(result)
    if len(parts) == 1:
        return parts[0]
    if aggregate is None:
        return list(chain.from_iterable(parts))
    return combine_partials(aggregate, parts)


def _folded(aggregate: Step, items: list) -> Any:
    """Return ``aggregate``'s partial over ``items`` (one compiled pass); its failure located."""
    try:
        return _fused([], items, aggregate, EMPTY)
    except (*_interruptions, TooManyErrors):
        raise
    except Exception:
        return _run_staged([], items, aggregate)  # raises the located error when it recurs


def _sort_key(aggregate: Step) -> Callable | None:
    """Return the key function of a ``sortBy``, ``top`` or ``takeOrdered`` stage (None for others)."""
    return getattr(aggregate.func, "key", None) if isinstance(aggregate.op, _Ordered) else None


def _salvaged(salvage: Salvage, where: str, steps: list[Step], items, aggregate: Step | None) -> Any:
    """Return the pass's result with the elements whose element-wise stage (or sort key) raises dropped
    and given to ``salvage``: each input element alone through every stage, so the failures come in
    input order (then stage order) however the input is cut into chunks and partitions; an aggregate
    folds a slice of the results at a time. A failure of the aggregate's own function is raised,
    located at its stage."""
    out: list = []
    acc = EMPTY
    for at in range(0, max(len(items), 1), SALVAGE_SLICE):
        part: list = []
        for x in items[at:at + SALVAGE_SLICE]:
            each = [x]
            for step in steps:
                each = _each_salvaged(salvage, where, step, each)
                if not each:
                    break
            if aggregate is not None and each:
                each = _keys_salvaged(salvage, where, aggregate, each)
            part += each
        if aggregate is None:
            out += part
            continue
        try:
            acc = aggregate.op.partition(aggregate, part, acc)
        except ElementFailed as failed:
            raise _locate(failed.original, aggregate.info, failed.item) from None
        except Exception as exc:
            raise _locate(exc, aggregate.info) from None
    return out if aggregate is None else acc


def _each_salvaged(salvage: Salvage, where: str, step: Step, items) -> list:
    """Return ``step`` run over ``items`` one element at a time, the failing ones given to ``salvage``."""
    out: list = []
    extend = out.extend
    partition = step.op.partition
    for x in items:
        try:
            extend(partition(step, [x]))
        except (*_interruptions, TooManyErrors):
            raise
        except ElementFailed as failed:
            if isinstance(failed.original, TooManyErrors):  # from a nested pipeline's own salvage
                raise failed.original from None
            salvage.failed(where, step.info, x if failed.item is NO_ITEM else failed.item, failed.original)
        except Exception as exc:
            salvage.failed(where, step.info, x, exc)
    return out


def _keys_salvaged(salvage: Salvage, where: str, aggregate: Step, items) -> list:
    """Return ``items`` without those whose sort key (``sortBy``, ``top``, ``takeOrdered``) raises."""
    key = _sort_key(aggregate)
    if key is None:
        return items
    out = []
    for x in items:
        try:
            key(x)
        except (*_interruptions, TooManyErrors):
            raise
        except Exception as exc:
            salvage.failed(where, aggregate.info, x, exc)
            continue
        out.append(x)
    return out


#: per reduceByKey stage: what its recent passes' new keys would cost folded with KeyErrors, and
#: how long those passes took (seconds both; see :func:`run_steps`)
_keys_seen: dict[StageInfo, list[float]] = {}


def _keys_rare(stage: StageInfo) -> bool:
    """Return True when a try fold's KeyErrors cost a ``stage`` under 1/20 of its recent passes."""
    seen = _keys_seen.get(stage)
    return seen is not None and seen[0] < seen[1] / 20


@functools.cache
def _key_error_seconds() -> float:
    """Return what a missed lookup caught as a KeyError costs here (measured once per process)."""
    missing: dict = {}
    start = time.perf_counter()
    for i in range(256):
        try:
            missing[i]
        except KeyError:
            pass
    return (time.perf_counter() - start) / 256


def _learn_keys(stage: StageInfo, new_keys: int, seconds: float) -> None:
    """Add a pass of ``stage`` that met ``new_keys`` in ``seconds`` to what it has learnt. Passes are
    summed, not judged one by one (the first of a fresh partial meets every key as new), and the sums
    halve past a second of passes, so that the last second or two of them count."""
    seen = _keys_seen.get(stage)
    if seen is None:
        if len(_keys_seen) >= 1024:
            _keys_seen.clear()  # a bound on the memory; what is forgotten is learnt again
        seen = _keys_seen[stage] = [0.0, 0.0]
    seen[0] += new_keys * _key_error_seconds()
    seen[1] += seconds
    if seen[1] > 1.0:
        seen[0] /= 2
        seen[1] /= 2


def never_rerun(*types: type[BaseException]) -> None:
    """Let exceptions of ``types`` leave :func:`run_steps` as they are, with no locating re-run.

    For exceptions that interrupt a pass from outside rather than come from a user function: Celery's
    soft time limit is raised by a signal wherever the pass happens to be, and a re-run would start the
    work again after the limit.
    """
    global _interruptions
    _interruptions = tuple(dict.fromkeys((*_interruptions, *types)))


def _step_in_traceback(exc: BaseException, steps: list[Step]) -> Step:
    """Return the first step whose function appears in ``exc``'s traceback (the first step if none)."""
    codes = set()
    tb = exc.__traceback__
    while tb is not None:
        codes.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    for step in steps:
        func = step.func
        while getattr(func, "func", None) is not None:  # functools.partial, bound arguments
            func = func.func
        if getattr(func, "__code__", None) in codes:
            return step
    return steps[0]


def _run_staged(steps: list[Step], items, aggregate: Step | None, acc: Any = EMPTY) -> Any:
    """Return the pass's result computed one stage at a time, the aggregate folded on from ``acc``
    (a copy of it); raise a located error on failure."""
    for step in [*steps, aggregate] if aggregate is not None else steps:
        try:
            if step is aggregate:
                items = step.op.partition(step, items, acc)
            else:
                items = step.op.partition(step, items)
        except ElementFailed as failed:
            raise _locate(failed.original, step.info, failed.item) from None
        except Exception as exc:
            raise _locate(exc, step.info) from None
    return items if aggregate is not None or type(items) is list else list(items)


class _Partials:
    """Iterates over partial aggregates and keeps the exception their source raised, if any.

    An executor's partials may come lazily, from chunks still running: what getting the next one
    raises (a chunk's own failure, located at its stage already; a worker that died; an exception from
    a signal handler) is not a failure of the stage merging them, and leaves the merge as it is.
    """

    __slots__ = ("items", "raised")

    def __init__(self, partials: Iterable):
        self.items = iter(partials)
        self.raised: BaseException | None = None

    def __iter__(self):
        return self

    def __next__(self) -> Any:
        try:
            return next(self.items)
        except StopIteration:
            raise
        except BaseException as exc:
            self.raised = exc
            raise


def merge_partials(aggregate: Step, partials: Iterable) -> Any:
    """Combine partial aggregates from :func:`run_steps` into the stage's final result.

    A failure of the stage's function is located at the stage; an exception raised while getting a
    partial (see :class:`_Partials`) is raised as it is.
    """
    partials = _Partials(partials)
    try:
        return aggregate.op.merge(aggregate, partials)
    except Exception as exc:
        if exc is partials.raised:
            partials.raised = None  # no cycle from the exception's frames back to it
            raise
        raise _locate(exc, aggregate.info) from None


def combine_partials(aggregate: Step, partials: Iterable) -> Any:
    """Combine partial aggregates of consecutive partitions, in order, into one partial aggregate."""
    try:
        return aggregate.op.combined(aggregate, partials)
    except Exception as exc:
        raise _locate(exc, aggregate.info) from None


def call_whole(func: Callable, value: Any, info: StageInfo) -> Any:
    """Call a whole-input function (``to``): a tuple value is spread into arguments."""
    try:
        return func(*value) if isinstance(value, tuple) else func(value)
    except Exception as exc:
        raise _locate(exc, info) from None
