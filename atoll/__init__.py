"""atoll: plain Python functions as data-analysis pipelines, run serially, on local processes or on
Spark, and served over HTTP."""

from atoll._version import __version__
from atoll.config import load_config
from atoll.dead_letters import DeadLetter, ErrorPolicy, RunResult, TooManyErrors
from atoll.errors import AtollError, ConfigError, MissingKwargsError, PipelineError, StageFailure, StageInfo
from atoll.executors import Executor, LocalExecutor, SerialExecutor
from atoll.pipeline import Pipeline
from atoll.sources import read_jsonl, read_text

__all__ = [
    "Pipeline", "Executor", "SerialExecutor", "LocalExecutor", "SparkExecutor",
    "Atoll", "Client", "RemoteError", "load_config", "verify_callback", "Job", "Dataset",
    "read_text", "read_jsonl", "RunResult", "DeadLetter", "ErrorPolicy", "TooManyErrors",
    "AtollError", "ConfigError", "MissingKwargsError", "PipelineError", "StageFailure", "StageInfo",
    "__version__",
]


def __getattr__(name):
    if name == "SparkExecutor":  # pyspark is an optional extra
        from atoll.executors.spark import SparkExecutor

        return SparkExecutor
    if name == "Atoll":  # Flask is part of the service extra
        from atoll.service import Atoll

        return Atoll
    if name == "verify_callback":  # for callback receivers
        from atoll.signing import verify_callback

        return verify_callback
    if name in ("Client", "RemoteError", "Job", "Dataset"):
        from atoll import client

        return getattr(client, name)
    raise AttributeError(f"module 'atoll' has no attribute {name!r}")
