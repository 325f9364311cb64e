"""Job retries (a pipeline's ``retries`` policy, on Celery's Task.retry), end to end against a real worker
on a real broker (the embedded one and RabbitMQ): attempts counted, each attempt's error kept, the
``retrying`` status while it waits, cancel during the wait, and a worker killed mid-job counted."""

from __future__ import annotations

import re
import time

import pytest

from tests.async_service import build_service
from tests.support import Worker, delete_queue, eventually, job_config, running_stack, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request, tmp_path_factory):
    """(config, test client, worker) on one broker, with one worker process for the module."""
    with running_stack(request, tmp_path_factory, "retries") as (config, worker):
        yield config, build_service(config).create_app().test_client(), worker


def submit(client, name, data, **kwargs):
    response = client.post(f"/pipelines/{name}", json={"data": data, "async": True, "kwargs": kwargs})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def runs(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_listed_transient_error_is_retried_until_it_succeeds(stack, tmp_path):
    _, client, worker = stack
    job_id = submit(client, "flaky", [1, 2], folder=str(tmp_path), fails=2, error="ConnectionRefusedError")
    record = wait_for_job(client, job_id)
    assert record["status"] == "succeeded", record
    assert record["results"] == [1, 2]
    assert record["attempts"] == 3 and runs(tmp_path) == ["attempt-1", "attempt-2", "attempt-3"]
    # ConnectionRefusedError is retried because the policy names its base class ConnectionError
    assert [e["name"] for e in record["attempt_errors"]] == ["ConnectionRefusedError"] * 2
    assert all(f"attempt {n} failed on purpose" in e["message"] and e["stage"]["function"] == "_flaky"
               for n, e in zip((1, 2), record["attempt_errors"]))
    assert record["error"] is None
    # the worker's log says which attempt ran
    assert eventually(lambda: f"job {job_id}: attempt 3" in worker.log_path.read_text(errors="replace"), 10)
    assert f"job {job_id}: attempt 1 of 3 failed (ConnectionRefusedError)" in worker.log_path.read_text(
        errors="replace")


def test_an_error_not_listed_is_not_retried(stack, tmp_path):
    _, client, _ = stack
    job_id = submit(client, "flaky", [1], folder=str(tmp_path), fails=2, error="ValueError")
    record = wait_for_job(client, job_id)
    assert record["status"] == "failed" and record["error"]["name"] == "ValueError"
    assert record["attempts"] == 1 and runs(tmp_path) == ["attempt-1"]
    assert [e["name"] for e in record["attempt_errors"]] == ["ValueError"]


def test_the_last_attempt_fails_the_job_with_every_attempts_error(stack, tmp_path):
    _, client, _ = stack
    job_id = submit(client, "flaky", [1], folder=str(tmp_path), fails=5, error="ConnectionError")
    record = wait_for_job(client, job_id)
    assert record["status"] == "failed", record
    assert record["attempts"] == 3 and runs(tmp_path) == ["attempt-1", "attempt-2", "attempt-3"]
    errors = record["attempt_errors"]
    assert [e["name"] for e in errors] == ["ConnectionError"] * 3
    assert all(f"attempt {n} failed on purpose" in e["message"] for n, e in zip((1, 2, 3), errors))
    assert record["error"] == errors[-1]


def test_a_job_cancelled_while_it_waits_to_retry_is_never_retried(stack, tmp_path):
    _, client, worker = stack
    job_id = submit(client, "flakyslow", [1], folder=str(tmp_path), fails=1, error="ConnectionError")
    record = wait_for_job(client, job_id, statuses=("retrying",))
    assert record["status"] == "retrying", record  # waits 3 s for its second attempt
    assert record["attempts"] == 1 and [e["name"] for e in record["attempt_errors"]] == ["ConnectionError"]
    assert record["finished_at"] is None
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.get_json()
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "cancelled"
    time.sleep(4.5)  # past the wait: the retry's message arrived and was dropped
    other = submit(client, "double", [4])  # the worker is free: the cancelled job did not run again
    assert wait_for_job(client, other)["results"] == [8]
    record = client.get(f"/jobs/{job_id}").get_json()
    assert record["status"] == "cancelled" and record["attempts"] == 1 and runs(tmp_path) == ["attempt-1"]


@pytest.fixture(params=["embedded", "rabbitmq"])
def setup(request, tmp_path):
    """(config path, test client) on one broker; the test's queue is removed from RabbitMQ afterwards."""
    broker = {"worker_broker": request.getfixturevalue("rabbitmq_url")} if request.param == "rabbitmq" else {}
    path, config = job_config(tmp_path, **broker)
    yield path, build_service(config).create_app().test_client()
    if config.worker_broker:
        delete_queue(config.worker_broker, config.worker_queue)


def test_a_worker_killed_mid_job_redelivers_it_and_the_lost_run_counts_as_an_attempt(setup, tmp_path):
    path, client = setup
    worker = Worker(path).start().wait_ready()
    try:
        job_id = submit(client, "saynap", ["x"], seconds=1.5)
        record = wait_for_job(client, job_id, statuses=("running",))
        assert record["status"] == "running" and record["attempts"] == 1
        assert eventually(lambda: "started x" in worker.log_path.read_text(errors="replace"), 10)
        assert worker.kill9()  # the whole worker, main process included
        worker.stop()
        worker = Worker(path).start().wait_ready()
        record = wait_for_job(client, job_id, timeout=60)
        assert record["status"] == "succeeded" and record["results"] == ["x"], record
        assert record["attempts"] == 2
        assert [e["name"] for e in record["attempt_errors"]] == ["WorkerLost"]
        assert "attempt 1" in record["attempt_errors"][0]["message"]
    finally:
        worker.stop()


@pytest.mark.parametrize("retries, key", [
    ({"max": 0}, "retries.max"), ({"max": True}, "retries.max"),
    ({"on": "ConnectionError", "max": "3"}, "retries.max"), ({"on": [1]}, "retries.on"),
    ({"backoff": -1}, "retries.backoff"), ({"backoff_max": "1"}, "retries.backoff_max"),
    ({"jitter": 1}, "retries.jitter"), ({"retry_on": ["X"]}, "unknown key(s) ['retry_on']"),
    ([3], "a mapping")])
def test_a_bad_retries_policy_is_refused_at_registration_naming_the_key(retries, key):
    from atoll import Pipeline
    from atoll.service import Atoll
    from atoll.service.errors import RegistrationError

    service = Atoll()
    with pytest.raises(RegistrationError, match=r"'/p': .*" + re.escape(key)):
        service.register_pipeline("/p", Pipeline().map(str), retries=retries)
    assert "p" not in service.pipelines


def test_the_backoff_doubles_up_to_its_maximum_with_full_jitter():
    from atoll.service.jobs.retries import RetryPolicy

    policy = RetryPolicy.parse({"backoff": 2, "backoff_max": 10, "jitter": False, "on": ["OSError"]})
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
    jittered = RetryPolicy.parse({"backoff": 2, "backoff_max": 10})
    waits = [jittered.delay(3) for _ in range(200)]
    assert all(0 <= w <= 8.0 for w in waits) and len(set(waits)) > 100
    assert policy.retries(ConnectionRefusedError()) and not policy.retries(ValueError())


def test_get_pipelines_lists_each_pipelines_retries_policy(stack):
    _, client, _ = stack
    body = client.get("/pipelines").get_json()
    listed = {p["name"]: p for p in (body["pipelines"] if isinstance(body, dict) else body)}
    assert listed["flaky"]["retries"] == {"max": 3, "on": ["ConnectionError"], "backoff": 0.1,
                                          "backoff_max": 600.0, "jitter": True}
    assert listed["double"]["retries"] is None
