"""Synchronous calls have a time limit: past ``sync_time_limit`` (or a pipeline's own ``sync`` limit)
the call answers 504, while the service goes on answering every other call: a call stopped inside its
thread frees the thread, and one stuck in C code leaves its thread to a new one."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from atoll.config import load_config
from tests.stuck_service import build_service
from tests.support import eventually, serve, write_config


def alive(pid: int) -> bool:
    """Return True while process ``pid`` runs (a zombie counts as ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_pid(path: Path, timeout: float = 30) -> int:
    return int(eventually(lambda: path.exists() and path.read_text(), timeout, 0.05,
                          what=f"{path} to be written"))


# -- in process, through the Flask test client -----------------------------------------------------


@pytest.fixture
def client(tmp_path):
    config = load_config(state_dir=str(tmp_path / "state"), sync_time_limit=1.0,
                         pipeline_time_limits={"never_ends_too": {"sync": 2.0}, "nap": {"sync": None}})
    return build_service(config).create_app().test_client()


def test_a_call_past_its_limit_answers_504_and_stops(client, tmp_path):
    before = threading.active_count()
    started = time.monotonic()
    answer = client.post("/pipelines/never_ends", json={"data": [str(tmp_path / "pid")]})
    elapsed = time.monotonic() - started
    assert answer.status_code == 504
    error = answer.get_json()["error"]
    assert error["name"] == "TimeLimitExceeded" and error["limit"] == 1.0
    assert "sync_time_limit of 1.0 s" in error["message"] and "never_ends" in error["message"]
    assert 1.0 <= elapsed < 10
    assert threading.active_count() <= before + 1  # the call's work ended; only the watchdog is new
    assert client.post("/pipelines/double", json={"data": [2]}).get_json() == {"results": [4]}


def test_a_pipeline_that_swallows_exceptions_is_stopped_too(client):
    answer = client.post("/pipelines/swallows_everything", json={"data": None})
    assert answer.status_code == 504


def test_a_pipelines_own_limit_overrides_the_global_one(client, tmp_path):
    started = time.monotonic()
    answer = client.post("/pipelines/never_ends_too", json={"data": [str(tmp_path / "pid")]})
    assert answer.status_code == 504 and answer.get_json()["error"]["limit"] == 2.0
    assert time.monotonic() - started >= 2.0
    # "nap": {"sync": null}: no limit, although the global one is 1 s
    assert client.post("/pipelines/nap", json={"data": [1.5]}).get_json() == {"results": [1.5]}


def test_calls_within_the_limit_answer_as_usual(client):
    for i in range(50):
        assert client.post("/pipelines/double", json={"data": [i]}).get_json() == {"results": [2 * i]}
    answer = client.post("/pipelines/never_ends", json={"data": 5})  # a stage failure, not a limit
    assert answer.status_code == 422 or answer.get_json()["error"]["name"] != "TimeLimitExceeded"


def test_limits_for_pipelines_that_are_not_registered_are_logged(tmp_path, caplog):
    config = load_config(state_dir=str(tmp_path / "state"), pipeline_time_limits={"nevr_ends": {"sync": 1}})
    build_service(config).create_app()
    assert "pipeline_time_limits names pipelines that are not registered: nevr_ends" in caplog.text


def test_every_request_is_counted_in_while_served_and_out_after_refused_ones_too(tmp_path):
    from atoll import Pipeline

    config = load_config(state_dir=str(tmp_path / "state"), auth_tokens=["counted"])
    service = build_service(config)
    seen = []
    apps = []  # the watchdog of the app serving the call
    service.register_pipeline("/active", Pipeline(name="active").to(
        lambda _: seen.append(apps[0].extensions["atoll.watchdog"].active) or len(seen)))
    apps.append(service.create_app())
    client = apps[0].test_client()
    token = {"Authorization": "Bearer counted"}
    assert client.post("/pipelines/active", json={"data": 0}).status_code == 401  # refused by auth
    assert client.post("/pipelines/nope", json={"data": 0}, headers=token).status_code == 404
    assert client.post("/pipelines/active", json={"data": 0}, headers=token).status_code == 200
    assert seen == [1]  # its own request, in progress
    assert apps[0].extensions["atoll.watchdog"].active == 0


def test_serve_timeout_help_says_what_bounds_a_sync_call(capsys):
    from atoll.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "It does not bound a request" in help_text and "sync_time_limit" in help_text


# -- over a real socket, under atoll serve ---------------------------------------------------------


def stuck_calls(url: str, folder: Path, pipeline: str, count: int) -> tuple[list, dict, list]:
    """Start ``count`` never-ending calls in threads; return (threads, answers by index, pids of the
    processes that run them)."""
    answers: dict[int, tuple[int, dict, float]] = {}
    tag = uuid.uuid4().hex[:8]

    def call(i: int) -> None:
        started = time.monotonic()
        response = requests.post(f"{url}/pipelines/{pipeline}",
                                 json={"data": [str(folder / f"pid-{tag}-{i}")]}, timeout=120)
        answers[i] = (response.status_code, response.json(), time.monotonic() - started)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, answers, [wait_for_pid(folder / f"pid-{tag}-{i}", 60) for i in range(count)]


def retrying(send, retries: list):
    """Return ``send()``; once more after a dropped connection, which ``retries`` records. gunicorn
    drops a connection its process accepted in the very loop in which it stops (a graceful stop, as
    on every reload): clients of a web service retry that."""
    try:
        return send()
    except requests.ConnectionError:
        retries.append(time.monotonic())
        return send()


def serve_while(url: str, busy, deadline: float, retries: list) -> tuple[int, float]:
    """GET /health and POST /pipelines/double while ``busy()`` (until ``deadline``); return (rounds,
    slowest round in seconds)."""
    rounds, slowest = 0, 0.0
    while busy() and time.monotonic() < deadline:
        started = time.monotonic()
        health = retrying(lambda: requests.get(f"{url}/health", timeout=30), retries)
        assert health.status_code == 200
        double = retrying(lambda n=rounds: requests.post(f"{url}/pipelines/double", json={"data": [n]},
                                                         timeout=30), retries)
        assert double.json() == {"results": [2 * rounds]}
        slowest = max(slowest, time.monotonic() - started)
        rounds += 1
    return rounds, slowest


@pytest.mark.slow
def test_never_ending_calls_while_the_service_keeps_answering(tmp_path):
    limit = 3
    conf = write_config(tmp_path, embedded_worker=False, sync_time_limit=limit, log_level="WARNING")
    figures = []
    with serve("stuck_service:service", conf, workers=2, threads=4) as (url, _):
        # Python code that never ends: stopped inside its thread. 3 calls leave a free thread in each
        # of the 2 web processes, 10 hold every thread (others wait for the limit to free one).
        # Then a call blocked inside C: answered by the watchdog, its thread replaced by a new one.
        for pipeline, count in (("never_ends", 3), ("never_ends", 10), ("never_returns_from_c", 3)):
            began = time.monotonic()
            threads, answers, pids = stuck_calls(url, tmp_path, pipeline, count)
            retries: list = []
            rounds, slowest = serve_while(url, lambda a=answers, n=count: len(a) < n, began + 120, retries)
            for thread in threads:
                thread.join(120)
            recovered = time.monotonic() - began
            assert sorted(answers) == list(range(count))
            for status, body, elapsed in answers.values():
                assert status == 504 and body["error"]["name"] == "TimeLimitExceeded"
                assert limit <= elapsed < 10 * limit
            # stopped inside their threads or given up for new threads: no process ended, no
            # connection dropped
            assert all(alive(pid) for pid in pids)
            assert not retries
            if count == 3:
                assert slowest < limit, "a free thread was there, yet a request waited for the limit"
            figures.append((pipeline, count, len(set(pids)), recovered, rounds, slowest, len(retries)))
            # afterwards, with every thread free again
            for i in range(20):
                assert requests.post(f"{url}/pipelines/double", json={"data": [i]},
                                     timeout=30).json() == {"results": [2 * i]}
            assert requests.get(f"{url}/health", timeout=30).status_code == 200
    for pipeline, count, processes, recovered, rounds, slowest, dropped in figures:
        print(f"\nsync limit trial: {count} x {pipeline} in {processes} web processes (2 x 4 threads, "
              f"limit {limit} s): all 504 within {recovered:.1f} s; {rounds} health+double rounds "
              f"meanwhile, slowest {slowest * 1000:.0f} ms, {dropped} dropped connections retried")


@pytest.mark.slow
def test_as_many_hung_calls_as_web_threads_leave_every_other_call_its_answer(tmp_path):
    """A call sent while every web thread is stuck is answered 200, never reset: sleeping, blocked on
    a socket read (stuck in C, given up for new threads) or spinning in Python (stopped in its
    thread). A stuck call is answered 504 within sync_time_limit + GRACE (+ 1 s of slack) of starting
    to run, which is later when it was queued behind stuck calls in its web process."""
    from atoll.service.watchdog import GRACE

    limit, workers, threads = 2, 2, 4
    conf = write_config(tmp_path, embedded_worker=False, sync_time_limit=limit, log_level="WARNING")
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)  # accepts nothing, says nothing
    port = silent.getsockname()[1]
    try:
        with serve("stuck_service:service", conf, workers=workers, threads=threads) as (url, _):
            for pipeline in ("sleeps", "blocks_on_io", "spins", "sleeps"):
                stuck: dict[int, tuple] = {}
                fast: dict[int, tuple] = {}

                def call(answers: dict, i: int, path: str, body: dict) -> None:
                    started = time.monotonic()
                    try:
                        response = requests.post(f"{url}{path}", json=body, timeout=60)
                        answers[i] = (response.status_code, response.json(), time.monotonic() - started)
                    except requests.RequestException as exc:
                        answers[i] = (None, repr(exc), time.monotonic() - started)

                callers = [threading.Thread(target=call, args=(stuck, i, f"/pipelines/{pipeline}",
                                                               {"data": port}))
                           for i in range(workers * threads)]
                for caller in callers:
                    caller.start()
                time.sleep(0.5)
                callers += [threading.Thread(target=call, args=(fast, i, "/pipelines/double",
                                                                {"data": [i]}))
                            for i in range(workers * threads)]
                for caller in callers[workers * threads:]:
                    caller.start()
                for caller in callers:
                    caller.join(90)
                assert len(stuck) == len(fast) == workers * threads
                for status, body, elapsed in stuck.values():
                    assert status == 504, (pipeline, body)
                    assert body["error"]["name"] == "TimeLimitExceeded"
                    assert elapsed < 2 * (limit + GRACE) + 1, (pipeline, elapsed)
                for i, (status, body, elapsed) in fast.items():
                    assert status == 200, (pipeline, body)  # not reset, not 504
                    assert body == {"results": [2 * i]}
                    assert elapsed < limit + GRACE + 1, (pipeline, elapsed)
                assert requests.get(f"{url}/livez", timeout=5).status_code == 200
                print(f"\n{workers * threads} x {pipeline}: 504 after "
                      f"{max(a[2] for a in stuck.values()):.1f} s at most; the {workers * threads} calls "
                      f"sent meanwhile answered 200 after {max(a[2] for a in fast.values()):.1f} s at most")
    finally:
        silent.close()
