"""A job store that cannot be written loses no accepted job: a full disk under the embedded store (a
2 MiB tmpfs kept full) and Redis at its ``maxmemory`` (policy ``noeviction``), filled while jobs run,
then freed.

Real parts: a worker process (``atoll worker``), the embedded broker on disk, the embedded ``file://``
store or a Redis server; the service's HTTP layer in this process, read from fresh threads (Celery
makes a result backend per thread). Mounting a tmpfs needs root: skipped with the reason otherwise.
The Redis trial needs the server of ``tests/test_store_redis.py`` and changes its ``maxmemory`` and
``maxmemory-policy`` for a few seconds, restored afterwards.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from atoll.service.jobs.store import storage_failure
from tests.async_service import build_service
from tests.support import Worker, eventually, job_config, wait_for_job
from tests.test_store_redis import redis_url  # noqa: F401 - the fixture

FINAL = ("succeeded", "failed", "cancelled")
#: the nap jobs' soft time limit: a job stops waiting for the store 1 s before it and goes back to
#: the queue, so a full store of FULL_SECONDS sends each job back at least once
SOFT_LIMIT = 4.0
FULL_SECONDS = 7.0


@contextmanager
def small_tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``folder`` for the block; skip the test when that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs here, and mounting one needs root")
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


@contextmanager
def disk_full(folder: Path, room: int = 0) -> Iterator[None]:
    """Keep the file system of ``folder`` full for the block: a ballast file takes every block, and
    every block freed meanwhile; removed afterwards. With ``room``, that many bytes are left free once
    (and not taken back)."""
    path = folder / ".ballast"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * 4096
    stop = threading.Event()
    if room:
        stop.set()

    def fill() -> None:
        try:
            while True:
                os.write(fd, block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise

    def keep_full() -> None:
        while not stop.wait(0.005):
            fill()

    fill()
    os.ftruncate(fd, os.fstat(fd).st_size - room)
    keeper = threading.Thread(target=keep_full, daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        os.close(fd)
        path.unlink()


@contextmanager
def redis_out_of_memory(url: str) -> Iterator[None]:
    """Make the Redis server at ``url`` refuse every write (``maxmemory`` 1 byte, ``noeviction``) for the
    block; its previous settings are restored afterwards."""
    import redis

    client = redis.Redis.from_url(url)
    before = {key: client.config_get(key)[key] for key in ("maxmemory-policy", "maxmemory")}
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        yield
    finally:
        for key, value in before.items():
            client.config_set(key, value)


def if_503(answer):
    """Return ``answer`` when it is a 503, else None."""
    return answer if answer.status_code == 503 else None


def _trial(config_path: Path, config, full, cause: str, words: str) -> None:
    """Run jobs, fill the store with ``full()`` while they run, free it; check that every accepted job
    ends succeeded, that finished records read while full, and that /health and /readyz name ``cause``
    (one word) and ``words``."""
    app = build_service(config).create_app()
    client = app.test_client()
    worker = Worker(config_path).start().wait_ready()
    try:
        done = client.post("/pipelines/double", json={"data": [1], "async": True}).get_json()["job_id"]
        assert wait_for_job(client, done)["status"] == "succeeded"
        ids = [client.post("/pipelines/nap", json={"data": [i], "kwargs": {"seconds": 1.0}, "async": True})
               .get_json()["job_id"] for i in range(4)]
        assert wait_for_job(client, ids[0], ("running", *FINAL))["status"] == "running"
        filled = time.monotonic()
        with full():
            # a finished record reads from threads that never read before (Celery makes their backend)
            def read(_: int) -> tuple[int, dict]:
                answer = app.test_client().get(f"/jobs/{done}")
                return answer.status_code, answer.get_json()

            with ThreadPoolExecutor(8) as pool:
                reads = list(pool.map(read, range(16)))
            assert all(status == 200 and body["status"] == "succeeded" for status, body in reads), reads

            refused = client.post("/pipelines/double", json={"data": [2], "async": True})
            assert refused.status_code == 503, refused.get_json()
            assert words in refused.get_json()["error"]["message"]

            health = eventually(lambda: if_503(client.get("/health")), 5, 0.05,
                                what="/health to say the store is not fine")
            store = health.get_json()["checks"]["store"]
            assert store["ok"] is False and store["required"] is True and store["state"] == cause, store
            assert words in store["error"] and "permission" not in store["error"], store
            ready = eventually(lambda: if_503(client.get("/readyz")), 5, 0.05,
                               what="/readyz to say it is not ready")
            assert "store" in ready.get_json()["failing"], ready.get_json()

            time.sleep(max(0.0, filled + FULL_SECONDS - time.monotonic()))
            while_full = {job_id: client.get(f"/jobs/{job_id}").get_json()["status"] for job_id in ids}
            assert "failed" not in while_full.values(), while_full
            assert worker.alive(), worker.log()
        freed = time.monotonic()
        final = {job_id: wait_for_job(client, job_id, timeout=60) for job_id in ids}
        took = time.monotonic() - freed
        statuses = {job_id: record["status"] for job_id, record in final.items()}
        assert statuses == dict.fromkeys(ids, "succeeded"), final
        assert [final[job_id]["results"] for job_id in ids] == [[0], [1], [2], [3]]
        eventually(lambda: client.get("/health").get_json()["checks"]["store"]["ok"], 5, 0.05,
                   what="/health to say the store is fine again",
                   detail=lambda: str(client.get("/health").get_json()))
        log = worker.log()
        assert "goes back to the queue" in log, "no job went back to the queue: the trial was too short"
        assert "correct permissions" not in log
        print(f"\n{cause} store for {FULL_SECONDS:.0f} s: 4 of 4 jobs succeeded {took:.1f} s after it "
              f"was freed; {log.count('goes back to the queue')} deliveries went back to the queue")
    finally:
        worker.stop()


@pytest.mark.slow
def test_a_full_disk_loses_no_accepted_job(tmp_path):
    with small_tmpfs(tmp_path / "state") as state:
        path, config = job_config(tmp_path, state_dir=str(state),
                                    pipeline_time_limits={"nap": {"soft": SOFT_LIMIT}})
        _trial(path, config, lambda: disk_full(state), "full", "no space left on device")


@pytest.mark.slow
def test_redis_at_its_maxmemory_loses_no_accepted_job(tmp_path, redis_url):  # noqa: F811
    path, config = job_config(tmp_path, worker_backend=redis_url,
                                pipeline_time_limits={"nap": {"soft": SOFT_LIMIT}})
    _trial(path, config, lambda: redis_out_of_memory(redis_url), "full", "out of memory")


@pytest.mark.slow
def test_results_that_cannot_be_stored_end_failed_naming_the_full_disk(tmp_path):
    """Where a job's outcome never fits (large results kept aside) but a failed record does, the job
    ends failed, saying so, once its wait for the store is over."""
    with small_tmpfs(tmp_path / "state") as state:
        path, config = job_config(tmp_path, state_dir=str(state), inline_results_max_bytes=1024,
                                    pipeline_time_limits={"big": {"soft": 3.0}})
        client = build_service(config).create_app().test_client()
        worker = Worker(path).start().wait_ready()
        try:
            with disk_full(state, room=64 * 1024):
                answer = client.post("/pipelines/big", json={"data": [5000], "async": True})
                assert answer.status_code == 202, answer.get_json()
                record = wait_for_job(client, answer.get_json()["job_id"])
            assert record["status"] == "failed", record
            error = record["error"]
            assert error["name"] == "StoreUnavailable", error
            assert "ran and succeeded" in error["message"] and "no space left on device" in error["message"]
            assert "permission" not in error["message"] and str(state) not in error["message"]
            assert record["attempts"] == 1 and record["attempt_errors"] == [error]  # one attempt, one error
        finally:
            worker.stop()


def test_store_failures_say_why_in_one_word_and_without_paths():
    redis = pytest.importorskip("redis")

    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "/srv/state/results/x"), "full",
         "no space left on device"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/srv/x"), "full", "quota exceeded"),
        (PermissionError(errno.EACCES, "Permission denied", "/srv/x"), "denied", "permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/srv/x"), "denied", "read-only file system"),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "full",
         "out of memory"),
        (redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."), "unreachable",
         "Error 111"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "unreachable", "refused"),
    ]
    for exc, cause, words in cases:
        failure = storage_failure(exc)
        assert failure is not None and failure.cause == cause, (exc, failure)
        assert words in str(failure) and "/srv" not in str(failure), str(failure)
    assert storage_failure(ValueError("a bug")) is None
