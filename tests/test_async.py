"""Asynchronous pipelines end to end: a real worker process, a real broker (RabbitMQ and the embedded
one), a real HTTP callback receiver on a loopback port. No eager mode."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from atoll import verify_callback
from tests.async_service import build_service
from tests.support import SECRET, Worker, eventually, job_config, running_stack, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request, tmp_path_factory):
    """(config, test client, worker) on one broker, with one worker process for the module."""
    with running_stack(request, tmp_path_factory, "async") as (config, worker):
        yield config, build_service(config).create_app().test_client(), worker


def submit(client, name, data, **body):
    response = client.post(f"/pipelines/{name}", json={"data": data, **body})
    assert response.status_code == 202, response.get_json()
    return response


def test_success_callback_payload_is_signed(stack, callback_receiver):
    config, client, _ = stack
    response = submit(client, "double", [1, 2, 3], callback=f"{callback_receiver.url}/hook?x=1")
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"] == response.get_json()["status_url"]
    assert response.get_json()["status_url"].endswith(f"/jobs/{job_id}")
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    call = callback_receiver.accepted()[0]
    assert call.path == "/hook?x=1"
    assert call.headers["content-type"] == "application/json"
    assert call.json == {"job_id": job_id, "pipeline": "double", "status": "succeeded",
                         "results": [2, 4, 6], "results_url": None, "error": None}
    assert call.headers["webhook-id"] == job_id
    assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 60
    assert verify_callback(SECRET, call.headers, call.body)
    assert not verify_callback(SECRET, call.headers, call.body.replace(b"6", b"7"))
    assert not verify_callback("whsec_" + "A" * 32, call.headers, call.body)


def test_failure_callback_carries_stage_item_and_traceback(stack, callback_receiver):
    config, client, _ = stack
    job_id = submit(client, "explode", [1, 2, 5], callback=callback_receiver.url).get_json()["job_id"]
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    payload = callback_receiver.accepted()[0].json
    assert payload["status"] == "failed" and payload["results"] is None
    error = payload["error"]
    assert error["name"] == "KeyError"
    assert "no entry 3" in error["message"]
    assert "_explode_on_three" in error["traceback"] and "KeyError" in error["traceback"]
    assert error["stage"]["index"] == 1 and error["stage"]["operator"] == "map"
    assert error["stage"]["function"] == "_explode_on_three"
    assert error["item"] == 3
    record = client.get(f"/jobs/{job_id}").get_json()
    assert record["status"] == "failed" and record["error"] == error


def test_a_failed_jobs_traceback_shows_the_users_file_and_source_line(stack):
    # the lambda runs on a worker process of the local executor inside the Celery worker, so it
    # travels pickled by value: the traceback must still name tests/async_service.py and its source
    config, client, _ = stack
    job_id = submit(client, "divide", [1, 0], **{"async": True}).get_json()["job_id"]
    record = wait_for_job(client, job_id)
    assert record["status"] == "failed", record
    traceback = record["error"]["traceback"]
    assert "async_service.py" in traceback and "lambda x: 60 // x" in traceback, traceback
    assert "<dynamic-code>" not in traceback


def test_runtime_kwargs_reach_the_pipeline(stack, callback_receiver):
    config, client, _ = stack
    job_id = submit(client, "scale", [1, 2], kwargs={"factor": 10},
                    callback=callback_receiver.url).get_json()["job_id"]
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    assert callback_receiver.accepted()[0].json["results"] == [10, 20]


def test_results_are_json_for_pairs(stack, callback_receiver):
    config, client, _ = stack
    job_id = submit(client, "wordcount", ["a b a"], callback=callback_receiver.url).get_json()["job_id"]
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    assert dict(map(tuple, callback_receiver.accepted()[0].json["results"])) == {"a": 2, "b": 1}


def test_job_goes_through_every_state(stack):
    config, client, _ = stack
    # two long jobs occupy both pool processes (prefetch 1 each): the third one waits in the queue
    blockers = [submit(client, "nap", [1], kwargs={"seconds": 2.0}, **{"async": True}).get_json()["job_id"]
                for _ in range(2)]
    job_id = submit(client, "nap", [7], kwargs={"seconds": 0.5}, **{"async": True}).get_json()["job_id"]
    seen = []

    def finished() -> dict | None:
        record = client.get(f"/jobs/{job_id}").get_json()
        if not seen or seen[-1] != record["status"]:
            seen.append(record["status"])
        return record if record["status"] in ("succeeded", "failed") else None

    record = eventually(finished, 40, 0.02, what=f"job {job_id} to finish")
    assert seen == ["queued", "running", "succeeded"], seen
    assert record["results"] == [7] and record["error"] is None
    assert record["submitted_at"] <= record["started_at"] <= record["finished_at"]
    for blocker in blockers:
        assert wait_for_job(client, blocker)["status"] == "succeeded"


def test_async_without_callback_is_polled(stack):
    config, client, _ = stack
    job_id = submit(client, "double", {"a": 1} and [4], **{"async": True}).get_json()["job_id"]
    record = wait_for_job(client, job_id)
    assert record["status"] == "succeeded" and record["results"] == [8]


def test_unknown_job_is_404(stack):
    config, client, _ = stack
    for job_id in ("00000000-0000-4000-8000-000000000000", "not-a-job", "celery-task-meta-x"):
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 404
        assert response.get_json()["error"]["name"] == "UnknownJob"
    response = client.get("/jobs/..%2F..%2Fetc%2Fpasswd")
    assert response.status_code == 404 and "error" in response.get_json()


def test_health_reports_broker_and_worker(stack):
    config, client, worker = stack
    report = client.get("/health").get_json()
    assert report["checks"]["broker"]["ok"] is True
    assert report["checks"]["broker"]["waiting"] == 0  # nothing queued, the queue declared by the worker
    assert report["checks"]["workers"]["ok"] is True
    assert report["checks"]["workers"]["count"] >= 1


def test_celery_dash_a_runs_the_same_module(tmp_path, callback_receiver):
    path, config = job_config(tmp_path)
    worker = Worker(path, command="celery").start()
    try:
        worker.wait_ready()
        client = build_service(config).create_app().test_client()
        job_id = submit(client, "double", [21], callback=callback_receiver.url).get_json()["job_id"]
        assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
        assert callback_receiver.accepted()[0].json["results"] == [42]
    finally:
        worker.stop()


def test_messages_carry_the_name_and_json_only(tmp_path):
    # no worker: read the message the embedded broker holds and check what it carries
    path, config = job_config(tmp_path)
    client = build_service(config).create_app().test_client()
    job_id = submit(client, "scale", [1], kwargs={"factor": 2}, **{"async": True}).get_json()["job_id"]
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    files = list((tmp_path / "state" / "broker" / "queue").glob(f"*.{config.worker_queue}.msg"))
    assert len(files) == 1
    message = json.loads(files[0].read_text())
    assert message["content-type"] == "application/json"
    assert message["headers"]["task"] == "atoll.run_pipeline"
    assert message["headers"]["id"] == job_id
    assert message["properties"]["delivery_mode"] == 2
    import base64

    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args[:3] == ["scale", [1], {"factor": 2}]


def test_soft_time_limit_fails_the_job_with_a_clear_error(tmp_path, callback_receiver):
    path, config = job_config(tmp_path, pipeline_time_limits={"nap": {"soft": 0.5, "hard": 10}})
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        client = build_service(config).create_app().test_client()
        job_id = submit(client, "nap", [1], kwargs={"seconds": 5},
                        callback=callback_receiver.url).get_json()["job_id"]
        assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
        payload = callback_receiver.accepted()[0].json
        assert payload["status"] == "failed"
        assert payload["error"]["name"] == "TimeLimitExceeded"
        assert "'nap'" in payload["error"]["message"] and "0.5" in payload["error"]["message"]
        # failed at the limit: the 5 s nap was neither finished nor run again to locate the failure
        record = client.get(f"/jobs/{job_id}").get_json()
        took = (datetime.fromisoformat(record["finished_at"])
                - datetime.fromisoformat(record["started_at"])).total_seconds()
        assert took < 4, record
        fast = submit(client, "double", [1], callback=callback_receiver.url).get_json()["job_id"]
        assert not callback_receiver.wait_for_jobs({fast}, timeout=30)
    finally:
        worker.stop()


def test_rpc_result_backend_is_refused_with_advice(tmp_path):
    from atoll.errors import ConfigError
    from atoll.service.jobs.queue import create_celery

    _, config = job_config(tmp_path, worker_backend="rpc://")
    with pytest.raises(ConfigError, match="GET /jobs"):
        create_celery(build_service(config))


def _stored(store, job_id):
    meta = store.backend.get_task_meta(job_id, cache=False)
    job = store.load(job_id)
    return meta["status"], job.to_record() if job is not None else None


@pytest.fixture
def job_store(tmp_path):
    """The service's real job store (atoll's file result backend under a temporary state_dir)."""
    from atoll.service.jobs.queue import create_celery
    from atoll.service.jobs.store import JobStore

    _, config = job_config(tmp_path)
    return JobStore(create_celery(build_service(config)))


def _running_job():
    from atoll.service.jobs.model import Job, new_job_id

    job = Job(new_job_id(), "double")
    job.start()
    return job


def test_running_record_waits_for_its_delay_and_never_lands_after_finish(job_store):
    from atoll.service.jobs.queue import RunningRecord

    job = _running_job()
    at_once = RunningRecord(job_store, job, 0)
    assert _stored(job_store, job.job_id) == ("STARTED", job.to_record())
    at_once.finish()

    job = _running_job()
    quick = RunningRecord(job_store, job, 0.2)
    quick.finish()  # the job ended before its delay
    time.sleep(0.4)
    assert _stored(job_store, job.job_id) == ("PENDING", None)  # never written

    job = _running_job()
    slow = RunningRecord(job_store, job, 0.05)
    time.sleep(0.3)
    assert _stored(job_store, job.job_id) == ("STARTED", job.to_record())
    slow.finish()


def test_running_record_writes_progress_once_it_is_written_and_never_after_finish(job_store):
    from atoll.service.jobs.queue import RunningRecord

    job = _running_job()
    running = RunningRecord(job_store, job, 0.2)
    running.progress(1, 4)  # before the delay: kept for the first write, not written now
    assert _stored(job_store, job.job_id) == ("PENDING", None)
    time.sleep(0.4)
    assert job_store.load(job.job_id).to_record()["progress"] == {"done": 1, "total": 4}
    running.progress(3, 4)
    assert job_store.load(job.job_id).to_record()["progress"] == {"done": 3, "total": 4}
    running.finish()
    running.progress(4, 4)
    assert job_store.load(job.job_id).to_record()["progress"] == {"done": 3, "total": 4}


def test_running_record_write_in_progress_completes_before_finish_returns(job_store):
    """The outcome is stored after finish(): a running record being written must not land later."""
    from atoll.service.jobs.queue import RunningRecord

    class SlowStore:
        def save(self, job):
            time.sleep(0.3)
            job_store.save(job)

    job = _running_job()
    record = RunningRecord(SlowStore(), job, 0.01)
    time.sleep(0.1)  # the timer fired and is writing
    started = time.monotonic()
    record.finish()
    assert time.monotonic() - started > 0.1
    assert _stored(job_store, job.job_id)[0] == "STARTED"
    job.succeed([1])
    job_store.save(job)
    time.sleep(0.1)
    assert _stored(job_store, job.job_id) == ("SUCCESS", job.to_record())


def test_each_service_runs_its_own_pipelines_in_one_process(tmp_path):
    """Two services in one process (a web process holding several, a test suite): each Celery app's
    task runs its own service's registry, not the one registered first in the process."""
    from atoll import Atoll, Pipeline
    from atoll.service.jobs.queue import PIPELINE_TASK, create_celery

    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    _, first_config = job_config(tmp_path / "first")
    first = Atoll(first_config)
    first.register_pipeline("/only-first", Pipeline().map(lambda x: x + 1))
    create_celery(first).tasks[PIPELINE_TASK]  # finalize the first app
    _, second_config = job_config(tmp_path / "second")
    second = Atoll(second_config)
    second.register_pipeline("/only-second", Pipeline().map(lambda x: x * 10))
    app = create_celery(second)
    job_id = "00000000-0000-0000-0000-000000000000"
    app.tasks[PIPELINE_TASK].apply(("only-second", [1, 2]), task_id=job_id)
    record = app.backend.get_task_meta(job_id, cache=False)["result"]
    assert record["status"] == "succeeded" and record["results"] == [10, 20], record
