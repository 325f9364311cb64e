"""The service that the asynchronous tests' worker processes load (``atoll worker async_service:service``).

Its config comes from ``$ATOLL_CONF``, written by the tests; tests build the same service in-process
with :func:`build_service` to submit jobs.
"""

from __future__ import annotations

import builtins
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

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


def _flaky(x: Any, folder: str, fails: int, error: str) -> Any:
    """Raise ``error`` (a builtin exception's name) on the first ``fails`` attempts of the job, then
    return ``x``; each attempt leaves a file ``attempt-<n>`` in ``folder``. The attempt is Celery's
    retry count of the running task (an element may be called again within one attempt: the pass that
    locates a failing stage runs it a second time)."""
    from celery import current_task

    attempt = current_task.request.retries + 1
    Path(folder, f"attempt-{attempt}").write_text(str(os.getpid()))
    if attempt <= fails:
        raise getattr(builtins, error)(f"attempt {attempt} failed on purpose")
    return x


def _text_length(comment: dict) -> int:
    return len(comment["text"])


def _big(n: int) -> list:
    return ["x" * 100] * n


def build_service(config: Config) -> Atoll:
    """Return the test service: double, scale (runtime kwarg), explode, wordcount, nap (slow), divide (a
    lambda run on worker processes of the local executor, so it travels by value), comments (on_error
    collect), and the pipelines of the retries, progress and Spark tests."""
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
    # job retries: up to 3 attempts on ConnectionError (and its subclasses), 0.1 s backoff with jitter;
    # "flakyslow" waits 3 s (no jitter) before its retry, long enough to be cancelled meanwhile
    flaky = Pipeline(name="flaky").map(_flaky, kwargs=["folder", "fails", "error"])
    service.register_pipeline("/flaky", flaky, executor="serial",
                              retries={"max": 3, "on": ["ConnectionError"], "backoff": 0.1})
    service.register_pipeline("/flakyslow", flaky, executor="serial",
                              retries={"max": 3, "on": ["ConnectionError"], "backoff": 3, "jitter": False})
    # dirty data: a comment without "text" is dropped and kept as a dead letter, unless a call says
    # otherwise; more than half of them failing fails the run
    service.register_pipeline("/comments", Pipeline(name="comments").map(_text_length), executor="serial",
                              on_error="collect", max_errors=0.5)
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
