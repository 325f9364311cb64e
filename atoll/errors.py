"""Errors raised by atoll.

Two kinds of pipeline error reach a user:

* **misuse** — a wrong input type for an operator, a missing runtime keyword argument, a stage that is
  not callable. These raise :class:`PipelineError` whose message names the stage.
* **failure** — a user function raised. atoll re-raises an exception that *is an instance of the original
  type* (so ``except KeyError`` works as it would locally) and also of :class:`StageFailure`, carrying the
  stage, the element that failed and the worker-side traceback as text. Every executor does the same.
"""

from __future__ import annotations

import linecache
import pickle
import re
import reprlib
from dataclasses import dataclass
from typing import Any

import cloudpickle

__all__ = [
    "AtollError",
    "ConfigError",
    "PipelineError",
    "MissingKwargsError",
    "StageFailure",
    "StageInfo",
    "NO_ITEM",
    "stage_failure",
]


class AtollError(Exception):
    """Base class of every error atoll raises on its own account."""


class ConfigError(AtollError):
    """A configuration key is unknown, has the wrong type or an invalid value."""


@dataclass(frozen=True)
class StageInfo:
    """Where in a pipeline something happened: the stage's index, operator and function name.

    ``path`` locates a stage of a nested pipeline from the outermost one, e.g. ``"1/fork[0]/0"``.
    """

    index: int
    operator: str
    function: str
    path: str = ""

    def describe(self) -> str:
        """Return e.g. ``stage 2 map(parse)``."""
        where = f"stage {self.path or self.index}"
        return f"{where} {self.operator}({self.function})"

    def to_dict(self) -> dict:
        """Return the JSON form used by the service."""
        return {"index": self.index, "operator": self.operator, "function": self.function,
                "path": self.path or str(self.index)}

    def nested_in(self, outer: StageInfo, branch: int | None = None) -> StageInfo:
        """Return this stage's info as seen from the pipeline that contains ``outer``."""
        hop = f"{outer.path or outer.index}"
        if branch is not None:
            hop += f"/{outer.operator}[{branch}]"
        return StageInfo(self.index, self.operator, self.function,
                         f"{hop}/{self.path or self.index}")


class _NoItem:
    """Marker for "this failure has no single failing element" (whole-input stages)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_ITEM"

    def __reduce__(self):
        return (_NoItem, ())


NO_ITEM: Any = _NoItem()

_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80


class PipelineError(AtollError):
    """A pipeline was misused, or (as :class:`StageFailure`) one of its functions failed.

    Attributes: ``stage`` (:class:`StageInfo` or ``None``), ``item`` (the failing element or
    :data:`~atoll.errors.NO_ITEM`) and ``remote_traceback`` (text, or ``""``).
    """

    def __init__(self, message: str, stage: StageInfo | None = None, item: Any = NO_ITEM,
                 remote_traceback: str = ""):
        super().__init__(message)
        self.stage = stage
        self.item = item
        self.remote_traceback = remote_traceback

    @property
    def message(self) -> str:
        """Return the message without the class name."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class MissingKwargsError(PipelineError, KeyError):
    """A runtime keyword argument the pipeline declares was not supplied (raised before anything runs).

    Also a :class:`KeyError`, as in the original atoll, where the lookup of the missing name failed:

    >>> err = MissingKwargsError("pipeline 'p': missing runtime kwargs ['scale']")
    >>> isinstance(err, KeyError), str(err)
    (True, "pipeline 'p': missing runtime kwargs ['scale']")
    """


class StageFailure(PipelineError):
    """Mixin base of the exceptions raised when a user function fails inside a stage.

    An instance is also an instance of the original exception's type; ``original`` is that exception
    as it was raised in the worker.
    """

    original: BaseException
    item_repr: str

    def __str__(self) -> str:
        stage = self.stage.describe() if self.stage else "a stage"
        on = "" if self.item is NO_ITEM else f" on item {self.item_repr}"
        return f"{stage} failed{on}: {type(self.original).__name__}: {self.original}"

    @property
    def message(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        """Return the original exception's type name, e.g. ``KeyError``."""
        return type(self.original).__name__

    def __reduce__(self):
        return (_rebuild, (_portable(self.original), self.stage, _portable_item(self.item),
                           self.remote_traceback))


_failure_classes: dict[type, type] = {}


def _failure_class(exc_type: type) -> type | None:
    """Return a class deriving from both ``StageFailure`` and ``exc_type``, or None if impossible."""
    if exc_type in _failure_classes:
        return _failure_classes[exc_type]
    try:
        cls = type(exc_type.__name__, (StageFailure, exc_type),
                   {"__module__": exc_type.__module__, "__qualname__": exc_type.__qualname__,
                    "__str__": StageFailure.__str__, "__reduce__": StageFailure.__reduce__})
    except TypeError:  # a final or layout-incompatible exception type
        cls = None
    _failure_classes[exc_type] = cls
    return cls


def _portable(exc: BaseException) -> bytes:
    """Return ``exc`` pickled with cloudpickle, or a PipelineError naming its type when it cannot be.

    cloudpickle carries exception types defined in ``__main__`` or in modules registered by value, and
    the bytes travel inside any pickler (plain pickle included), so every executor's transport works.
    """
    try:
        payload = cloudpickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:
        return cloudpickle.dumps(
            PipelineError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"))


def _portable_item(item: Any) -> bytes:
    """Return ``item`` pickled with cloudpickle, or its short repr pickled when it cannot be."""
    try:
        return cloudpickle.dumps(item)
    except Exception:
        return cloudpickle.dumps(_short.repr(item))


def _rebuild(original: bytes, stage, item: bytes, remote_traceback: str):
    return stage_failure(pickle.loads(original), stage, pickle.loads(item), with_source(remote_traceback))


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in ')


def with_source(text: str) -> str:
    """Return traceback ``text`` with source lines filled in where the worker had none to show.

    A worker shows a frame's source only when it can read the file; a function defined in a notebook
    cell or at the interactive prompt has its source only in the caller's ``linecache``, so the caller
    adds the line.

    >>> linecache.cache["<cell-1>"] = (12, None, ["def f(x):\\n", "    return 1 / x\\n"], "<cell-1>")
    >>> print(with_source('  File "<cell-1>", line 2, in f\\nZeroDivisionError: division by zero'))
      File "<cell-1>", line 2, in f
        return 1 / x
    ZeroDivisionError: division by zero
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        frame = _FRAME.match(line)
        if frame is None:
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if following.startswith("    "):
            continue  # the worker showed the source itself
        source = linecache.getline(frame["file"], int(frame["line"])).strip()
        if source:
            out.append(f"    {source}\n")
    return "".join(out)


def stage_failure(original: BaseException, stage: StageInfo | None, item: Any = NO_ITEM,
                  remote_traceback: str = "") -> BaseException:
    """Return the exception to raise for ``original`` failing in ``stage`` on ``item``.

    The result is an instance of ``type(original)`` and of :class:`StageFailure`; when the type cannot be
    subclassed it is a plain :class:`StageFailure` whose ``original`` keeps the exception.

    >>> err = stage_failure(KeyError("k"), StageInfo(0, "map", "lookup"), {"a": 1})
    >>> isinstance(err, KeyError), isinstance(err, PipelineError)
    (True, True)
    >>> str(err)
    "stage 0 map(lookup) failed on item {'a': 1}: KeyError: 'k'"
    """
    if isinstance(original, StageFailure):
        return original
    cls = _failure_class(type(original)) or type("StageFailure", (StageFailure,), {})
    err = cls.__new__(cls, *original.args)
    Exception.__init__(err, *original.args)
    err.__dict__.update(getattr(original, "__dict__", {}))
    err.original = original
    err.stage = stage
    err.item = item
    err.item_repr = "" if item is NO_ITEM else _short.repr(item)
    err.remote_traceback = remote_traceback
    if remote_traceback and hasattr(err, "add_note"):  # Python 3.11+ prints notes
        err.add_note("Worker traceback:\n" + remote_traceback.rstrip())
    return err
