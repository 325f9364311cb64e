"""How a pipeline runs: :class:`SerialExecutor`, :class:`LocalExecutor` and (with pyspark)
``SparkExecutor`` share one interface, :class:`Executor`, and one semantics."""

from __future__ import annotations

from typing import Any

from atoll import pipeline
from atoll.errors import PipelineError
from atoll.executors.interpreter import Executor
from atoll.executors.local import LocalExecutor
from atoll.executors.serial import SerialExecutor
from atoll.parallelism import effective_n_jobs

__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "SparkExecutor", "choose_executor"]


def __getattr__(name: str) -> Any:
    if name == "SparkExecutor":  # imported on demand: pyspark is an optional extra
        from atoll.executors.spark import SparkExecutor

        return SparkExecutor
    raise AttributeError(name)


def choose_executor(n_jobs: int | None = None, serial: bool = False, distributed: bool = False,
                    executor: Executor | None = None, progress: bool = False) -> Executor:
    """Return the executor that ``Pipeline.__call__``'s keyword arguments ask for."""
    if executor is not None:
        if serial or distributed or n_jobs not in (None, 1):
            raise PipelineError("pass either executor=... or serial/n_jobs/distributed, not both")
        if not isinstance(executor, Executor):
            raise PipelineError(f"executor must be an atoll Executor, got {type(executor).__name__}")
        return executor
    if serial and distributed:
        raise PipelineError("serial=True and distributed=True contradict each other")
    if distributed:
        from atoll.executors.spark import SparkExecutor

        return SparkExecutor.from_config()
    if n_jobs is not None:
        try:
            effective_n_jobs(n_jobs)
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
    if serial or n_jobs in (None, 1):
        return SerialExecutor()
    return LocalExecutor(n_jobs=n_jobs, progress=progress)


pipeline.runs_on(choose_executor)
