"""The interpreter: the executor interface and the one walk over a pipeline's stages that every
executor shares.

An executor only decides *where* a pass over the data runs. The walk (this module) decides *what* runs:
it fuses each run of stages whose operator joins a pass (element-wise ones, and a following
``reduce``/``reduceByKey`` that ends it) into one pass (:meth:`Executor.run_pass`), and asks every
other operator (``to``, ``fork``, ``forkMap``, ``split``, ``splitMap``: :class:`~atoll.operators.Whole`)
to apply itself to the whole input, which runs branches and nested pipelines on the same executor. So
every executor has one semantics.

Pipelines and their stages are read by their attributes (``stages``, ``operator``, ``func``,
``nested``, ...): this layer does not import :mod:`atoll.pipeline`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from atoll import dead_letters
from atoll.dead_letters import ErrorPolicy, Salvage
from atoll.errors import PipelineError, StageInfo
from atoll.operators import Aggregate, Step, identity, sample_items, zip_with_index_items

if TYPE_CHECKING:  # for the hints only: the description layer sits below this one
    from atoll.pipeline import Pipeline, Stage

__all__ = ["Executor", "bind", "identity", "NestedPipeline", "BoundArgs"]

class BoundArgs:
    """``f(x, *args, **kwargs)``: positional arguments bound at composition go after the element."""

    __slots__ = ("func", "args", "kwargs")

    def __init__(self, func, args, kwargs):
        self.func, self.args, self.kwargs = func, args, kwargs

    def __call__(self, *xs):
        return self.func(*xs, *self.args, **self.kwargs)


class NestedPipeline:
    """A pipeline used as a stage's function: runs serially wherever the element is (a worker)."""

    __slots__ = ("pipeline", "kwargs", "info")

    def __init__(self, pipeline: Pipeline, kwargs: dict, info: StageInfo | None = None):
        self.pipeline = pipeline
        self.kwargs = {k: kwargs[k] for k in pipeline.expected_kwargs}
        #: the stage it is the function of: what the stages of what it drops are seen from
        self.info = info

    def __call__(self, x):
        from atoll.executors.serial import SerialExecutor

        executor = SerialExecutor()
        executor.report_progress = False  # once per element: not a pass of the run
        salvage = dead_letters.current()
        if salvage is None or self.info is None:
            return executor.run(self.pipeline, x, self.kwargs)
        with dead_letters.salvaging(salvage.policy) as inner:
            try:
                return executor.run(self.pipeline, x, self.kwargs)
            finally:  # what it dropped counts also when the element then fails here as a whole
                salvage.merge(inner.nested_in(self.info))


def bind(stage: Stage, kwargs: dict, info: StageInfo | None = None) -> Any:
    """Return the stage's function with its composition-time and runtime arguments bound (``info``:
    where the stage is, for a nested pipeline's dropped elements)."""
    func = stage.func
    if func is None:
        return identity
    if stage.nested is not None:
        return NestedPipeline(stage.nested, kwargs, info)
    bound = dict(stage.kwargs)
    bound.update((k, kwargs[k]) for k in stage.runtime_kwargs)
    if stage.args:
        return BoundArgs(func, stage.args, bound)
    return partial(func, **bound) if bound else func


def _stage_info(index: int, stage: Stage, outer: StageInfo | None, branch: int | None) -> StageInfo:
    info = StageInfo(index, stage.op, stage.function)
    return info if outer is None else info.nested_in(outer, branch)


def _materialized(value: Any) -> Any:
    """Return ``value`` with a top-level iterator (a generator passed through untouched) as a list,
    so every executor returns data, never a half-read stream."""
    if isinstance(value, Iterator):
        return list(value)
    if type(value) is tuple:
        return tuple(_materialized(v) for v in value)
    return value


def _tail_pass(stages: list[Stage]) -> int | None:
    """Return the index of the first stage of the element-wise pass that ends ``stages``, or None when
    they end in anything else (an aggregate, ``to``, a fork, ...) or there are none."""
    start = len(stages)
    while start > 0 and stages[start - 1].operator.joins_pass and not isinstance(
            stages[start - 1].operator, Aggregate):
        start -= 1
    return start if start < len(stages) else None


class Executor(ABC):
    """Runs pipelines. Subclasses say how a fused pass runs and what their datasets are."""

    #: short name used in logs, benchmarks and the service's pipeline listing
    name = "executor"

    def run(self, pipeline: Pipeline, data: Any, kwargs: dict | None = None, *, checked: bool = False,
            errors: ErrorPolicy | None = None) -> Any:
        """Return ``pipeline``'s result on ``data`` with runtime ``kwargs``.

        ``checked=True`` says the caller has checked ``kwargs`` against the pipeline already (the
        service's run request does, once, at its edge); otherwise they are checked here.

        With an error policy (``errors``, see :mod:`atoll.dead_letters`) the answer is a
        :class:`~atoll.dead_letters.RunResult`: the result, the dead letters and the counts; past its
        ``max_errors`` the run raises :class:`~atoll.dead_letters.TooManyErrors`."""
        kwargs = dict(kwargs or {})
        if not checked:
            pipeline.check_kwargs(kwargs)
        if errors is None:
            return _materialized(self.collect(self.walk(pipeline, data, kwargs)))
        with dead_letters.salvaging(errors) as salvage:
            results = _materialized(self.collect(self.walk(pipeline, data, kwargs)))
            self.salvaged(salvage)
        salvage.check()
        return salvage.result(results)

    def salvaged(self, salvage: Salvage) -> None:
        """Add to ``salvage`` what the run's passes dropped elsewhere than in this process's context
        (the Spark executor's partitions); the other executors' chunks are merged as they come back."""
        return None

    def stream(self, pipeline: Pipeline, data: Any, kwargs: dict | None = None, *,
               checked: bool = False, errors: ErrorPolicy | None = None) -> Generator:
        """Yield ``pipeline``'s result on ``data`` element by element: a list or tuple result's
        elements, any other result as one element (what ``"results_to": "dataset"`` stores).

        A pipeline that ends in element-wise stages (``map``, ``flatMap``, ``filter``, ``mapValues``,
        ...) yields that last pass's results as the executor produces them (:meth:`stream_pass`),
        never holding them whole; the stages before that pass run as in :meth:`run`. Any other
        pipeline (one ending in ``reduce``, ``to``, ``sortBy``, ...) is run whole first.

        With an error policy (``errors``) the generator returns (the value of ``yield from``) a
        :class:`~atoll.dead_letters.RunResult` without results once the last element is out; past its
        ``max_errors`` the last step raises :class:`~atoll.dead_letters.TooManyErrors` instead."""
        kwargs = dict(kwargs or {})
        if not checked:
            pipeline.check_kwargs(kwargs)
        if errors is None:
            yield from self._stream(pipeline, data, kwargs)
            return None
        with dead_letters.salvaging(errors) as salvage:
            yield from self._stream(pipeline, data, kwargs)
            self.salvaged(salvage)
        salvage.check()
        return salvage.result(None)

    def _stream(self, pipeline: Pipeline, data: Any, kwargs: dict) -> Iterator:
        start = _tail_pass(pipeline.stages)
        if start is None:
            result = _materialized(self.collect(self.walk(pipeline, data, kwargs)))
            yield from result if isinstance(result, list | tuple) else [result]
            return
        stages = pipeline.stages
        value = self.walk(pipeline, data, kwargs, stop=start)
        steps = [self._step(stages[i], kwargs, _stage_info(i, stages[i], None, None))
                 for i in range(start, len(stages))]
        parts = self.stream_pass(self._as_collection(value, stages[start], steps[0].info), steps)
        try:
            for part in parts:
                yield from part
        finally:
            parts.close()

    # -- what a subclass provides ------------------------------------------------------------

    @abstractmethod
    def run_pass(self, data: Any, steps: list[Step], aggregate: Step | None) -> Any:
        """Run fused element-wise ``steps`` (then ``aggregate``) over a collection.

        Returns a dataset (or list) for a plain run, the merged value for ``reduce``, and a dataset or
        list of ``(key, value)`` pairs for ``reduceByKey``.
        """

    def stream_pass(self, data: Any, steps: list[Step]) -> Iterator:
        """Yield the results of fused element-wise ``steps`` over a collection in order, a list at a
        time, as they are produced (here: all at once; executors that can, a chunk or partition at a
        time)."""
        yield self.collect(self.run_pass(data, steps, None))

    @staticmethod
    def byte_ranges(source: Any) -> list:
        """Return the byte ranges a parallel executor reads of the file source ``source``: of its own
        ``partition_bytes``, else of the configuration's ``dataset_partition_bytes``."""
        size = source.partition_bytes
        if size is None:
            from atoll.config import load_config

            size = load_config().dataset_partition_bytes
        return source.partitions(size)

    def is_dataset(self, value: Any) -> bool:
        """Return True when ``value`` is this executor's own distributed collection."""
        return False

    def collect_dataset(self, value: Any) -> Any:
        """Return a dataset's elements as a list."""
        return value

    def reusable(self, value: Any) -> Any:
        """Return ``value`` in a form that several branches can each read (a fork)."""
        if isinstance(value, Iterator):
            return list(value)
        return value

    # -- two inputs (union, join, leftOuterJoin, cogroup), sample, zipWithIndex -------------

    def two_inputs(self, op: Any, left: Any, right: Any, info: StageInfo) -> Any:
        """Return a two-input operator on ``left`` and ``right``, combined in this process."""
        return op.combine(self.collect(left), self.collect(right))

    def sampled(self, value: Any, fraction: float, seed: int | None) -> Any:
        """Return ``sample(fraction, seed)``: one seeded stream over the input, in this process."""
        return sample_items(self.collect(value), fraction, seed)

    def indexed(self, value: Any) -> Any:
        """Return ``zipWithIndex()``: each element with its position, counted in this process."""
        return zip_with_index_items(self.collect(value))

    # -- the shared walk ---------------------------------------------------------------------

    def bound(self, stage: Stage, kwargs: dict) -> Any:
        """Return the stage's function with its arguments bound (see ``bind``)."""
        return bind(stage, kwargs)

    def collect(self, value: Any) -> Any:
        """Return ``value`` with every dataset in it (also inside tuples) turned into a list."""
        if self.is_dataset(value):
            return self.collect_dataset(value)
        if type(value) is tuple:
            return tuple(self.collect(v) for v in value)
        return value

    def walk(self, pipeline: Pipeline, value: Any, kwargs: dict,
             outer: StageInfo | None = None, branch: int | None = None, stop: int | None = None) -> Any:
        """Run every stage of ``pipeline`` (those before index ``stop``) on ``value``; datasets may
        remain in the result."""
        stages = pipeline.stages[:stop]
        i = 0
        while i < len(stages):
            stage = stages[i]
            info = _stage_info(i, stage, outer, branch)
            if stage.operator.joins_pass:
                steps: list[Step] = []
                first = info
                aggregate = None
                while i < len(stages) and stages[i].operator.joins_pass:
                    step = self._step(stages[i], kwargs, info if stages[i] is stage else
                                      _stage_info(i, stages[i], outer, branch))
                    i += 1
                    if isinstance(step.op, Aggregate):  # an aggregate ends the pass
                        aggregate = step
                        break
                    steps.append(step)
                data = self._as_collection(value, stage, first)
                value = self.run_pass(data, steps, aggregate)
                continue
            value = stage.operator.apply(self, stage, value, kwargs, info)
            i += 1
        return value

    def _step(self, stage: Stage, kwargs: dict, info: StageInfo) -> Step:
        # a nested pipeline or the identity takes a tuple element whole; a function gets it spread
        unpack = stage.func is not None and stage.nested is None
        return Step(stage.operator, bind(stage, kwargs, info), info, unpack)

    def _as_collection(self, value: Any, stage: Stage, info: StageInfo) -> Any:
        """Return ``value`` as something a pass can iterate, or raise a PipelineError."""
        if self.is_dataset(value):
            return value
        if isinstance(value, dict):
            return list(value.items()) if stage.operator.pairs else list(value)
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise PipelineError(f"{info.describe()}: {stage.op} needs a collection (a list, tuple, "
                                f"dict or other iterable); got {type(value).__name__} {shown}",
                                stage=info)
        return value
