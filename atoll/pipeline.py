"""The Pipeline DSL: an immutable description of stages. Nothing runs here; executors run pipelines.

>>> p = Pipeline(name="double-sum").map(lambda x: x * 2).reduce(lambda a, b: a + b)
>>> p([1, 2, 3])
12
>>> p
Pipeline(name='double-sum') map(<lambda>) -> reduce(<lambda>)
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import add as ops_add
from typing import Any

from atoll import dead_letters
from atoll import operators as ops
from atoll.dead_letters import ErrorPolicy
from atoll.errors import MissingKwargsError, PipelineError

__all__ = ["Pipeline", "Stage", "NARROW", "AGGREGATE", "BRANCHING", "TWO_INPUTS", "WHOLE_NO_FUNCTION",
           "RESERVED_KWARGS",
           "runs_on"]

#: element-wise operators: fused into one pass over a partition
NARROW = tuple(op.name for op in ops.OPERATORS.values()
               if op.joins_pass and not isinstance(op, ops.Aggregate))
#: operators that fold a collection; combined inside each partition before merging
AGGREGATE = tuple(op.name for op in ops.OPERATORS.values() if isinstance(op, ops.Aggregate))
#: operators whose branches each see the input (fork*) or one element of it (split*)
BRANCHING = tuple(op.name for op in ops.OPERATORS.values() if op.branching)
#: operators that take no function (zipWithIndex, sample) and do not branch or take two inputs
WHOLE_NO_FUNCTION = tuple(op.name for op in ops.OPERATORS.values()
                          if not op.takes_function and not isinstance(op, ops.TwoInputs | ops.Aggregate))
#: operators over two inputs (a fork's two results, or the input and a side input)
TWO_INPUTS = tuple(op.name for op in ops.OPERATORS.values() if isinstance(op, ops.TwoInputs))
#: names a runtime keyword argument cannot take: they choose how a pipeline runs
RESERVED_KWARGS = frozenset({"n_jobs", "serial", "distributed", "executor", "progress", "on_error",
                             "max_errors"})

#: returns the executor that ``Pipeline.__call__``'s keyword arguments ask for; set by
#: :mod:`atoll.executors` when it is imported (importing ``atoll`` always imports it), so that this
#: description of a pipeline does not import the layer that runs it
_choose_executor: Callable[..., Any] | None = None


def runs_on(choose_executor: Callable[..., Any]) -> None:
    """Set the function that chooses the executor of ``Pipeline.run`` and ``Pipeline.__call__``."""
    global _choose_executor
    _choose_executor = choose_executor


def function_name(func: Any) -> str:
    """Return a short readable name for a stage's function."""
    if func is None:
        return "identity"
    if isinstance(func, Pipeline):
        return repr(func.name) if func._name else "Pipeline"
    inner = getattr(func, "func", None)  # functools.partial
    if inner is not None and hasattr(func, "args"):
        return function_name(inner)
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__


def _fingerprint(func: Any) -> str:
    """Return a stable description of a function for provenance: its module, name and code."""
    if func is None:
        return "identity"
    if isinstance(func, Pipeline):
        return func.sig
    code = getattr(func, "__code__", None)
    module = getattr(func, "__module__", "") or ""
    text = f"{module}.{function_name(func)}"
    if code is not None:
        text += ":" + hashlib.md5(_code_text(code).encode()).hexdigest()[:12]
    return text


def _code_text(code: Any) -> str:
    """Return a description of a code object that is the same in every process.

    ``repr(co_consts)`` is not: a nested code object (a comprehension, an inner lambda) shows its
    memory address and a frozenset constant its hash order. The global names read (``co_names``) are
    included so that ``lambda x: len(x)`` and ``lambda x: sum(x)`` differ.
    """
    consts = []
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            consts.append("<code " + _code_text(const) + ">")
        elif isinstance(const, frozenset):
            consts.append("frozenset(" + repr(sorted(map(repr, const))) + ")")
        else:
            consts.append(repr(const))
    return f"{code.co_code.hex()}|{'|'.join(consts)}|{','.join(code.co_names)}"


@dataclass(frozen=True, eq=False)
class Stage:
    """One step of a pipeline: an operator, its function (or branches) and what is bound to it."""

    operator: ops.Operator
    func: Any = None
    branches: tuple[Pipeline, ...] = ()
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    runtime_kwargs: tuple[str, ...] = ()

    @property
    def op(self) -> str:
        """Return the operator's DSL name (``"map"``, ``"fork"``, ...)."""
        return self.operator.name

    @property
    def nested(self) -> Pipeline | None:
        """Return the stage's function when it is a pipeline (run as a nested pipeline), else None."""
        return self.func if isinstance(self.func, Pipeline) else None

    @functools.cached_property  # a stage never changes, and every run of it names it
    def function(self) -> str:
        """Return the name of the stage's function, or the branch names joined by ``|``."""
        if self.operator.branching:
            return "|".join(_branch_name(b) for b in self.branches)
        if isinstance(self.operator, ops.TwoInputs):  # what it combines: drawn in the graph
            return f"input + side {self.runtime_kwargs[0]}" if self.runtime_kwargs else "2 inputs"
        if not self.operator.takes_function and self.func is None:  # sample, count, ...: their
            return ""  # arguments, if any, are in bound
        if isinstance(self.func, (ops.Selection, ops.Combiner)):  # the stage's parameters, shown
            return self.func.__qualname__
        return function_name(self.func)

    def describe(self) -> str:
        """Return e.g. ``map(tokenize, delimiter=',')``."""
        if isinstance(self.operator, ops.TwoInputs):
            return f"{self.op}(side={self.runtime_kwargs[0]!r})" if self.runtime_kwargs else f"{self.op}()"
        if not self.operator.takes_function:
            return f"{self.op}({', '.join(map(repr, self.args))})"
        bound = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        bound += [f"{k}=<runtime>" for k in self.runtime_kwargs]
        named = [self.function] if self.function else []
        return f"{self.op}({', '.join([*named, *bound])})"

    def fingerprint(self) -> str:
        """Return the text hashed into the pipeline's ``sig``."""
        if self.operator.branching:
            inner = "|".join(b.sig for b in self.branches)
        else:
            inner = _fingerprint(self.func)
        return f"{self.op}:{inner}:{self.args!r}:{self.kwargs!r}:{self.runtime_kwargs!r}"


def _branch_name(branch: Pipeline) -> str:
    if branch._name or len(branch.stages) != 1:
        return branch._name or ("identity" if not branch.stages else "Pipeline")
    return branch.stages[0].function


class Pipeline:
    """An immutable chain of stages. Each operator returns a **new** Pipeline.

    This differs from the original atoll, whose operators appended to the pipeline they were called on
    and returned it: there ``common.map(f)`` changed ``common`` for everyone holding it. Here ``common``
    is unchanged and can be shared, forked and registered with the service safely; keep the returned
    pipeline (``p = p.map(f)``).

    ``p(data)`` runs serially, ``p(data, n_jobs=N)`` on N local processes, ``p(data, distributed=True)``
    on Spark, and ``p.run(data, executor=...)`` on any executor. Runtime keyword arguments declared with
    ``kwargs=[...]`` are supplied at call time: ``p(data, scale=2)``.
    """

    __slots__ = ("_name", "stages")

    def __init__(self, name: str | None = None, stages: Sequence[Stage] = ()):
        if name is not None and not isinstance(name, str):
            raise PipelineError(f"Pipeline name must be a string, got {type(name).__name__}")
        self._name = name
        self.stages: tuple[Stage, ...] = tuple(stages)

    # -- description -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Return the given name, or the ``sig`` when the pipeline has none."""
        return self._name if self._name is not None else self.sig

    @property
    def sig(self) -> str:
        """Return an md5 over the stage descriptions, the pipeline's provenance."""
        text = "->".join(stage.fingerprint() for stage in self.stages)
        return hashlib.md5(text.encode("utf-8")).hexdigest()

    @property
    def expected_kwargs(self) -> tuple[str, ...]:
        """Return the runtime keyword arguments this pipeline (nested ones included) needs."""
        names: dict[str, None] = {}
        for stage in self.stages:
            names.update(dict.fromkeys(stage.runtime_kwargs))
            if isinstance(stage.func, Pipeline):
                names.update(dict.fromkeys(stage.func.expected_kwargs))
            for branch in stage.branches:
                names.update(dict.fromkeys(branch.expected_kwargs))
        return tuple(names)

    def describe(self) -> list[str]:
        """Return one description per stage, e.g. ``['flatMap(split)', 'reduceByKey(add)']``."""
        return [stage.describe() for stage in self.stages]

    def graph(self) -> list[dict]:
        """Return the stages as a structure a drawing can follow, one dict per stage:
        ``{"operator", "function", "bound", "kwargs", "branches"}``.

        ``bound`` lists the arguments bound at definition (as text), ``kwargs`` the runtime kwargs the
        stage needs (a nested pipeline's included), and ``branches`` holds, for fork/forkMap/split/
        splitMap, each branch's own graph (empty for every other operator).

        >>> Pipeline().map(abs).fork(None, str).graph()[1]["branches"]
        [[], [{'operator': 'to', 'function': 'str', 'bound': [], 'kwargs': [], 'branches': []}]]
        """
        nodes = []
        for stage in self.stages:
            kwargs = dict.fromkeys(stage.runtime_kwargs)
            if isinstance(stage.func, Pipeline):
                kwargs.update(dict.fromkeys(stage.func.expected_kwargs))
            bound = [repr(a) for a in stage.args] + [f"{k}={v!r}" for k, v in stage.kwargs]
            nodes.append({"operator": stage.op, "function": stage.function, "bound": bound,
                          "kwargs": list(kwargs), "branches": [b.graph() for b in stage.branches]})
        return nodes

    def __repr__(self) -> str:
        head = f"Pipeline(name={self._name!r})" if self._name else "Pipeline()"
        body = " -> ".join(self.describe())
        return f"{head} {body}" if body else head

    def __len__(self) -> int:
        return len(self.stages)

    def with_name(self, name: str) -> Pipeline:
        """Return the same stages under another name."""
        return Pipeline(name, self.stages)

    # -- composition -------------------------------------------------------------------------

    def _add(self, operator: ops.Operator, func: Any, args: tuple, kwargs: dict) -> Pipeline:
        index = len(self.stages)
        runtime = kwargs.pop("kwargs", None) or ()
        if isinstance(runtime, str):
            runtime = (runtime,)
        runtime = tuple(runtime)
        where = f"stage {index} {operator.name}({function_name(func)})"
        if func is None and operator.needs_function:
            raise PipelineError(f"{where}: {operator.name} needs a function of two arguments, got None")
        if func is not None and not callable(func):
            raise PipelineError(f"{where}: the function must be callable (or None for identity), "
                                f"got {type(func).__name__} {func!r}")
        if isinstance(func, Pipeline) and (args or kwargs):
            raise PipelineError(f"{where}: a nested pipeline takes no bound arguments")
        bad = sorted(RESERVED_KWARGS.intersection(runtime))
        if bad:
            raise PipelineError(f"{where}: runtime kwargs {bad} are reserved names "
                                f"({', '.join(sorted(RESERVED_KWARGS))})")
        stage = Stage(operator, func, (), tuple(args), tuple(kwargs.items()), runtime)
        return Pipeline(self._name, self.stages + (stage,))

    def _branch(self, operator: ops.Branching, branches: tuple) -> Pipeline:
        index = len(self.stages)
        op = operator.name
        if not branches:
            raise PipelineError(f"stage {index} {op}(): needs at least one branch")
        normalized = []
        for i, branch in enumerate(branches):
            if branch is None:
                branch = Pipeline()
            elif not isinstance(branch, Pipeline):
                if not callable(branch):
                    raise PipelineError(f"stage {index} {op}: branch {i} must be a function, a "
                                        f"Pipeline or None, got {type(branch).__name__} {branch!r}")
                branch = Pipeline()._add(operator.bare, branch, (), {})
            normalized.append(branch)
        return Pipeline(self._name, self.stages + (Stage(operator, branches=tuple(normalized)),))

    def map(self, func: Callable | Pipeline | None, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also applies ``func`` to each element (a tuple is unpacked)."""
        return self._add(ops.MAP, func, args, kwargs)

    def flatMap(self, func: Callable | Pipeline | None, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also maps each element to an iterable and concatenates them."""
        return self._add(ops.FLAT_MAP, func, args, kwargs)

    def filter(self, func: Callable | Pipeline | None, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also keeps the elements for which ``func`` is truthy."""
        return self._add(ops.FILTER, func, args, kwargs)

    def mapValues(self, func: Callable | Pipeline | None, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also applies ``func`` to the value of each (key, value) pair."""
        return self._add(ops.MAP_VALUES, func, args, kwargs)

    def flatMapValues(self, func: Callable | Pipeline | None, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also expands each (key, value) into (key, w) for w in func(value)."""
        return self._add(ops.FLAT_MAP_VALUES, func, args, kwargs)

    def reduce(self, func: Callable, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also left-folds the collection with an associative ``func``."""
        return self._add(ops.REDUCE, func, args, kwargs)

    def reduceByKey(self, func: Callable, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also folds the values of each key: ``[(key, folded), ...]``."""
        return self._add(ops.REDUCE_BY_KEY, func, args, kwargs)

    def count(self) -> Pipeline:
        """Return a pipeline that also counts the elements."""
        return self._add(ops.COUNT, None, (), {})

    def sum(self) -> Pipeline:
        """Return a pipeline that also sums the elements (0 for an empty input)."""
        return self._add(ops.SUM, None, (), {})

    def min(self) -> Pipeline:
        """Return a pipeline that also gives the smallest element (the first of equal ones)."""
        return self._add(ops.MIN, None, (), {})

    def max(self) -> Pipeline:
        """Return a pipeline that also gives the largest element (the first of equal ones)."""
        return self._add(ops.MAX, None, (), {})

    def mean(self) -> Pipeline:
        """Return a pipeline that also gives the mean of the elements."""
        return self._add(ops.MEAN, None, (), {})

    def stats(self) -> Pipeline:
        """Return a pipeline that also gives ``{"count", "mean", "stdev", "min", "max"}`` in one pass
        (``stdev`` of the population, as PySpark's ``stats().stdev()``)."""
        return self._add(ops.STATS, None, (), {})

    def countByValue(self) -> Pipeline:
        """Return a pipeline that also counts each distinct element: ``{element: count}``."""
        return self._add(ops.COUNT_BY_VALUE, None, (), {})

    def distinct(self) -> Pipeline:
        """Return a pipeline that also keeps each element once (a list, in no guaranteed order)."""
        return self._add(ops.DISTINCT, None, (), {})

    def sortBy(self, key: Callable | None = None, ascending: bool = True) -> Pipeline:
        """Return a pipeline that also sorts the elements by ``key`` (stable: ties keep input order)."""
        return self._select(ops.SORT_BY, None, key, not ascending, f"ascending={bool(ascending)}")

    def sortByKey(self, ascending: bool = True) -> Pipeline:
        """Return a pipeline that also sorts (key, value) pairs by key (stable)."""
        return self._select(ops.SORT_BY_KEY, None, ops.first_of, not ascending,
                            f"ascending={bool(ascending)}")

    def top(self, n: int, key: Callable | None = None) -> Pipeline:
        """Return a pipeline that also gives the ``n`` largest elements, largest first."""
        return self._select(ops.TOP, n, key, True)

    def takeOrdered(self, n: int, key: Callable | None = None) -> Pipeline:
        """Return a pipeline that also gives the ``n`` smallest elements, smallest first."""
        return self._select(ops.TAKE_ORDERED, n, key, False)

    def take(self, n: int) -> Pipeline:
        """Return a pipeline that also gives the first ``n`` elements, in input order."""
        return self._select(ops.TAKE, n, None, False)

    def first(self) -> Pipeline:
        """Return a pipeline that also gives the first element (an error when there is none)."""
        return self._select(ops.FIRST, 1, None, False, "")

    def _select(self, operator: ops.Operator, n: int | None, key: Callable | None, reverse: bool,
                more: str = "") -> Pipeline:
        where = f"stage {len(self.stages)} {operator.name}"
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise PipelineError(f"{where}: n must be a whole number >= 0, got {n!r}")
        if key is not None and not callable(key):
            raise PipelineError(f"{where}: key must be callable or None, got {type(key).__name__} {key!r}")
        shown = [] if n is None or operator is ops.FIRST else [str(n)]
        if key is not None and key is not ops.first_of:
            shown.append(f"key={function_name(key)}")
        shown += [more] if more else []
        sel = ops.Selection(n, key, reverse, ", ".join(shown))
        return Pipeline(self._name, self.stages + (Stage(operator, sel),))

    def groupByKey(self) -> Pipeline:
        """Return a pipeline that also gathers each key's values: ``[(key, [values]), ...]``."""
        return self._keyed(ops.GROUP_BY_KEY, ops.Combiner(ops.listed, ops.appended, ops.extended, ""))

    def countByKey(self) -> Pipeline:
        """Return a pipeline that also counts the pairs of each key: ``{key: count}``."""
        return self._keyed(ops.COUNT_BY_KEY, ops.Combiner(ops.one, ops.plus_one, ops_add, ""))

    def combineByKey(self, createCombiner: Callable, mergeValue: Callable,
                     mergeCombiners: Callable) -> Pipeline:
        """Return a pipeline that also folds each key's values into a combiner (PySpark's
        ``combineByKey``): ``[(key, combiner), ...]``."""
        self._callables("combineByKey", createCombiner, mergeValue, mergeCombiners)
        shown = "|".join(map(function_name, (createCombiner, mergeValue, mergeCombiners)))
        return self._keyed(ops.COMBINE_BY_KEY, ops.Combiner(createCombiner, mergeValue, mergeCombiners,
                                                            shown))

    def aggregateByKey(self, zeroValue: Any, seqFunc: Callable, combFunc: Callable) -> Pipeline:
        """Return a pipeline that also folds each key's values from a copy of ``zeroValue`` with
        ``seqFunc``, partials merged with ``combFunc``: ``[(key, folded), ...]``."""
        self._callables("aggregateByKey", seqFunc, combFunc)
        shown = f"{zeroValue!r}, {function_name(seqFunc)}, {function_name(combFunc)}"
        return self._keyed(ops.AGGREGATE_BY_KEY,
                           ops.Combiner(ops.Zero(zeroValue, seqFunc), seqFunc, combFunc, shown))

    def foldByKey(self, zeroValue: Any, func: Callable) -> Pipeline:
        """Return a pipeline that also folds each key's values from a copy of ``zeroValue`` with
        ``func``: ``[(key, folded), ...]``."""
        self._callables("foldByKey", func)
        shown = f"{zeroValue!r}, {function_name(func)}"
        return self._keyed(ops.FOLD_BY_KEY, ops.Combiner(ops.Zero(zeroValue, func), func, func, shown))

    def _callables(self, op: str, *funcs: Any) -> None:
        for f in funcs:
            if not callable(f):
                raise PipelineError(f"stage {len(self.stages)} {op}: needs functions, got "
                                    f"{type(f).__name__} {f!r}")

    def _keyed(self, operator: ops.Operator, combiner: ops.Combiner) -> Pipeline:
        return Pipeline(self._name, self.stages + (Stage(operator, combiner),))

    def to(self, func: Callable | Pipeline | None, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also calls ``func`` on the whole input (a tuple is spread)."""
        return self._add(ops.TO, func, args, kwargs)

    def fork(self, *branches: Callable | Pipeline | None) -> Pipeline:
        """Return a pipeline that also gives a tuple of each branch's result on the same input."""
        return self._branch(ops.FORK, branches)

    def forkMap(self, *branches: Callable | Pipeline | None) -> Pipeline:
        """Like ``fork``, but a bare function branch is mapped over the input."""
        return self._branch(ops.FORK_MAP, branches)

    def split(self, *branches: Callable | Pipeline | None) -> Pipeline:
        """Return a pipeline that also feeds element i of a tuple/list input to branch i."""
        return self._branch(ops.SPLIT, branches)

    def splitMap(self, *branches: Callable | Pipeline | None) -> Pipeline:
        """Like ``split``, but a bare function branch is mapped over its element."""
        return self._branch(ops.SPLIT_MAP, branches)

    # -- partitions and two inputs ---------------------------------------------------------

    def keyBy(self, func: Callable | Pipeline, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also turns each element ``x`` into ``(func(x), x)``."""
        return self._add(ops.KEY_BY, func, args, kwargs)

    def mapPartitions(self, func: Callable, *args, **kwargs) -> Pipeline:
        """Return a pipeline that also calls ``func`` once per partition with an iterator over its
        elements; the elements of what it returns are the result."""
        return self._add(ops.MAP_PARTITIONS, func, args, kwargs)

    def sample(self, fraction: float, seed: int | None = None) -> Pipeline:
        """Return a pipeline that also keeps each element with probability ``fraction`` (seeded by
        ``seed``: the same sample for the same seed and input on one executor)."""
        where = f"stage {len(self.stages)} sample"
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise PipelineError(f"{where}: fraction must be a number from 0 to 1; got {fraction!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise PipelineError(f"{where}: seed must be an int or None; got {seed!r}")
        return Pipeline(self._name, self.stages + (Stage(ops.SAMPLE, args=(float(fraction), seed)),))

    def zipWithIndex(self) -> Pipeline:
        """Return a pipeline that also pairs each element with its position: ``(x, i)``, from 0."""
        return Pipeline(self._name, self.stages + (Stage(ops.ZIP_WITH_INDEX),))

    def _two(self, operator: ops.TwoInputs, side: str | None) -> Pipeline:
        if side is None:
            return Pipeline(self._name, self.stages + (Stage(operator),))
        where = f"stage {len(self.stages)} {operator.name}"
        if not isinstance(side, str) or not side.isidentifier():
            raise PipelineError(f"{where}: side must name a runtime keyword argument (an identifier); "
                                f"got {side!r}")
        if side in RESERVED_KWARGS:
            raise PipelineError(f"{where}: side {side!r} is a reserved name "
                                f"({', '.join(sorted(RESERVED_KWARGS))})")
        return Pipeline(self._name, self.stages + (Stage(operator, runtime_kwargs=(side,)),))

    def union(self, side: str | None = None) -> Pipeline:
        """Return a pipeline that also concatenates two inputs: the two results of a ``fork`` before
        it, or its input then the runtime keyword argument named ``side``."""
        return self._two(ops.UNION, side)

    def join(self, side: str | None = None) -> Pipeline:
        """Return a pipeline that also joins two keyed inputs: ``(k, (v, w))`` for each pair of
        pairs with equal keys (the inputs as for ``union``)."""
        return self._two(ops.JOIN, side)

    def leftOuterJoin(self, side: str | None = None) -> Pipeline:
        """Like ``join``, and ``(k, (v, None))`` for a left pair whose key the right input lacks."""
        return self._two(ops.LEFT_OUTER_JOIN, side)

    def cogroup(self, side: str | None = None) -> Pipeline:
        """Return a pipeline that also groups two keyed inputs: ``(k, ([left values], [right
        values]))`` for each key of either (the inputs as for ``union``)."""
        return self._two(ops.COGROUP, side)

    # -- running -----------------------------------------------------------------------------

    def check_kwargs(self, supplied: dict[str, Any]) -> None:
        """Raise PipelineError when an unknown runtime kwarg is given, MissingKwargsError (also a
        KeyError) when a declared one is missing."""
        expected = self.expected_kwargs
        missing = [k for k in expected if k not in supplied]
        unknown = sorted(k for k in supplied if k not in expected)
        if not missing and not unknown:
            return
        takes = ", ".join(expected) if expected else "none"
        problems = []
        if missing:
            needers = [s.describe() for s in self._stages_needing(missing)]
            problems.append(f"missing runtime kwargs {missing} (needed by {'; '.join(needers)})")
        if unknown:
            problems.append(f"unknown runtime kwargs {unknown}")
        error = MissingKwargsError if missing else PipelineError
        raise error(f"pipeline {self.name!r}: {' and '.join(problems)}; it takes: {takes}")

    def _stages_needing(self, names: Iterable[str]) -> list[Stage]:
        names = set(names)
        found = []
        for stage in self.stages:
            nested = [stage.func] if isinstance(stage.func, Pipeline) else list(stage.branches)
            if names.intersection(stage.runtime_kwargs) or any(
                    names.intersection(n.expected_kwargs) for n in nested):
                found.append(stage)
        return found

    def run(self, data: Any, executor: Any = None, *, on_error: str | ErrorPolicy | None = None,
            max_errors: int | float | None = None, **kwargs) -> Any:
        """Run on ``executor`` (serial when None) and return the result.

        With ``on_error`` (``"fail"``, ``"skip"`` or ``"collect"``, see :mod:`atoll.dead_letters`) the
        answer is a :class:`~atoll.dead_letters.RunResult` ``(results, errors, skipped)``::

            >>> from atoll import Pipeline
            >>> tens = Pipeline().map(lambda x: 10 // x)
            >>> results, errors, skipped = tens.run([1, 0, 5], on_error="collect")
            >>> results, skipped, errors[0].error, errors[0].element
            ([10, 2], 1, 'ZeroDivisionError', 0)
        """
        chosen = executor or _choose_executor()
        if on_error is None and max_errors is None:
            return chosen.run(self, data, kwargs)
        return chosen.run(self, data, kwargs, errors=dead_letters.policy_of(on_error, max_errors))

    def __call__(self, data: Any, *, n_jobs: int | None = None, serial: bool = False,
                 distributed: bool = False, executor: Any = None, progress: bool = False,
                 on_error: str | ErrorPolicy | None = None, max_errors: int | float | None = None,
                 **kwargs) -> Any:
        """Run the pipeline on ``data``; the keyword arguments choose the executor (see class doc).
        ``on_error`` and ``max_errors`` as in :meth:`run` (a :class:`~atoll.dead_letters.RunResult`)."""
        chosen = _choose_executor(n_jobs=n_jobs, serial=serial, distributed=distributed,
                                 executor=executor, progress=progress)
        return self.run(data, chosen, on_error=on_error, max_errors=max_errors, **kwargs)
