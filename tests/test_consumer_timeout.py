"""RabbitMQ's consumer timeout and atoll's job queue: the figure atoll asks for, the broker releases
that get the ``x-consumer-timeout`` argument, and declarations against the real RabbitMQ (the
argument stored on the queue; a queue that already exists with other arguments is used as it is)."""

from __future__ import annotations

from copy import copy

import pytest

from atoll.config import load_config
from atoll.errors import ConfigError
from atoll.service.jobs.queue import (
    CONSUMER_TIMEOUT_ARG,
    NO_LIMIT_CONSUMER_TIMEOUT,
    JobQueue,
    celery_settings,
    consumer_timeout,
    rabbitmq_version,
)
from tests.async_service import build_service
from tests.support import Worker, job_config, wait_for_job


def _config(**values):
    return load_config(environ={}, **values)


def test_without_hard_limits_the_timeout_is_one_day():
    assert consumer_timeout(_config()) == NO_LIMIT_CONSUMER_TIMEOUT == 86400


def test_timeout_outlasts_a_job_that_waited_then_ran_its_hard_limit():
    config = _config(task_time_limit=3600, callback_backoff_max=300)
    assert consumer_timeout(config) == 2 * 3600 + 300 + 300


def test_the_longest_pipeline_hard_limit_counts():
    config = _config(task_time_limit=600, callback_backoff_max=60,
                     pipeline_time_limits={"big": {"hard": 5400}, "small": {"soft": 10, "hard": 20}})
    assert consumer_timeout(config) == 2 * 5400 + 60 + 300


def test_a_pipeline_without_hard_limit_gets_at_least_a_day():
    config = _config(pipeline_time_limits={"big": {"hard": 600}})
    assert consumer_timeout(config) == NO_LIMIT_CONSUMER_TIMEOUT  # the others run unlimited
    config = _config(pipeline_time_limits={"huge": {"hard": 86400}})
    assert consumer_timeout(config) == 2 * 86400 + 300 + 300


def test_the_key_sets_it_and_zero_leaves_it_to_the_broker():
    assert consumer_timeout(_config(worker_consumer_timeout=7200, task_time_limit=10)) == 7200
    assert consumer_timeout(_config(worker_consumer_timeout=0)) is None
    assert consumer_timeout(load_config(environ={"ATOLL_WORKER_CONSUMER_TIMEOUT": "90.5"})) == 90.5
    with pytest.raises(ConfigError, match="worker_consumer_timeout"):
        _config(worker_consumer_timeout=-1)


def test_the_job_queue_carries_the_timeout_in_milliseconds():
    config = _config(task_time_limit=100, callback_backoff_max=50)
    [queue] = celery_settings(config)["task_queues"]
    assert isinstance(queue, JobQueue) and queue.durable
    assert queue.consumer_timeout == (2 * 100 + 50 + 300) * 1000
    assert queue.queue_arguments is None  # added per broker when declared
    assert copy(queue).consumer_timeout == queue.consumer_timeout  # kombu binds copies to channels
    [queue] = celery_settings(_config(worker_consumer_timeout=0))["task_queues"]
    assert queue.consumer_timeout is None


@pytest.mark.parametrize("properties, expected", [
    ({"product": b"RabbitMQ", "version": b"3.10.8"}, (3, 10)),
    ({"product": "RabbitMQ", "version": "4.3.0-rc.1"}, (4, 3)),
    ({"product": "LavinMQ", "version": "2.1.0"}, None),
    ({}, None),
])
def test_rabbitmq_version_from_server_properties(properties, expected):
    assert rabbitmq_version(properties) == expected


# -- against the real RabbitMQ --------------------------------------------------------------------

def _queue_arguments(rabbitmqctl, name: str) -> str | None:
    """The arguments column of ``rabbitmqctl list_queues`` for queue ``name`` (None: no such queue)."""
    for line in rabbitmqctl("list_queues", "name", "arguments").splitlines():
        fields = line.split("\t")
        if fields[0] == name:
            return fields[1] if len(fields) > 1 else ""
    return None


def _declare(broker: str, queue) -> None:
    from kombu import Connection

    with Connection(broker) as conn:
        queue.bind(conn.default_channel).declare()


def _delete(broker: str, name: str) -> None:
    from kombu import Connection, Queue

    with Connection(broker) as conn:
        Queue(name, channel=conn.channel()).delete()


def _broker_version(broker: str) -> tuple[int, int] | None:
    from kombu import Connection

    with Connection(broker) as conn:
        conn.connect()
        return rabbitmq_version(conn.connection.server_properties)


@pytest.mark.slow
def test_declared_queue_carries_x_consumer_timeout(tmp_path, rabbitmq_url, rabbitmqctl):
    _, config = job_config(tmp_path, worker_broker=rabbitmq_url, worker_consumer_timeout=12.5)
    [queue] = celery_settings(config)["task_queues"]
    try:
        _declare(rabbitmq_url, queue)
        arguments = _queue_arguments(rabbitmqctl, config.worker_queue)
        if _broker_version(rabbitmq_url) < (4, 3):
            assert '{"x-consumer-timeout",12500}' in arguments, arguments
        else:  # refused on a classic queue, which no longer times out
            assert CONSUMER_TIMEOUT_ARG not in arguments
    finally:
        _delete(rabbitmq_url, config.worker_queue)


@pytest.mark.slow
def test_the_web_process_declares_the_queue_with_the_argument(tmp_path, rabbitmq_url, rabbitmqctl):
    """Submitting a job declares the queue before any worker exists, with the argument."""
    _, config = job_config(tmp_path, worker_broker=rabbitmq_url, task_time_limit=30)
    try:
        client = build_service(config).create_app().test_client()
        response = client.post("/pipelines/double", json={"data": [1], "async": True})
        assert response.status_code == 202, response.get_json()
        arguments = _queue_arguments(rabbitmqctl, config.worker_queue)
        assert arguments is not None
        if _broker_version(rabbitmq_url) < (4, 3):
            assert f'{{"x-consumer-timeout",{(60 + 1 + 300) * 1000}}}' in arguments, arguments
    finally:
        _delete(rabbitmq_url, config.worker_queue)


@pytest.mark.slow
@pytest.mark.parametrize("existing", [None, {}, {CONSUMER_TIMEOUT_ARG: 999_000}],
                         ids=["no-queue", "queue-without-argument", "queue-with-other-figure"])
def test_worker_and_web_process_with_new_or_existing_queue(tmp_path, rabbitmq_url, rabbitmqctl, existing):
    """A worker declares the queue with the argument; a queue made by an older atoll (no argument) or
    with another figure gives no PRECONDITION_FAILED in the web process or the worker, jobs run, and
    the queue keeps the arguments it had."""
    from kombu import Queue

    path, config = job_config(tmp_path, worker_broker=rabbitmq_url, worker_consumer_timeout=60)
    if existing is not None:
        _declare(rabbitmq_url, Queue(config.worker_queue, durable=True, queue_arguments=existing or None))
    before = _queue_arguments(rabbitmqctl, config.worker_queue)
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        declared = _queue_arguments(rabbitmqctl, config.worker_queue)
        if existing is None:
            assert before is None
            if _broker_version(rabbitmq_url) < (4, 3):
                assert '{"x-consumer-timeout",60000}' in declared, declared
        else:
            assert declared == before
        client = build_service(config).create_app().test_client()
        response = client.post("/pipelines/double", json={"data": [1, 2], "async": True})
        assert response.status_code == 202, response.get_json()
        job = wait_for_job(client, response.get_json()["job_id"], timeout=30)
        assert job["status"] == "succeeded" and job["results"] == [2, 4], job
        assert _queue_arguments(rabbitmqctl, config.worker_queue) == declared
        assert "PRECONDITION_FAILED" not in worker.log()
        if existing is None and _broker_version(rabbitmq_url) < (3, 12):
            assert "ignores the x-consumer-timeout argument" in worker.log()
    finally:
        worker.stop()
        _delete(rabbitmq_url, config.worker_queue)
