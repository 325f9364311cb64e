"""What each operator does to one partition: pure functions shared by every executor.

A partition is a list (or a range). Element-wise operators return a new list; the aggregates return a
partial result that :func:`merge_reduced` / :func:`merge_by_key` combine across partitions. The loops are
the C-level builtins (``map``, ``filter``, ``itertools.starmap``) so a fused run of stages costs little more
than the user's functions themselves. When a function raises, the element it was given is found from the
position of the input iterator. :func:`run_steps` chains a fused pass lazily and, only when it fails,
runs it again stage by stage to name the stage and element.
"""

from __future__ import annotations

import functools
import logging
import operator
import traceback
from collections.abc import Callable, Iterable
from itertools import chain, starmap
from typing import Any, NamedTuple

from atoll.errors import NO_ITEM, PipelineError, StageFailure, StageInfo, stage_failure

__all__ = [
    "EMPTY", "Step", "ElementFailed", "map_partition", "flat_map_partition", "filter_partition",
    "map_values_partition", "flat_map_values_partition", "reduce_partition",
    "reduce_by_key_partition", "merge_reduced", "merge_by_key", "run_steps", "call_whole", "never_rerun",
]


logger = logging.getLogger(__name__)


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
        return f(*x) if isinstance(x, tuple) else f(x)
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


def reduce_partition(f: Callable, items) -> Any:
    """Return the left fold of ``items`` with ``f``, or :data:`EMPTY` for an empty partition.

    >>> reduce_partition(lambda a, b: a + b, [1, 2, 3]), reduce_partition(max, [])
    (6, EMPTY)
    """
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
    """Return the per-key fold of several partial dictionaries.

    >>> merge_by_key(lambda a, b: a + b, [{"a": 1}, {"a": 2, "b": 5}])
    {'a': 3, 'b': 5}
    """
    acc = {} if into is None else into
    for part in partials:
        for k, v in part.items():
            acc[k] = f(acc[k], v) if k in acc else v
    return acc


class Step(NamedTuple):
    """One element-wise or aggregate stage ready to run: operator, bound function, where it is."""

    op: str
    func: Callable
    info: StageInfo
    unpack: bool = True


_ELEMENTWISE = {
    "map": lambda s, items: map_partition(s.func, items, s.unpack),
    "flatMap": lambda s, items: flat_map_partition(s.func, items, s.unpack),
    "filter": lambda s, items: filter_partition(s.func, items),
    "mapValues": lambda s, items: map_values_partition(s.func, items),
    "flatMapValues": lambda s, items: flat_map_values_partition(s.func, items),
}


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


def run_steps(steps: Iterable[Step], items, aggregate: Step | None = None) -> Any:
    """Run a fused chain of element-wise steps over one partition, then its aggregate if any.

    Returns the resulting list, or the partial aggregate (see :func:`reduce_partition`,
    :func:`reduce_by_key_partition`). The steps are chained lazily, as one pass with no intermediate
    lists except before a ``map``/``flatMap`` that must know whether its elements are tuples. If
    anything raises, the partition is run again stage by stage to name the stage and the element that
    failed (so on failure, functions before the failing one may run twice on that partition). A failure
    that does not recur in that second run is raised all the same, never swallowed.

    >>> info = StageInfo(0, "map", "f")
    >>> run_steps([Step("map", lambda x: x + 1, info)], [1, 2], Step("reduce", max, info))
    3
    """
    steps = list(steps)
    if not isinstance(items, (list, tuple, range)):
        items = list(items)
    try:
        return _run_fused(steps, items, aggregate)
    except _interruptions:
        raise
    except Exception as exc:
        first = exc
    logger.debug("fused pass failed; running it stage by stage to locate the failure")
    _run_staged(steps, items, aggregate)  # raises the located error when the failure recurs
    # It did not recur (a function that fails only now and then): the first failure stands, located
    # by the user function its traceback passes through.
    item = NO_ITEM
    if isinstance(first, ElementFailed):
        first, item = first.original, first.item
    step = _step_in_traceback(first, [*steps, aggregate] if aggregate else steps)
    logger.warning("%s: failed once and not when run again stage by stage; reporting the first failure",
                   step.info.describe())
    raise _locate(first, step.info, item) from None


_interruptions: tuple[type[BaseException], ...] = ()


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


def _run_fused(steps: list[Step], items, aggregate: Step | None) -> Any:
    """Return the pass's result computed as one lazy chain of C-level iterators."""
    stream = items
    sequence = True  # ``stream`` is a list, tuple or range, not a lazy iterator
    for step in steps:
        f = step.func
        if step.op in ("map", "flatMap"):
            if step.unpack:
                if not sequence:
                    stream = list(stream)
                stream = _applied(f, stream, iter(stream), True)
            else:
                stream = map(f, stream)
            if step.op == "flatMap":
                stream = chain.from_iterable(stream)
        elif step.op == "filter":
            stream = filter(f, stream)
        elif step.op == "mapValues":
            stream = _lazy_map_values(f, stream)
        else:  # flatMapValues
            stream = _lazy_flat_map_values(f, stream)
        sequence = False
    if aggregate is None:
        return stream if type(stream) is list else list(stream)
    if aggregate.op == "reduce":
        it = iter(stream)
        first = next(it, EMPTY)
        return first if first is EMPTY else functools.reduce(aggregate.func, it, first)
    return reduce_by_key_partition(aggregate.func, stream)


def _lazy_map_values(f: Callable, stream: Iterable) -> Iterable:
    # a function of its own so that ``f`` is bound now: a generator expression written in the loop
    # of _run_fused would look ``f`` up when it runs, and find the last stage's function
    return ((k, f(v)) for k, v in stream)


def _lazy_flat_map_values(f: Callable, stream: Iterable) -> Iterable:
    return ((k, w) for k, v in stream for w in f(v))


def _run_staged(steps: list[Step], items, aggregate: Step | None) -> Any:
    """Return the pass's result computed one stage at a time; raise a located error on failure."""
    for step in steps:
        try:
            items = _ELEMENTWISE[step.op](step, items)
        except ElementFailed as failed:
            raise _locate(failed.original, step.info, failed.item) from None
        except Exception as exc:
            raise _locate(exc, step.info) from None
    if aggregate is None:
        return items if type(items) is list else list(items)
    try:
        if aggregate.op == "reduce":
            return reduce_partition(aggregate.func, items)
        return reduce_by_key_partition(aggregate.func, items)
    except ElementFailed as failed:
        raise _locate(failed.original, aggregate.info, failed.item) from None
    except Exception as exc:
        raise _locate(exc, aggregate.info) from None


def merge_partials(aggregate: Step, partials: Iterable) -> Any:
    """Combine partial aggregates from :func:`run_steps` into the stage's final result."""
    try:
        if aggregate.op == "reduce":
            result = merge_reduced(aggregate.func, partials)
            if result is EMPTY:
                raise PipelineError("nothing to reduce: the input is empty")
            return result
        return list(merge_by_key(aggregate.func, partials).items())
    except Exception as exc:
        raise _locate(exc, aggregate.info) from None


def call_whole(func: Callable, value: Any, info: StageInfo) -> Any:
    """Call a whole-input function (``to``): a tuple value is spread into arguments."""
    try:
        return func(*value) if isinstance(value, tuple) else func(value)
    except Exception as exc:
        raise _locate(exc, info) from None
