"""Nothing grows without bound on the embedded default: job records expire after ``result_expires``
(GET /jobs/<id> then answers 404 saying so), /health leaves nothing behind, and a soak of 5,000 jobs
and 1,000 health calls leaves the state folder and the idle worker's CPU where they started."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from celery import Celery

from atoll.service.jobs.queue import cleanup_interval
from atoll.service.transport import FileResultBackend
from tests.async_service import build_service
from tests.support import Worker, eventually, job_config, wait_for_job
from tests.test_serve_faults import embedded_worker, kill9, serving, wait_for_health


def test_an_expired_file_record_reads_as_missing_and_cleanup_removes_it(tmp_path):
    app = Celery(set_as_current=False)
    app.conf.result_expires = 60
    backend = FileResultBackend(app=app, url=f"file://{tmp_path}")
    backend.store_result("old", {"status": "succeeded"}, "SUCCESS")
    backend.store_result("new", {"status": "succeeded"}, "SUCCESS")
    (tmp_path / ".tmp-0123-celery-task-meta-x").write_bytes(b"{")  # left by a writer that died
    long_ago = time.time() - 61
    for name in ("celery-task-meta-old", ".tmp-0123-celery-task-meta-x"):
        os.utime(tmp_path / name, (long_ago, long_ago))
    assert backend.get_task_meta("old", cache=False)["status"] == "PENDING"
    assert backend.get_task_meta("new", cache=False)["status"] == "SUCCESS"
    assert backend.cleanup() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["celery-task-meta-new"]


def _stored_ids(config) -> list[str]:
    """Return the ids of everything the result backend of ``config`` holds (records and what is kept
    beside them, such as ``<job_id>.request``)."""
    url = config.worker_backend
    if url and url.startswith("db+sqlite:///"):
        with sqlite3.connect(url[len("db+sqlite:///"):]) as db:
            return [row[0] for row in db.execute("SELECT task_id FROM celery_taskmeta")]
    prefix = "celery-task-meta-"
    return [p.name[len(prefix):] for p in (Path(config.state_dir) / "results").glob(prefix + "*")]


def _stored_records(config) -> int:
    """Return how many job records the result backend of ``config`` holds."""
    return sum("." not in task_id for task_id in _stored_ids(config))


def _kept_requests(config) -> int:
    """Return how many kept requests (for re-runs) lie beside the job records."""
    return sum(task_id.endswith(".request") for task_id in _stored_ids(config))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "database"])
def test_job_records_expire_and_then_answer_404(tmp_path, backend):
    overrides = {}
    if backend == "database":
        overrides["worker_backend"] = f"db+sqlite:///{tmp_path / 'jobs.sqlite'}"
    path, config = job_config(tmp_path, result_expires=2, **overrides)
    client = build_service(config).create_app().test_client()
    worker = Worker(path).start().wait_ready()
    try:
        ids = [client.post("/pipelines/double", json={"data": [i], "async": True}).get_json()["job_id"]
               for i in range(20)]
        for job_id in ids:
            assert wait_for_job(client, job_id)["status"] == "succeeded"
        assert _stored_records(config) == 20 and _kept_requests(config) == 20
        # removed within result_expires + one cleanup interval; generous for a busy machine
        eventually(lambda: _stored_ids(config) == [], 2 + cleanup_interval(2) + 30, 0.2,
                   what="expired records and their kept requests to be removed")
        answer = client.get(f"/jobs/{ids[0]}")
        assert answer.status_code == 404
        message = answer.get_json()["error"]["message"]
        assert "expired" in message and "never submitted" in message
    finally:
        worker.stop()


def _state_usage(folder) -> tuple[int, int]:
    """Return (files, bytes) under ``folder``."""
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.stat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return files, size


def _idle_cpu(serve, seconds: float = 5.0) -> float:
    """Return the CPU percent used by the embedded worker (main process and pool) over ``seconds``."""
    worker = embedded_worker(serve)
    processes = [worker, *worker.children(recursive=True)]
    for process in processes:
        process.cpu_percent(None)
    time.sleep(seconds)
    return sum(process.cpu_percent(None) for process in processes)


#: the soak's bounds: files and bytes in the state folder, CPU percent points of the idle worker
FILES_BOUND, BYTES_BOUND, CPU_BOUND = 10, 64 * 1024, 10.0


@pytest.mark.slow
def test_soak_5000_jobs_and_1000_health_calls_leave_storage_and_idle_cpu_where_they_started(tmp_path):
    path, config = job_config(tmp_path, result_expires=3)
    state = tmp_path / "state"
    with serving(path, tmp_path / "serve.log") as (url, serve):
        # a worker that died once leaves control queues behind unless the broker cleans up after it
        kill9(embedded_worker(serve))
        wait_for_health(url, lambda body: not body["checks"]["workers"]["ok"], 10,
                        what="/health to notice the dead worker")
        wait_for_health(url, lambda body: body["checks"]["workers"]["ok"], 60,
                        what="the embedded worker to be restarted")
        time.sleep(3)  # one dead-consumer pass and one cleanup pass have run
        files_before, bytes_before = _state_usage(state)
        cpu_before = _idle_cpu(serve)

        local = threading.local()

        def session() -> requests.Session:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            return local.session

        def submit(i: int) -> str:
            answer = session().post(f"{url}/pipelines/double", json={"data": [i], "async": True})
            assert answer.status_code == 202, answer.text
            return answer.json()["job_id"]

        def health(_: int) -> int:
            return session().get(f"{url}/health").status_code

        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            checks = pool.map(health, range(1000))
            ids = list(pool.map(submit, range(5000)))
            assert set(checks) == {200}
        for job_id in ids[-50:]:
            eventually(lambda job_id=job_id: requests.get(f"{url}/jobs/{job_id}").json().get("status")
                       == "succeeded", 120, what=f"job {job_id} to finish")
        busy = time.monotonic() - started
        queue = state / "broker" / "queue"
        eventually(lambda: os.listdir(queue) == [], 120, 0.5, what="no jobs left in the queue")
        # every record expires (3 s) and is removed at the next cleanup pass (1 s)
        deadline = time.monotonic() + 3 + cleanup_interval(3) + 60
        while list((state / "results").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.5)
        files_after, bytes_after = _state_usage(state)
        cpu_after = _idle_cpu(serve)
        assert requests.get(f"{url}/jobs/{ids[0]}").status_code == 404
    print(f"\nsoak: 5000 jobs + 1000 health calls in {busy:.0f} s; state folder {files_before} files / "
          f"{bytes_before} B before, {files_after} files / {bytes_after} B after; idle worker CPU "
          f"{cpu_before:.1f}% before, {cpu_after:.1f}% after")
    assert files_after <= files_before + FILES_BOUND
    assert bytes_after <= bytes_before + BYTES_BOUND
    assert cpu_after <= cpu_before + CPU_BOUND
