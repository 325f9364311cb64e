"""No accepted job is lost: worker processes killed with SIGKILL mid-burst, a callback receiver that
answers 500 or is down for a while, a broker that is unreachable when a job is submitted."""

from __future__ import annotations

import time

import pytest

from tests.async_service import build_service
from tests.support import Worker, delete_queue, eventually, free_port, job_config, wait_for_job

pytestmark = pytest.mark.slow

BURST = 200


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker(request):
    """Config overrides selecting the broker."""
    if request.param == "rabbitmq":
        return {"worker_broker": request.getfixturevalue("rabbitmq_url")}
    return {}


@pytest.fixture
def setup(broker, tmp_path):
    """(config path, config, test client); the test's queue is removed from RabbitMQ afterwards."""
    path, config = job_config(tmp_path, **broker)
    client = build_service(config).create_app().test_client()
    yield path, config, client
    if config.worker_broker:
        delete_queue(config.worker_broker, config.worker_queue)


def submit_burst(client, url, count, seconds=0.02):
    ids = []
    for i in range(count):
        answer = client.post("/pipelines/nap", json={"data": [i], "kwargs": {"seconds": seconds},
                                                     "callback": url})
        assert answer.status_code == 202, answer.get_json()
        ids.append(answer.get_json()["job_id"])
    return ids


def test_kill_9_mid_burst_then_restart_delivers_every_callback(setup, callback_receiver, request):
    path, config, client = setup
    worker = Worker(path).start().wait_ready()
    try:
        ids = submit_burst(client, callback_receiver.url, BURST)
        assert callback_receiver.wait_for(lambda r: len(r.job_ids()) >= 40, timeout=60)
        # the whole worker dies, main process included: RabbitMQ re-queues whatever it had not
        # acknowledged, and the embedded broker returns the messages in the dead worker's folder
        killed = worker.kill9()
        assert killed
        done_at_kill = len(callback_receiver.job_ids())
        assert done_at_kill < BURST, "the burst finished before the kill; nothing was tested"
        worker.stop()
        worker = Worker(path).start().wait_ready()
        missing = callback_receiver.wait_for_jobs(ids, timeout=120)
        assert not missing, f"{len(missing)} of {BURST} callbacks never arrived"
        # at least once: duplicates are allowed and share their job's id
        arrived = [c.json["job_id"] for c in callback_receiver.accepted()]
        assert set(arrived) == set(ids)
        assert all(c.json["status"] == "succeeded" for c in callback_receiver.accepted())
        assert all(c.headers["webhook-id"] == c.json["job_id"] for c in callback_receiver.accepted())
        for job_id in ids[:: BURST // 10]:
            assert client.get(f"/jobs/{job_id}").get_json()["status"] == "succeeded"
    finally:
        worker.stop()


@pytest.mark.parametrize("outage", ["500", "down"])
def test_receiver_outage_then_recovery_delivers_every_callback(setup, callback_receiver, outage):
    path, config, client = setup
    worker = Worker(path).start().wait_ready()
    try:
        if outage == "500":
            callback_receiver.fail_with(500)
        else:
            callback_receiver.down()
        ids = submit_burst(client, callback_receiver.url, 20, seconds=0)
        # every job finished (its record says so) while no callback could be delivered
        for job_id in ids:
            assert wait_for_job(client, job_id)["status"] == "succeeded"
        if outage == "500":
            assert callback_receiver.wait_for(
                lambda r: {c.json["job_id"] for c in r.calls} >= set(ids), timeout=30)
        assert callback_receiver.job_ids() == set()
        time.sleep(1.0)
        callback_receiver.fail_with(200)
        callback_receiver.up()
        missing = callback_receiver.wait_for_jobs(ids, timeout=60)
        assert not missing, f"{len(missing)} of 20 callbacks never arrived"
        assert "giving up" not in worker.log()
    finally:
        worker.stop()


def test_retries_are_bounded(tmp_path, callback_receiver):
    path, config = job_config(tmp_path, callback_max_retries=2, callback_backoff=0.05)
    client = build_service(config).create_app().test_client()
    worker = Worker(path).start().wait_ready()
    try:
        callback_receiver.fail_with(503)
        answer = client.post("/pipelines/double", json={"data": [1], "callback": callback_receiver.url})
        job_id = answer.get_json()["job_id"]
        eventually(lambda: "giving up" in worker.log(), 30, what="the worker to log that it gives up",
                   detail=worker.log)
        time.sleep(0.5)
        attempts = [c for c in callback_receiver.calls if c.json["job_id"] == job_id]
        assert len(attempts) == 3  # the first attempt and two retries
        assert client.get(f"/jobs/{job_id}").get_json()["results"] == [2]
    finally:
        worker.stop()


def test_unreachable_rabbitmq_at_submit_is_503_and_nothing_is_queued(tmp_path):
    path, config = job_config(tmp_path, worker_broker=f"amqp://guest:secret@127.0.0.1:{free_port()}//")
    client = build_service(config).create_app().test_client()
    started = time.monotonic()
    answer = client.post("/pipelines/double", json={"data": [1], "async": True})
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["name"] == "BrokerUnavailable"
    assert "secret" not in error["message"]
    assert time.monotonic() - started < 15
    assert not list((tmp_path / "state" / "results").glob("celery-task-meta-*"))
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["checks"]["broker"]["ok"] is False


def test_unwritable_embedded_broker_at_submit_is_503_and_nothing_is_queued(tmp_path):
    path, config = job_config(tmp_path)
    service = build_service(config)
    client = service.create_app().test_client()
    assert service.celery  # the embedded broker's folders exist from here on
    queue = tmp_path / "state" / "broker" / "queue"
    queue.rmdir()
    queue.write_text("not a folder")  # the broker's queue folder is gone: every put fails
    answer = client.post("/pipelines/double", json={"data": [1], "callback": "http://127.0.0.1:9/x"})
    assert answer.status_code == 503
    assert answer.get_json()["error"]["name"] == "BrokerUnavailable"
    assert not list((tmp_path / "state" / "results").glob("celery-task-meta-*"))
