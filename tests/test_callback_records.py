"""A job's record tells what became of its callback (delivered, refused at delivery, abandoned after
the last retry), and with ``expose_tracebacks: false`` neither the record nor the failure callback
carries a traceback or the failing item. One real worker process per broker (embedded and
RabbitMQ), a real loopback receiver, a service with auth tokens."""

from __future__ import annotations

import uuid

import pytest

from tests.async_service import build_service
from tests.support import SECRET, Worker, delete_queue, eventually, job_config

pytestmark = pytest.mark.slow

TOKEN = "tok-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RETRIES = 2


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request, tmp_path_factory):
    """(test client, worker): the worker may call back 127.0.0.1 only; the web side accepts any
    loopback URL, so a callback to 127.0.0.2 passes at submit and is refused at delivery."""
    overrides = {}
    if request.param == "rabbitmq":
        overrides["worker_broker"] = request.getfixturevalue("rabbitmq_url")
    folder = tmp_path_factory.mktemp(f"callback-records-{request.param}")
    path, config = job_config(folder, expose_tracebacks=False, auth_tokens=[TOKEN],
                                callback_allow_private=False, callback_allowed_hosts=["127.0.0.1"],
                                callback_max_retries=RETRIES, callback_backoff=0.05,
                                callback_backoff_max=0.2, callback_timeout=2.0, **overrides)
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        client = build_service(config.replace(callback_allow_private=True)).create_app().test_client()
        yield client, worker
    finally:
        worker.stop()
        if config.worker_broker:
            delete_queue(config.worker_broker, config.worker_queue)


def submit(client, name, data, callback):
    answer = client.post(f"/pipelines/{name}", json={"data": data, "callback": callback}, headers=AUTH)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["job_id"]


def wait_for_callback(client, job_id, states, attempts=1, timeout=60.0) -> dict:
    """Poll GET /jobs/<id> until its callback's state is one of ``states`` after at least ``attempts``
    delivery attempts; return the record."""
    def settled() -> dict | None:
        record = client.get(f"/jobs/{job_id}", headers=AUTH).get_json()
        callback = record.get("callback") or {}
        return record if callback.get("state") in states and callback.get("attempts", 0) >= attempts else None

    return eventually(settled, timeout, 0.05, what=f"job {job_id}'s callback to be one of {sorted(states)}")


def test_a_delivered_callback_is_recorded(stack, callback_receiver):
    client, _ = stack
    url = f"{callback_receiver.url}/hook"
    job_id = submit(client, "double", [1, 2], url)
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    record = wait_for_callback(client, job_id, {"delivered"})
    assert record["status"] == "succeeded"
    assert record["callback"] == {"url": url, "state": "delivered", "attempts": 1, "last_error": None}


def test_a_callback_refused_at_delivery_is_recorded_as_failed(stack, callback_receiver):
    client, worker = stack
    url = f"http://127.0.0.2:{callback_receiver.port}/hook"
    job_id = submit(client, "double", [3], url)
    record = wait_for_callback(client, job_id, {"failed"})
    assert record["status"] == "succeeded"
    callback = record["callback"]
    assert callback["state"] == "failed" and callback["url"] == url and callback["attempts"] == 1
    assert "loopback address 127.0.0.2" in callback["last_error"]
    assert callback_receiver.calls == []
    assert f"job {job_id}: callback refused at delivery" in worker.log()


def test_a_callback_abandoned_after_its_last_retry_is_recorded(stack, callback_receiver):
    client, worker = stack
    callback_receiver.fail_with(503)
    job_id = submit(client, "double", [4], callback_receiver.url)
    pending = wait_for_callback(client, job_id, {"pending", "abandoned"})
    assert pending["callback"]["attempts"] >= 1 and "503" in pending["callback"]["last_error"]
    record = wait_for_callback(client, job_id, {"abandoned"})
    assert record["status"] == "succeeded"
    assert record["callback"]["state"] == "abandoned"
    assert record["callback"]["attempts"] == RETRIES + 1 == len(callback_receiver.calls)
    assert "503" in record["callback"]["last_error"]
    assert f"job {job_id}: callback not delivered after {RETRIES + 1} attempts, giving up" in worker.log()


def test_a_job_without_callback_says_null(stack):
    client, _ = stack
    answer = client.post("/pipelines/double", json={"data": [5], "async": True}, headers=AUTH)
    job_id = answer.get_json()["job_id"]

    def succeeded() -> dict | None:
        record = client.get(f"/jobs/{job_id}", headers=AUTH).get_json()
        return record if record["status"] == "succeeded" else None

    record = eventually(succeeded, 30, 0.05, what=f"job {job_id} to succeed")
    assert record["callback"] is None


def test_failure_record_and_callback_hide_traceback_and_item(stack, callback_receiver):
    client, _ = stack
    job_id = submit(client, "explode", [1, 2, 5], callback_receiver.url)
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    sent = callback_receiver.accepted()[0].json["error"]
    record = wait_for_callback(client, job_id, {"delivered"})
    for error in (sent, record["error"]):
        assert set(error) == {"name", "message", "stage"}, error
        assert error["name"] == "KeyError" and "no entry 3" in error["message"]
        assert "on item" not in error["message"]
        assert error["stage"]["index"] == 1 and error["stage"]["function"] == "_explode_on_three"


def test_the_worker_log_shows_no_secret(stack, callback_receiver):
    client, worker = stack
    submit(client, "double", [6], callback_receiver.url)
    assert callback_receiver.wait_for(lambda r: r.accepted(), timeout=30)
    log = worker.log()
    assert " ready." in log
    assert TOKEN not in log and SECRET not in log and SECRET[len("whsec_"):] not in log
