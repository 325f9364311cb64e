"""The per-element error policy of a run, and the failures it kept: ``on_error`` and dead letters.

A run has a policy (:class:`ErrorPolicy`): ``on_error="fail"`` (the default: the first failing element
fails the run, as always), ``"skip"`` (an element whose element-wise stage raises is dropped and
counted) or ``"collect"`` (as ``skip``, and each failure is kept as a :class:`DeadLetter`). ``max_errors``
bounds it: a count (an ``int``: more failures than that fail the run) or a fraction (a ``float`` below 1:
more failures than that share of the elements that entered the failing pass fail it), so a wholly broken
input never looks like an empty success.

**Which failures are skipped.** Those of an element-wise stage's function on one element — ``map``,
``flatMap``, ``filter``, ``mapValues``, ``flatMapValues``, ``keyBy``, the steps of a nested pipeline —
and of the key function of ``sortBy``, ``top`` and ``takeOrdered``: the element is dropped at the stage
that failed and the rest go on. The element a dead letter names is the one that stage was given.
A failure of a folding function (``reduce``, ``reduceByKey``, ``foldByKey``, ``aggregateByKey``,
``combineByKey``) or of a whole-input one (``to``, ``mapPartitions``, a branch's ``to``) fails the run
under every policy: a fold that failed on one element cannot be told apart from a fold that went wrong,
and on the parallel executors the same function also merges whole partitions' partial results, so
dropping anything there would silently change a sum.

**Where it is kept.** A ``Salvage`` is the record of one run: entered with ``salvaging`` in the
process that runs the pipeline (a ``contextvars.ContextVar``, as ``atoll.capture``), filled by
``atoll.operators.run_steps`` when a pass fails under ``skip`` or ``collect``. The local executor's
workers run each chunk in a salvage of their own (``settings``, ``run_salvaging``) and return it
with the chunk's result, merged here in input order (``merged_into``); the Spark executor's partitions
return theirs through an accumulator. Dead letters are in the order of the passes, then of the input
elements they came from, then of the stages, on every executor.

When nothing fails, the compiled pass runs as under ``fail`` (what that costs is measured by
``benchmarks/bench_errors.py``); only a part of the input whose pass raised is run again, one element at
a time, to drop the failing elements.
"""

from __future__ import annotations

import json
import os
import reprlib
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from atoll.errors import PipelineError, StageInfo

__all__ = ["POLICIES", "ErrorPolicy", "DeadLetter", "Salvage", "RunResult", "TooManyErrors", "salvaging",
           "current", "settings", "run_salvaging", "merged_into", "unmerged", "policy_of", "json_lines",
           "SAMPLE"]

#: the values of ``on_error``
POLICIES = ("fail", "skip", "collect")

#: the dead letters a job record carries as its sample (all of them: GET /jobs/<id>/errors)
SAMPLE = 5

#: the longest message and traceback a dead letter keeps (characters; the traceback keeps its end)
MAX_MESSAGE = 1000
MAX_TRACEBACK = 2000

#: the folder of atoll's own modules, whose frames a dead letter's traceback leaves out
_ATOLL = os.path.dirname(os.path.abspath(__file__)) + os.sep

_short = reprlib.Repr()
_short.maxstring = 200
_short.maxother = 200


@dataclass(frozen=True)
class ErrorPolicy:
    """What a run does with an element whose stage raises: ``on_error`` (one of ``POLICIES``),
    ``max_errors`` (None: no bound; an int: at most that many failures; a float in (0, 1): at most
    that share of a pass's elements) and ``keep`` (the most dead letters kept by ``collect``; None: all).

    >>> ErrorPolicy("skip", max_errors=0.5).salvages
    True
    >>> ErrorPolicy("drop")
    Traceback (most recent call last):
    ...
    ValueError: on_error must be one of fail, skip, collect; got 'drop'
    """

    on_error: str = "fail"
    max_errors: int | float | None = None
    keep: int | None = None

    def __post_init__(self) -> None:
        if self.on_error not in POLICIES:
            raise ValueError(f"on_error must be one of {', '.join(POLICIES)}; got {self.on_error!r}")
        bound = self.max_errors
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise ValueError(f"max_errors must be a count (an integer >= 0) or a fraction (a number "
                                 f"between 0 and 1); got {bound!r}")
            if isinstance(bound, int) and bound < 0 or isinstance(bound, float) and not 0 <= bound < 1:
                raise ValueError(f"max_errors must be a count (an integer >= 0) or a fraction (a number "
                                 f"between 0 and 1); got {bound!r}")
        if self.keep is not None and (isinstance(self.keep, bool) or not isinstance(self.keep, int)
                                      or self.keep < 0):
            raise ValueError(f"keep must be an integer >= 0 or None; got {self.keep!r}")

    @property
    def salvages(self) -> bool:
        """Return True when failing elements are dropped rather than failing the run."""
        return self.on_error != "fail"

    def to_dict(self) -> dict:
        """Return the JSON form: ``{"on_error": ..., "max_errors": ...}``."""
        return {"on_error": self.on_error, "max_errors": self.max_errors}


def policy_of(on_error: str | ErrorPolicy | None, max_errors: int | float | None = None,
              keep: int | None = None) -> ErrorPolicy:
    """Return the policy ``on_error`` names (an :class:`ErrorPolicy` as it is; None is ``fail``)."""
    if isinstance(on_error, ErrorPolicy):
        return on_error
    return ErrorPolicy(on_error or "fail", max_errors, keep)


@dataclass
class DeadLetter:
    """One element dropped by ``collect``: the element (as the failing stage got it), the stage, and
    the error's type name, message and the end of its traceback."""

    element: Any
    stage: StageInfo
    error: str
    message: str
    traceback: str

    @classmethod
    def of(cls, element: Any, stage: StageInfo, exc: BaseException) -> DeadLetter:
        """Return the dead letter of ``exc`` raised by ``stage`` on ``element``."""
        frames = exc.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename.startswith(_ATOLL):
            frames = frames.tb_next  # atoll's own frames before the user's function
        tb = "".join(traceback.format_exception(type(exc), exc, frames or exc.__traceback__))
        return cls(element, stage, type(exc).__name__, str(exc)[:MAX_MESSAGE], tb[-MAX_TRACEBACK:])

    def to_dict(self) -> dict:
        """Return the JSON form: the element itself when it is JSON, else its short ``repr`` (with
        ``"element_repr": true``)."""
        out: dict[str, Any] = {"stage": self.stage.to_dict(), "error": self.error, "message": self.message,
                               "traceback": self.traceback}
        try:
            json.dumps(self.element, allow_nan=False)
            out["element"] = self.element
        except (TypeError, ValueError, RecursionError):
            out["element"] = _short.repr(self.element)
            out["element_repr"] = True
        return out

    def __reduce__(self):
        # the element travels as itself when it pickles, else as its repr (a worker's letter must reach
        # the caller whatever the element is)
        import pickle

        element = self.element
        try:
            pickle.dumps(element)
        except Exception:
            element = _short.repr(element)
        return (DeadLetter, (element, self.stage, self.error, self.message, self.traceback))


class TooManyErrors(PipelineError):
    """More elements failed than ``max_errors`` allows: the run fails. ``skipped`` counts them,
    ``errors`` holds the dead letters kept (``collect``), ``stage`` is where the last one failed."""

    def __init__(self, message: str, skipped: int = 0, errors: list | None = None,
                 stage: StageInfo | None = None, by_stage: dict | None = None):
        super().__init__(message, stage)
        self.skipped = skipped
        self.errors = list(errors or [])
        self.by_stage = dict(by_stage or {})

    def __reduce__(self):
        return (TooManyErrors, (self.message, self.skipped, self.errors, self.stage, self.by_stage))

    def result(self) -> RunResult:
        """Return what the run dropped before it failed, as a :class:`RunResult` without results."""
        return RunResult(None, self.errors, self.skipped, self.by_stage)


@dataclass
class Salvage:
    """The element failures of one run (or of one chunk or partition of it, merged into the run's).

    ``skipped`` counts every dropped element; ``by_stage`` counts them per stage path; ``errors`` are
    the dead letters kept (``collect`` only, at most ``policy.keep``); ``passes`` counts, per pass (by
    the path of its first stage), the elements that entered it and those that failed in it.
    """

    policy: ErrorPolicy
    skipped: int = 0
    errors: list = field(default_factory=list)
    by_stage: dict = field(default_factory=dict)
    passes: dict = field(default_factory=dict)

    def entered(self, pass_path: str, n: int) -> None:
        """Count ``n`` elements entering the pass whose first stage is at ``pass_path``."""
        counts = self.passes.get(pass_path)
        if counts is None:
            self.passes[pass_path] = [n, 0]
        else:
            counts[0] += n

    def failed(self, pass_path: str, stage: StageInfo, element: Any, exc: BaseException) -> None:
        """Record that ``stage`` (of the pass at ``pass_path``) raised ``exc`` on ``element``; raise
        :class:`TooManyErrors` when that makes more failures than a count ``max_errors`` allows."""
        self.skipped += 1
        path = stage.path or str(stage.index)
        self.by_stage[path] = self.by_stage.get(path, 0) + 1
        self.passes.setdefault(pass_path, [0, 0])[1] += 1
        keep = self.policy.keep
        if self.policy.on_error == "collect" and (keep is None or len(self.errors) < keep):
            self.errors.append(DeadLetter.of(element, stage, exc))
        bound = self.policy.max_errors
        if isinstance(bound, int) and self.skipped > bound:
            raise self.too_many(f"more than max_errors={bound} elements failed", stage)

    def export(self) -> tuple:
        """Return what a worker sends back: counts and dead letters."""
        return self.skipped, self.errors, self.by_stage, self.passes

    def merge(self, exported: tuple) -> None:
        """Add a worker's :meth:`export` to this record (dead letters after those already here)."""
        skipped, errors, by_stage, passes = exported
        self.skipped += skipped
        keep = self.policy.keep
        room = len(errors) if keep is None else max(0, keep - len(self.errors))
        self.errors.extend(errors[:room])
        for path, n in by_stage.items():
            self.by_stage[path] = self.by_stage.get(path, 0) + n
        for path, (entered, failed) in passes.items():
            counts = self.passes.setdefault(path, [0, 0])
            counts[0] += entered
            counts[1] += failed

    def nested_in(self, outer: StageInfo) -> tuple:
        """Return :meth:`export` as seen from the stage ``outer`` whose function is the pipeline
        this record is of (stage paths prefixed with ``outer``'s)."""
        hop = f"{outer.path or outer.index}/"
        errors = [DeadLetter(e.element, e.stage.nested_in(outer), e.error, e.message, e.traceback)
                  for e in self.errors]
        return (self.skipped, errors, {hop + path: n for path, n in self.by_stage.items()},
                {hop + path: counts for path, counts in self.passes.items()})

    def check(self) -> None:
        """Raise :class:`TooManyErrors` when the failures exceed ``max_errors`` (count or fraction)."""
        bound = self.policy.max_errors
        if bound is None or not self.skipped:
            return
        if isinstance(bound, int):
            if self.skipped > bound:
                raise self.too_many(f"{self.skipped} elements failed, more than max_errors={bound}")
            return
        for path, (entered, failed) in self.passes.items():
            if failed and failed > bound * entered:
                raise self.too_many(f"{failed} of the {entered} elements entering the pass at stage {path} "
                                    f"failed, more than max_errors={bound} of them")

    def too_many(self, message: str, stage: StageInfo | None = None) -> TooManyErrors:
        """Return the error of a run that failed too often."""
        return TooManyErrors(message, self.skipped, self.errors, stage, self.by_stage)

    def result(self, results: Any) -> RunResult:
        """Return ``results`` with this record's dead letters and counts."""
        return RunResult(results, list(self.errors), self.skipped, dict(self.by_stage))


@dataclass(frozen=True)
class RunResult:
    """What ``Pipeline.run(data, on_error=...)`` returns: the ``results`` (what ``pipeline(data)``
    returns), the dead letters kept (``errors``, a list of :class:`DeadLetter`; empty under ``skip``),
    ``skipped`` (how many elements were dropped) and ``by_stage`` (that count per stage path).
    Unpacks as ``results, errors, skipped = pipeline.run(data, on_error="collect")``."""

    results: Any
    errors: list
    skipped: int
    by_stage: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator:
        return iter((self.results, self.errors, self.skipped))

    def summary(self, sample: int = SAMPLE) -> dict:
        """Return the counts and the first ``sample`` dead letters (JSON): ``{"skipped", "by_stage",
        "sample"}``, as a job record carries them."""
        return {"skipped": self.skipped, "by_stage": dict(self.by_stage),
                "sample": [letter.to_dict() for letter in self.errors[:sample]]}


def json_lines(letters: list, max_bytes: int) -> tuple[str, int]:
    """Return the first dead letters as JSON lines of at most ``max_bytes`` bytes (UTF-8, newlines
    included), and how many of them that is."""
    lines, size = [], 0
    for letter in letters:
        line = json.dumps(letter.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        size += len(line.encode("utf-8"))
        if size > max_bytes:
            break
        lines.append(line)
    return "".join(lines), len(lines)


_current: ContextVar[Salvage | None] = ContextVar("atoll_salvage", default=None)


def current() -> Salvage | None:
    """Return the salvage of the run in this context when its policy drops failing elements."""
    return _current.get()


@contextmanager
def salvaging(policy: ErrorPolicy) -> Iterator[Salvage]:
    """Record the failures of the passes run in this block under ``policy``; yield the record.
    Under ``fail`` nothing is recorded (a pass fails as always)."""
    salvage = Salvage(policy)
    token = _current.set(salvage if policy.salvages else None)
    try:
        yield salvage
    finally:
        _current.reset(token)


def settings() -> ErrorPolicy | None:
    """Return the policy of the salvage active here, for a worker; None outside one."""
    salvage = _current.get()
    return None if salvage is None else salvage.policy


@dataclass
class Salvaged:
    """A worker's result with the failures it dropped (see :func:`run_salvaging`)."""

    value: Any
    exported: tuple


def run_salvaging(policy: ErrorPolicy, function, *args: Any) -> Salvaged:
    """Worker side: call ``function(*args)`` in a salvage of ``policy``; return its result and record."""
    with salvaging(policy) as salvage:
        value = function(*args)
    return Salvaged(value, salvage.export())


def unmerged(result: Any) -> Any:
    """Return the value of a :class:`Salvaged` result without taking its record."""
    return result.value if type(result) is Salvaged else result


def merged_into(salvage: Salvage | None, result: Any) -> Any:
    """Caller side: add a :class:`Salvaged` result's record to ``salvage``; return its value (anything
    else as it is)."""
    if type(result) is not Salvaged:
        return result
    if salvage is not None:
        salvage.merge(result.exported)
    return result.value

