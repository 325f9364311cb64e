"""Fault trials of `atoll serve` on the embedded default: its worker killed with SIGKILL mid-burst is
restarted, /health says so meanwhile, and every job the dead worker had taken runs again.

Real parts only: `atoll serve` (gunicorn and its supervised worker), the embedded broker on disk, a
loopback callback receiver. The figures are printed (run with ``-s``) and recorded in
docs/reliability.rst.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.support import eventually, job_config, serve, workers_ready

pytestmark = pytest.mark.slow

BURST = 200


def serving(config_path: Path, log_path: Path):
    """Return a context running `atoll serve async_service:service` with ``config_path``; it yields
    (base URL, process) once a worker is up."""
    return serve("async_service:service", config_path, workers=2, threads=None, ready=workers_ready,
                 log=log_path)


def wait_for_health(url: str, predicate, timeout: float, what: str) -> tuple[int, dict]:
    """Poll /health until ``predicate(body)``; return (status code, body); fail naming ``what`` after
    ``timeout``."""
    def health() -> tuple[int, dict] | None:
        answer = requests.get(f"{url}/health", timeout=5)
        body = answer.json()
        return (answer.status_code, body) if predicate(body) else None

    return eventually(health, timeout, 0.05, what=what,
                      ignoring=(requests.RequestException, ValueError, KeyError))


def embedded_worker(serve: subprocess.Popen) -> psutil.Process:
    """Return the worker process that `atoll serve` runs beside gunicorn."""
    def worker() -> psutil.Process | None:
        for child in psutil.Process(serve.pid).children():
            try:
                if "worker" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                pass
        return None

    return eventually(worker, 30, what="atoll serve to run a worker process")


def kill9(worker: psutil.Process) -> None:
    """SIGKILL the worker's main process and its pool children at once."""
    for process in [worker, *worker.children(recursive=True)]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def test_kill_9_of_the_embedded_worker_loses_no_job(tmp_path, callback_receiver):
    path, _ = job_config(tmp_path)
    log_path = tmp_path / "serve.log"
    with serving(path, log_path) as (url, serve):
        session = requests.Session()
        ids = []
        for i in range(BURST):
            answer = session.post(f"{url}/pipelines/nap", json={
                "data": [i], "kwargs": {"seconds": 0.05}, "callback": callback_receiver.url})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["job_id"])
        recoveries, held = [], 0
        for done_before_kill in (40, 110):
            assert callback_receiver.wait_for(lambda r, n=done_before_kill: len(r.job_ids()) >= n, 120)
            worker = embedded_worker(serve)
            kill9(worker)
            killed_at = time.monotonic()
            # the messages the dead worker had taken and not yet acknowledged: they must go back
            held += sum(1 for f in (tmp_path / "state" / "broker" / "consumers").glob("*/*.msg"))
            assert len(callback_receiver.job_ids()) < BURST, "the burst ended before the kill"
            # meanwhile /health says the worker is missing: 503, and why
            status, body = wait_for_health(url, lambda body: not body["checks"]["workers"]["ok"], 10,
                                           what="/health to notice the dead worker")
            assert status == 503 and body["status"] != "ok"
            assert "restarts its embedded worker" in body["checks"]["workers"]["error"]
            wait_for_health(url, lambda body: body["checks"]["workers"]["ok"], 60,
                            what="the embedded worker to be restarted")
            recoveries.append(time.monotonic() - killed_at)
            assert embedded_worker(serve).pid != worker.pid
        missing = callback_receiver.wait_for_jobs(ids, timeout=180)
        calls = collections.Counter(c.json["job_id"] for c in callback_receiver.accepted())
        print(f"\nkill -9 trial: submitted {BURST}, completed {len(calls)}, lost {len(missing)}, "
              f"duplicated {sum(n - 1 for n in calls.values())}, "
              f"recovered in {', '.join(f'{s:.1f} s' for s in recoveries)}")
        assert not missing, f"{len(missing)} of {BURST} jobs never completed"
        assert all(c.json["status"] == "succeeded" for c in callback_receiver.accepted())
        for job_id in ids[::20]:
            assert session.get(f"{url}/jobs/{job_id}").json()["status"] == "succeeded"
        # a job submitted after the kills runs too
        answer = session.post(f"{url}/pipelines/double", json={"data": [21], "async": True})
        eventually(lambda: session.get(answer.json()["status_url"]).json()["status"] == "succeeded", 30,
                   what="a job submitted after the kills to run")
    text = log_path.read_text(errors="replace")
    assert text.count("embedded worker restarted as pid") == 2, text[-3000:]
    # a kill between two jobs finds nothing to give back; a kill during one must say what went back
    assert ("went back to their queue" in text) == (held > 0), (held, text[-3000:])


def test_supervisor_restarts_a_dying_worker_with_backoff_and_stops_it(caplog):
    from atoll.cli import WorkerSupervisor

    caplog.set_level("WARNING", logger="atoll.cli")
    # a "worker" that dies at once: restarted each time, with growing (here capped, 0.2 s) delays
    supervisor = WorkerSupervisor([sys.executable, "-c", "pass"], poll_interval=0.05,
                                  backoff_max=0.2).start()
    try:
        eventually(lambda: supervisor.restarts >= 3, 30, 0.05, what="the supervisor to restart 3 times")
    finally:
        supervisor.stop()
    assert "starting another in 0.2 s" in caplog.text and "in 1.0 s" not in caplog.text  # capped
    assert "embedded worker restarted as pid" in caplog.text
    # a long-running worker is stopped by stop() and not started again
    supervisor = WorkerSupervisor([sys.executable, "-c", "import time; time.sleep(600)"],
                                  poll_interval=0.05).start()
    process = supervisor.process
    supervisor.stop()
    assert process.poll() is not None and supervisor.process is process and supervisor.restarts == 0
