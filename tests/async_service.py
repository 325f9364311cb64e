"""The service that the asynchronous tests' worker processes load (``atoll worker async_service:service``).

Its config comes from ``$ATOLL_CONF``, written by the tests; tests build the same service in-process
with :func:`build_service` to submit jobs.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import yaml

from atoll import LocalExecutor, Pipeline
from atoll.config import Config, load_config
from atoll.service import Atoll


def _nap(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def _explode_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"no entry {x}")
    return x


def _chatty(x: Any) -> Any:
    print(f"seen {x}")
    print(f"warning about {x}", file=sys.stderr)
    logging.getLogger("chatty").info("logged %s", x)
    if x == "boom":
        raise ValueError("boom")
    return x


def _touch(x: Any, marker: str) -> Any:
    Path(marker).write_text(str(x))
    return x


def _nap_and_mark(x: int, seconds: float, folder: str) -> int:
    time.sleep(seconds)
    Path(folder, str(x)).write_text("done")
    return x


def _say_and_nap(x: Any, seconds: float) -> Any:
    print(f"started {x}", flush=True)
    time.sleep(seconds)
    return x


def _big(n: int) -> list:
    return ["x" * 100] * n


def build_service(config: Config) -> Atoll:
    """Return the test service: double, scale (runtime kwarg), explode, wordcount, nap (slow), and
    divide (a lambda run on worker processes of the local executor, so it travels by value)."""
    service = Atoll(config)
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    service.register_pipeline("/scale", Pipeline(name="scale").map(lambda x, factor: x * factor,
                                                                  kwargs=["factor"]))
    service.register_pipeline("/explode", Pipeline(name="explode").map(lambda x: x + 1)
                              .map(_explode_on_three))
    service.register_pipeline("/wordcount", Pipeline(name="wordcount").flatMap(str.split)
                              .map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b))
    service.register_pipeline("/nap", Pipeline(name="nap").map(_nap, kwargs=["seconds"]))
    service.register_pipeline("/divide", Pipeline(name="divide").map(lambda x: 60 // x),
                              executor=LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0))
    service.register_pipeline("/chatty", Pipeline(name="chatty").map(_chatty))
    service.register_pipeline("/touch", Pipeline(name="touch").map(_nap, kwargs=["seconds"])
                              .map(_touch, kwargs=["marker"]))
    service.register_pipeline("/chunked", Pipeline(name="chunked").map(_nap_and_mark,
                                                                       kwargs=["seconds", "folder"]),
                              executor=LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0,
                                                     max_chunk=1))
    service.register_pipeline("/big", Pipeline(name="big").flatMap(_big))
    service.register_pipeline("/saynap", Pipeline(name="saynap").map(_say_and_nap, kwargs=["seconds"]))
    # Spark in the worker's pool process (spark_master in the config), started on first use only
    service.register_pipeline("/sparknap", Pipeline(name="sparknap").map(_nap_and_mark,
                                                                         kwargs=["seconds", "folder"]),
                              distributed=True)
    return service


service = build_service(load_config())

if os.environ.get("ATOLL_TEST_RECURSION_LIMIT"):  # a worker whose pool hand-off fails on shallower data
    sys.setrecursionlimit(int(os.environ["ATOLL_TEST_RECURSION_LIMIT"]))


def __getattr__(name: str) -> Any:
    if name == "celery":  # for `celery -A async_service:celery`; created on use, not on import
        return service.celery
    raise AttributeError(name)


# -- the harness the tests use: config files and real worker processes ----------------------------

SECRET = "whsec_" + base64.b64encode(b"atoll-test-secret-0123456789abcdef").decode()
TESTS = Path(__file__).resolve().parent


def write_config(folder: Path, **overrides: Any) -> tuple[Path, Config]:
    """Write a test config (unique queue, fast retries, loopback callbacks allowed); return (path, config)."""
    values = {"state_dir": str(folder / "state"), "worker_queue": f"atoll-test-{uuid.uuid4().hex[:12]}",
              "worker_concurrency": 2, "callback_secret": SECRET, "callback_allow_private": True,
              "callback_backoff": 0.1, "callback_backoff_max": 1.0, "callback_max_retries": 10,
              "callback_timeout": 5.0, "log_level": "INFO", **overrides}
    path = folder / f"conf-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, load_config(str(path))


class Worker:
    """A real worker process (``atoll worker`` or ``celery -A``) for the service of a config file."""

    def __init__(self, config_path: Path, *extra: str, command: str = "atoll", log_path: Path | None = None,
                 env: dict | None = None):
        self.config_path = config_path
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
            argv = [sys.executable, "-m", "atoll.cli", "worker", "async_service:service", *self.extra]
        else:
            config = load_config(str(self.config_path))
            argv = [sys.executable, "-m", "celery", "-A", "async_service:celery", "worker",
                    "-Q", config.worker_queue, "-c", str(config.worker_concurrency), "--loglevel=INFO",
                    *self.extra]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=str(TESTS))
        return self

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        """Wait until the worker logs that it is ready; raise with its log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.log()}")

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


@contextmanager
def running_stack(request: Any, tmp_path_factory: Any, name: str, **overrides: Any) -> Iterator[tuple]:
    """Yield (config, worker) with one worker process on the broker ``request.param`` names (embedded
    or rabbitmq); the worker is stopped and a RabbitMQ queue deleted afterwards."""
    if request.param == "rabbitmq":
        overrides["worker_broker"] = request.getfixturevalue("rabbitmq_url")
    path, config = write_config(tmp_path_factory.mktemp(f"{name}-{request.param}"), **overrides)
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
    """Poll ``GET /jobs/<id>`` through a Flask test client until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        record = client.get(f"/jobs/{job_id}").get_json()
        if record.get("status") in statuses or time.monotonic() > deadline:
            return record
        time.sleep(0.02)


def produce(config_path: str, count: int, callback: str) -> list[str]:
    """Submit ``count`` double jobs through the HTTP layer of a fresh service; return their ids.

    Runs in a producer process of the stress test (module-level so that it can be spawned).
    """
    config = load_config(config_path)
    client = build_service(config).create_app().test_client()
    ids = []
    for i in range(count):
        answer = client.post("/pipelines/double", json={"data": [i], "callback": callback})
        if answer.status_code != 202:
            raise RuntimeError(f"submit {i} answered {answer.status_code}: {answer.get_data(as_text=True)}")
        ids.append(answer.get_json()["job_id"])
    return ids
