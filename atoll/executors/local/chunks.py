"""Running one chunk of a local pass: in a worker (:func:`run_chunk`, the task the pool runs) or in
this process alongside the workers (:func:`run_here`). A chunk's own failure is returned as a
:class:`~atoll.executors.wire.Failed`, never raised, so that the pool does not wrap it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atoll import capture, dead_letters
from atoll.errors import PipelineError
from atoll.executors.wire import RESEND, Failed, loads_pass, pack, unpack
from atoll.operators import run_steps
from atoll.sources import ByteRange

#: elements of a byte range run at once in a worker (a range is read as it runs, never held whole)
RANGE_SLICE = 50_000

__all__ = ["run_chunk", "run_here", "run_apart", "taken", "unwrapped", "any_failed"]


def run_chunk(payload: bytes, serializer: str, chunk, log_settings: tuple[int, int] | None = None,
              policy: dead_letters.ErrorPolicy | None = None) -> Any:
    """Worker side: run the fused pass over one chunk; return its result packed.

    ``log_settings`` (those of a job-log capture active where the pass started) captures what the
    chunk prints and logs and returns it with the result (:func:`atoll.capture.run_captured`); an error
    ``policy`` that drops failing elements returns what it dropped with it
    (:func:`atoll.dead_letters.run_salvaging`).
    """
    if log_settings is not None:
        return capture.run_captured(log_settings, run_chunk, payload, serializer, chunk, None, policy)
    if policy is not None:
        return dead_letters.run_salvaging(policy, run_chunk, payload, serializer, chunk)
    steps, aggregate = loads_pass(payload, serializer)
    try:
        chunk = unpack(chunk)
    except Exception:
        return RESEND
    try:
        if isinstance(chunk, ByteRange):  # read here, from the store, a slice at a time
            from atoll.executors.serial import chunks_of, run_chunks

            return pack(run_chunks(chunks_of(chunk, RANGE_SLICE), steps, aggregate))
        return pack(run_steps(steps, chunk, aggregate))
    except PipelineError as exc:  # StageFailure included: it pickles with stage, item, traceback
        return Failed(exc)


def run_here(seq, start: int, end: int, steps, aggregate, every: int, between: Callable) -> Any:
    """Run the fused pass over ``seq[start:end]`` in this process, ``every`` elements at a time folded
    on into one result, calling ``between(remaining)`` after each with the number of elements left to
    run; return the result, or a :class:`~atoll.executors.wire.Failed`."""
    try:
        if aggregate is None:
            out: list = []
            for at in range(start, end, every):
                out += run_steps(steps, seq[at:min(at + every, end)])
                between(max(0, end - at - every))
            return out
        acc = run_steps(steps, (), aggregate)  # an empty input's partial: EMPTY, or {} by key
        for at in range(start, end, every):
            acc = run_steps(steps, seq[at:min(at + every, end)], aggregate, acc)
            between(max(0, end - at - every))
        return acc
    except PipelineError as exc:
        return Failed(exc)


def run_apart(function: Callable, *args: Any) -> Any:
    """Run ``function(*args)`` in this process with a capture and a salvage of its own (those of this
    context's settings), so that what it prints and drops joins the pass's in input order when its
    result is :func:`taken`."""
    log_settings, policy = capture.settings(), dead_letters.settings()
    if policy is not None:
        function, args = dead_letters.run_salvaging, (policy, function, *args)
    if log_settings is not None:
        function, args = capture.run_captured, (log_settings, function, *args)
    return function(*args)


def taken(log: capture.JobLog | None, salvage: dead_letters.Salvage | None, result: Any) -> Any:
    """Return a chunk's result, its captured output added to ``log`` and its dropped elements to
    ``salvage`` (see :func:`run_chunk`, :func:`run_apart`)."""
    return dead_letters.merged_into(salvage, capture.merged_into(log, result))


def unwrapped(result: Any) -> Any:
    """Return a chunk's result without taking its output or dropped elements."""
    return dead_letters.unmerged(capture.unmerged(result))


def any_failed(values: list) -> bool:
    """Return True when one of a pass's ``values`` is a chunk's own failure."""
    return any(isinstance(value, Failed) for value in values)
