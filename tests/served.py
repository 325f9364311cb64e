"""A service of small pipelines for the service, socket, client and OpenAPI tests, and a helper that
serves a service under ``atoll serve`` (gunicorn) on a free loopback port.

``python -m atoll serve served:service`` imports this module with ``ATOLL_CONF`` deciding the config.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import requests

from atoll import Atoll, Pipeline
from atoll.config import Config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def scale(x, factor):
    """Return x * factor."""
    return x * factor


def lookup(key):
    """Return the value of ``key`` in a fixed table (KeyError for anything else)."""
    return {"a": 1, "b": 2}[key]


def odd_values(_):
    """Return values JSON has no native form for."""
    return {
        "tuple": (1, (2, 3)),
        "int64": np.int64(7),
        "float32": np.float32(0.5),
        "bool": np.bool_(True),
        "array": np.arange(6).reshape(2, 3),
        "set": {3, 1, 2},
        "date": dt.date(2024, 2, 29),
        "datetime": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc),
        "decimal": Decimal("1.10"),
        "nan": float("nan"),
        "int_keys": {1: "one", 2: "two"},
    }


class Opaque:
    """A value with no JSON form."""


def opaque_at(x):
    """Return a record whose score is not JSON for x == 3."""
    return {"x": x, "score": Opaque() if x == 3 else x}


def build_service(config: Config | None = None) -> Atoll:
    """Return a service with one pipeline for each behaviour the tests check."""
    service = Atoll(config)
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    service.register_pipeline("/scaled", Pipeline(name="scaled").map(scale, kwargs=["factor"]))
    service.register_pipeline("/echo", Pipeline(name="echo").to(None))
    service.register_pipeline("/lookup", Pipeline(name="lookup").map(lookup))
    service.register_pipeline("/odd", Pipeline(name="odd").to(odd_values))
    service.register_pipeline("/opaque", Pipeline(name="opaque").map(opaque_at))
    service.register_pipeline("/wordcount_local", Pipeline(name="wc").flatMap(str.split)
                              .map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b), n_jobs=2)
    return service


service = build_service()
app = service.create_app()


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_process(target: str, conf: str | None = None, workers: int = 2, threads: int | None = 4,
                  extra_env: dict | None = None, ready=None, log: Path | None = None,
                  timeout: float = 60):
    """Run ``atoll serve target`` on a free loopback port; yield (base URL, process) once
    ``ready(url)`` is true (by default: ``/health`` answers below 500); stop it by pid with SIGTERM
    (SIGKILL after 40 s). ``threads`` None leaves ``--threads`` to ``atoll serve``.

    Its output (the access log among it) goes to the file ``log``, read it after the block, or to a
    temporary file: never to a pipe, which nobody reads while it serves and which would fill up.
    """
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]), **(extra_env or {})}
    env.pop("ATOLL_CONF", None)
    if conf:
        env["ATOLL_CONF"] = conf
    cmd = [sys.executable, "-m", "atoll", "serve", target, "--bind", f"127.0.0.1:{port}",
           "--workers", str(workers)] + ([] if threads is None else ["--threads", str(threads)])
    output = open(log, "w+") if log else tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    ready = ready or answers("/health")
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                output.seek(0)
                raise RuntimeError(f"atoll serve exited with {proc.returncode}:\n{output.read()}")
            try:
                if ready(url):
                    break
            except (requests.RequestException, ValueError, KeyError):  # not listening yet, or starting
                pass
            if time.monotonic() > deadline:
                output.seek(0)
                raise RuntimeError(f"atoll serve was not ready within {timeout} s:\n{output.read()}")
            time.sleep(0.1)
        yield url, proc
    finally:
        stop(proc, 40)
        output.close()


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop ``process`` with SIGTERM, and SIGKILL when it has not exited ``timeout`` s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(path: str):
    """Return a readiness check: ``path`` answers below 500."""
    return lambda url: requests.get(url + path, timeout=1).status_code < 500


def workers_ready(url: str) -> bool:
    """Return True when the service at ``url`` reports a live worker in ``/health``."""
    return requests.get(f"{url}/health", timeout=2).json()["checks"]["workers"]["ok"]


@contextlib.contextmanager
def serving(target: str, conf: str | None = None, workers: int = 2, threads: int = 4,
            extra_env: dict | None = None, ready_path: str = "/health", log: Path | None = None):
    """Run ``atoll serve target`` (see :func:`serve_process`); yield its base URL once ``ready_path``
    answers below 500."""
    with serve_process(target, conf, workers, threads, extra_env, answers(ready_path), log) as (url, _):
        yield url
