"""Progress: progress reports from the executors, and what a run's caller sets up to get them.

A caller (the service's Celery task, a script) wraps a run in :func:`using`::

    from atoll import progress

    def write(done, total):
        print(f"{done}/{total}")

    with progress.using(progress.RunControl(on_progress=write)):
        pipeline.run(data, executor=executor)

Each executor looks the control up once per pass (:func:`current`) and counts its units of work in it:

* serial executor: a pass is one unit (total 1, done 1 when it ends);
* local executor: a pass sent to the worker processes counts its chunks, each done when its result
  comes back, and the chunks this process runs alongside them, each done when it has run (the probe
  slices that run here count as nothing); a pass that stays in this process counts as one unit, as
  on the serial executor;
* Spark executor: the tasks of each Spark job the run starts (one per partition of each stage).

``total`` grows as passes announce their units (a streaming input announces each chunk as it is
submitted); ``done`` follows. ``on_progress(done, total)`` is called at most once per ``interval``
seconds, always in the thread that runs the pipeline, and once more when :func:`using` ends
(:meth:`RunControl.flush`), so the last state is reported.

Stopping is driven by exceptions, not by this module: when an exception escapes a pass while work is in
flight (a signal handler's exception such as Celery's ``SoftTimeLimitExceeded``, ``KeyboardInterrupt``),
the local executor kills the worker processes running its chunks and the Spark executor cancels the
run's job group; the exception propagates unchanged. That happens with or without a control.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["RunControl", "using", "current"]

log = logging.getLogger(__name__)


class RunControl:
    """Counts a run's units of work and reports ``on_progress(done, total)``, throttled.

    ``interval`` is the least number of seconds between two calls of ``on_progress``. A failing
    ``on_progress`` never stops the run: its exception is logged (the first one as a warning, later
    ones at debug level) and the run goes on. ``propagate`` names exception types that do pass
    through (``KeyboardInterrupt`` and ``SystemExit`` always do): a signal handler's exception, such as
    Celery's ``SoftTimeLimitExceeded``, may be raised while ``on_progress`` runs and must still stop
    the run. ``on_progress`` must not call this control itself.

    Thread-safe: executors may count from any thread; ``on_progress`` calls never overlap.
    """

    def __init__(self, on_progress: Callable[[int, int], None] | None = None, interval: float = 0.5,
                 *, propagate: tuple[type[BaseException], ...] = ()):
        self.on_progress = on_progress
        self.interval = interval
        self.propagate = tuple(propagate)
        self._done = 0
        self._total = 0
        self._lock = threading.Lock()  # the counts
        self._reporting = threading.Lock()  # one on_progress call at a time
        self._reported: tuple[int, int] | None = None
        self._last_report = -float("inf")
        self._callback_failed = False

    def __repr__(self) -> str:
        return f"RunControl(done={self._done}, total={self._total})"

    @property
    def done(self) -> int:
        """Units of work finished so far."""
        return self._done

    @property
    def total(self) -> int:
        """Units of work announced so far."""
        return self._total

    def add_total(self, n: int) -> None:
        """Announce ``n`` more units of work."""
        with self._lock:
            self._total += n
        self.tick()

    def advance(self, n: int = 1) -> None:
        """Count ``n`` units of work as done."""
        with self._lock:
            self._done += n
        self.tick()

    def tick(self) -> None:
        """Report the current state if it changed and ``interval`` seconds passed since the last report.

        Executors call it while they wait, so a state that was throttled is reported in time.
        """
        if self.on_progress is None:
            return
        if time.monotonic() - self._last_report < self.interval:
            return
        if not self._reporting.acquire(blocking=False):  # another thread is reporting right now
            return
        try:
            self._report(force=False)
        finally:
            self._reporting.release()

    def flush(self) -> None:
        """Report the current state now unless it was the last one reported."""
        if self.on_progress is None:
            return
        with self._reporting:
            self._report(force=True)

    def _report(self, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            state = (self._done, self._total)
        if state == (self._reported or (0, 0)) or (not force and now - self._last_report < self.interval):
            return
        self._reported, self._last_report = state, now
        try:
            self.on_progress(*state)
        except self.propagate:
            raise
        except Exception as exc:
            if not self._callback_failed:
                self._callback_failed = True
                log.warning("on_progress(%d, %d) failed; the run goes on (later failures are logged "
                            "at debug level): %r", *state, exc, exc_info=True)
            else:
                log.debug("on_progress(%d, %d) failed: %r", *state, exc)


_current: contextvars.ContextVar[RunControl | None] = contextvars.ContextVar("atoll_run_control",
                                                                             default=None)


def current() -> RunControl | None:
    """Return the control of the run in progress in this context, or None."""
    return _current.get()


@contextlib.contextmanager
def using(control: RunControl) -> Iterator[RunControl]:
    """Make ``control`` the current one for the block; its last state is reported when the block ends."""
    token = _current.set(control)
    try:
        yield control
    finally:
        _current.reset(token)
        control.flush()
