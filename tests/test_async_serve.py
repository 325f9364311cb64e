"""`atoll serve` on the embedded default: the web process starts a worker beside itself, so async jobs
and callbacks work with nothing else installed. Exercised over a real socket with the Python client."""

from __future__ import annotations

import signal
import time

import psutil
import pytest
import requests

from atoll import Client, RemoteError, verify_callback
from tests.support import SECRET, eventually, job_config, serve, workers_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, serve process) of `atoll serve async_service:service` on the embedded broker."""
    folder = tmp_path_factory.mktemp("serve")
    path, config = job_config(folder)
    assert config.worker_broker is None and config.embedded_worker
    with serve("async_service:service", path, workers=1, threads=None, ready=workers_ready,
               log=folder / "serve.log") as (url, process):
        yield url, process


def test_submit_result_and_status(served):
    url, _ = served
    with Client(url) as client:
        job = client.submit("double", [1, 2])
        assert job.status() in ("queued", "running", "succeeded")
        assert job.result(timeout=30) == [2, 4]
        assert job.done() and job.status() == "succeeded"
        assert client.job(job.job_id).result(timeout=5) == [2, 4]


def test_map_keeps_input_order(served):
    url, _ = served
    with Client(url) as client:
        assert client.map("scale", [[1], [2], [3], [4]], timeout=60, factor=3) == [[3], [6], [9], [12]]


def test_failed_job_raises_remote_error(served):
    url, _ = served
    with Client(url) as client:
        job = client.submit("explode", [2])
        with pytest.raises(RemoteError) as caught:
            job.result(timeout=30)
        assert caught.value.name == "KeyError"
        assert caught.value.stage["function"] == "_explode_on_three" and caught.value.item == 3


def test_result_timeout(served):
    url, _ = served
    with Client(url) as client:
        job = client.submit("nap", [1], seconds=3)
        with pytest.raises(TimeoutError):
            job.result(timeout=0.2)
        assert job.result(timeout=30) == [1]


def test_callback_over_real_sockets(served, callback_receiver):
    url, _ = served
    answer = requests.post(f"{url}/pipelines/wordcount", json={"data": ["x y x"],
                                                               "callback": callback_receiver.url})
    assert answer.status_code == 202
    assert answer.headers["Location"] == answer.json()["status_url"]
    job_id = answer.json()["job_id"]
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    call = callback_receiver.accepted()[0]
    assert verify_callback(SECRET, call.headers, call.body)
    assert sorted(map(tuple, call.json["results"])) == [("x", 2), ("y", 1)]
    assert requests.get(answer.json()["status_url"]).json()["status"] == "succeeded"


def test_serve_stops_its_worker(tmp_path):
    path, _ = job_config(tmp_path)
    with serve("async_service:service", path, workers=1, threads=None, ready=lambda _: True) as (_, process):
        workers = eventually(lambda: [p for p in psutil.Process(process.pid).children()
                                      if "worker" in p.cmdline()], 60, 0.2,
                             what="atoll serve to start a worker process on the embedded broker")
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        process.wait(40)
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive
