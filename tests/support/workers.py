"""Real worker processes (``atoll worker`` or ``celery -A``) for a config file, a stack of one worker on
a broker, and polling a job's record."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from atoll.config import load_config
from tests.support.config import job_config
from tests.support.serving import TESTS
from tests.support.waiting import eventually


class Worker:
    """A real worker process (``atoll worker`` or ``celery -A``) for the service of a config file."""

    def __init__(self, config_path: Path, *extra: str, command: str = "atoll", log_path: Path | None = None,
                 env: dict | None = None, target: str = "async_service:service"):
        self.config_path = config_path
        self.target = target
        self.env = env or {}
        self.extra = extra
        self.command = command
        self.log_path = log_path or config_path.with_suffix(f".{uuid.uuid4().hex[:6]}.log")
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        env = {**os.environ, "ATOLL_CONF": str(self.config_path),
               "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent),
                                              os.environ.get("PYTHONPATH", "")]), **self.env}
        if self.command == "atoll":
            argv = [sys.executable, "-m", "atoll.cli", "worker", self.target, *self.extra]
        else:
            config = load_config(str(self.config_path))
            app = self.target.replace(":service", ":celery")
            argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", config.worker_queue,
                    "-c", str(config.worker_concurrency), "--loglevel=INFO", *self.extra]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=str(TESTS))
        return self

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        """Wait until the worker logs that it is ready; raise with its log if it exits or times out."""
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            return " ready." in self.log()

        try:
            eventually(ready, timeout, what="the worker to log that it is ready")
        except AssertionError as error:
            raise RuntimeError(f"{error}:\n{self.log()}") from None
        return self

    def log(self) -> str:
        """Return the worker's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self) -> list[int]:
        """Return the pids of the worker's main process and its pool children."""
        main = psutil.Process(self.process.pid)
        return [main.pid, *(child.pid for child in main.children(recursive=True))]

    def kill9(self, children_only: bool = False) -> list[int]:
        """SIGKILL the worker's pool children (and its main process unless ``children_only``)."""
        pids = self.pids()
        targets = pids[1:] if children_only else pids
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not children_only:
            self.process.wait(10)
        return targets

    def alive(self) -> bool:
        """Return True while the main process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after 20 s; close the log."""
        if self.process is None:
            return
        if self.process.poll() is None:
            pids = self.pids()
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.process.wait()
        self._log.close()


def delete_queue(broker_url: str, queue: str) -> None:
    """Remove a test run's queue from the shared RabbitMQ."""
    from kombu import Connection, Queue

    with Connection(broker_url) as conn:
        Queue(queue, channel=conn.channel()).delete()


@contextlib.contextmanager
def running_stack(request: Any, tmp_path_factory: Any, name: str, **overrides: Any) -> Iterator[tuple]:
    """Yield (config, worker) with one worker process on the broker ``request.param`` names (embedded
    or rabbitmq); the worker is stopped and a RabbitMQ queue deleted afterwards."""
    if request.param == "rabbitmq":
        overrides["worker_broker"] = request.getfixturevalue("rabbitmq_url")
    path, config = job_config(tmp_path_factory.mktemp(f"{name}-{request.param}"), **overrides)
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        yield config, worker
    finally:
        worker.stop()
        if config.worker_broker:
            delete_queue(config.worker_broker, config.worker_queue)


def race_saves(target: Callable, args_for: Callable[[str], tuple], outcomes: tuple[str, ...],
               job_ids: list[str]) -> dict[str, str]:
    """Run ``target(*args_for(outcome), job_ids, outcome, start, results)`` in one forked process per
    outcome, all released at once; each puts (job_id, outcome, stored) per job. Return the winning
    outcome of each job, failing if two saves of one job were stored."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    racers = [context.Process(target=target, args=(*args_for(o), job_ids, o, start, results))
              for o in outcomes]
    for racer in racers:
        racer.start()
    start.set()
    saves = [results.get(timeout=60) for _ in range(len(outcomes) * len(job_ids))]
    for racer in racers:
        racer.join(30)
    winners: dict[str, str] = {}
    for job_id, outcome, stored in saves:
        if stored:
            assert job_id not in winners, f"two saves of job {job_id} were stored"
            winners[job_id] = outcome
    return winners


def wait_for_job(client: Any, job_id: str, statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
                 timeout: float = 30.0) -> dict:
    """Return the record of ``GET /jobs/<id>`` (through a Flask test client) once its status is one of
    ``statuses``, or as it is after ``timeout`` s: the caller asserts on it."""
    record: dict = {}

    def ended() -> bool:
        nonlocal record
        record = client.get(f"/jobs/{job_id}").get_json()
        return record.get("status") in statuses

    with contextlib.suppress(AssertionError):
        eventually(ended, timeout, 0.02)
    return record
