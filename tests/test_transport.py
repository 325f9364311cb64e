"""The embedded broker (atoll's own kombu filesystem transport) across processes: atomic puts, one
winner per message, atomic result writes, and a stress run of 2,000 jobs from concurrent producer
processes into two worker processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
from kombu import Connection, Exchange, Queue

from atoll.service.transport import TRANSPORT, FileResultBackend, embedded_options
from tests.async_service import produce
from tests.support import Worker, job_config


def _connection(state_dir):
    return Connection("filesystem://localhost/", transport=TRANSPORT,
                      transport_options=embedded_options(state_dir))


def test_put_is_whole_and_leaves_no_temporary_file(tmp_path):
    queue = Queue("q1", Exchange("q1"), "q1")
    with _connection(tmp_path) as conn:
        producer = conn.Producer()
        producer.publish({"n": "x" * 100_000}, exchange=queue.exchange, routing_key="q1", declare=[queue])
        folder = tmp_path / "broker" / "queue"
        names = os.listdir(folder)
        assert len(names) == 1 and names[0].endswith(".q1.msg")
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=2)
            assert message.payload == {"n": "x" * 100_000}
            message.ack()
        assert os.listdir(folder) == []


def test_a_file_being_written_is_never_consumed(tmp_path):
    queue = Queue("q2", Exchange("q2"), "q2")
    with _connection(tmp_path) as conn:
        folder = tmp_path / "broker" / "queue"
        (folder / ".tmp-0123-000000000000001_x.q2.msg").write_bytes(b'{"half": ')
        with conn.SimpleQueue(queue) as simple:
            with pytest.raises(simple.Empty):
                simple.get(timeout=0.3)


def test_each_message_goes_to_exactly_one_consumer(tmp_path):
    queue = Queue("q3", Exchange("q3"), "q3")
    total = 600
    with _connection(tmp_path) as conn:
        producer = conn.Producer()
        for i in range(total):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="q3", declare=[queue])
    got: list[list[int]] = [[], [], []]

    def consume(slot):
        with _connection(tmp_path) as conn, conn.SimpleQueue(queue) as simple:
            while True:
                try:
                    message = simple.get(timeout=0.5)
                except simple.Empty:
                    return
                got[slot].append(message.payload["i"])
                message.ack()

    threads = [threading.Thread(target=consume, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [i for part in got for i in part]
    assert sorted(everything) == list(range(total))
    assert sum(1 for part in got if part) >= 2, "one consumer took everything; nothing was raced"


def test_file_result_backend_writes_atomically(tmp_path):
    from celery import Celery

    app = Celery(set_as_current=False)
    backend = FileResultBackend(app=app, url=f"file://{tmp_path}")
    backend.store_result("job-1", {"status": "running"}, "STARTED")
    backend.store_result("job-1", {"status": "succeeded", "results": [1]}, "SUCCESS")
    assert backend.get_task_meta("job-1", cache=False)["result"] == {"status": "succeeded", "results": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["celery-task-meta-job-1"]


# a consumer in another process: takes messages of QUEUE without acknowledging them, says "took N",
# then waits to be killed
_HOLDER = """
import sys, time
from kombu import Connection, Exchange, Queue
from atoll.service.transport import TRANSPORT, embedded_options
state, name, auto_delete, fanout = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
exchange = Exchange(name + "-x", type="fanout" if fanout else "direct")
queue = Queue(name, exchange, name, auto_delete=auto_delete)
conn = Connection("filesystem://localhost/", transport=TRANSPORT, transport_options=embedded_options(state))
took = []
consumer = conn.Consumer([queue], callbacks=[lambda body, message: took.append(body)])
consumer.qos(prefetch_count=2)
consumer.consume()
deadline = time.monotonic() + 20
while len(took) < int(sys.argv[5]) and time.monotonic() < deadline:
    try:
        conn.drain_events(timeout=0.2)
    except Exception:
        pass
print("took", len(took), flush=True)
time.sleep(600)
"""


def _holder(state_dir, queue, count, auto_delete=False, fanout=False):
    """Start a consumer process that takes ``count`` messages of ``queue`` and never acknowledges."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(state_dir), queue, str(int(auto_delete)),
                                str(int(fanout)), str(count)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().split() == ["took", str(count)]
    return process


def _kill9(process):
    import signal

    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stdout.close()


def test_messages_taken_by_a_consumer_killed_with_sigkill_are_delivered_again(tmp_path):
    queue = Queue("q5", Exchange("q5-x"), "q5")
    with _connection(tmp_path) as conn:
        producer = conn.Producer()
        for i in range(3):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="q5", declare=[queue])
        holder = _holder(tmp_path, "q5", count=2)
        consumers = tmp_path / "broker" / "consumers"
        taken = [p.name for p in consumers.glob("*/*.msg")]
        assert len(taken) == 2, "messages taken and not acknowledged must stay on disk"
        with conn.SimpleQueue(queue) as simple:
            first = simple.get(timeout=2)  # the one nobody had taken
            first.ack()
            with pytest.raises(simple.Empty):
                simple.get(timeout=1.5)  # the holder lives: its messages are its own
            _kill9(holder)
            again = []
            for _ in range(2):
                message = simple.get(timeout=5)
                again.append(message.payload["i"])
                message.ack()
            assert sorted([first.payload["i"], *again]) == [0, 1, 2]
            with pytest.raises(simple.Empty):
                simple.get(timeout=1.5)  # each exactly once more
        assert list(consumers.glob("*/*.msg")) == []
        assert os.listdir(tmp_path / "broker" / "queue") == []
        assert len(os.listdir(consumers)) == 1, "the dead consumer's folder was not removed"


def test_a_rejected_message_goes_back_to_its_queue_and_an_acknowledged_one_is_gone(tmp_path):
    queue = Queue("q6", Exchange("q6-x"), "q6")
    with _connection(tmp_path) as conn:
        conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="q6", declare=[queue])
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=2)
            assert len(list((tmp_path / "broker" / "consumers").glob("*/*.msg"))) == 1
            message.requeue()
            message = simple.get(timeout=2)
            assert message.payload == {"n": 1}
            message.ack()
        assert list((tmp_path / "broker").glob("*/*.msg")) == []
        assert list((tmp_path / "broker").glob("*/*/*.msg")) == []


def test_the_auto_delete_queue_of_a_dead_consumer_is_deleted(tmp_path):
    from atoll.service.transport import live_consumers

    options = embedded_options(tmp_path)
    fanout = Exchange("aq-x", type="fanout")
    holder = _holder(tmp_path, "aq", count=0, auto_delete=True, fanout=True)
    assert [c["queues"] for c in live_consumers(options)] == [["aq"]]
    with _connection(tmp_path) as conn:
        conn.Producer().publish({"hello": 1}, exchange=fanout, declare=[fanout])
        assert [n for n in os.listdir(tmp_path / "broker" / "queue") if n.endswith(".aq.msg")]
        _kill9(holder)
        assert live_consumers(options) == []
        with conn.SimpleQueue(Queue("other", Exchange("other-x"), "other")) as simple:
            with pytest.raises(simple.Empty):
                simple.get(timeout=1.5)  # a living consumer's poll cleans up after the dead one
        assert os.listdir(tmp_path / "broker" / "queue") == [], "the dead consumer's queue kept its messages"
        conn.Producer().publish({"hello": 2}, exchange=fanout, declare=[fanout])
        assert os.listdir(tmp_path / "broker" / "queue") == [], "a broadcast still went to a dead queue"


def test_folders_of_consumers_that_died_while_starting_are_removed(tmp_path):
    consumers = tmp_path / "broker" / "consumers"
    consumers.mkdir(parents=True)
    with_lock, without_lock, young = (consumers / ".tmp-a", consumers / ".tmp-b", consumers / ".tmp-c")
    for folder in (with_lock, without_lock, young):
        folder.mkdir()
    (with_lock / "owner.lock").touch()
    (young / "owner.lock").touch()
    long_ago = time.time() - 120
    for folder in (with_lock, without_lock):
        os.utime(folder, (long_ago, long_ago))
    queue = Queue("q7", Exchange("q7-x"), "q7")
    with _connection(tmp_path) as conn, conn.SimpleQueue(queue) as simple:
        with pytest.raises(simple.Empty):
            simple.get(timeout=0.2)
    # a young one may belong to a process that is starting: left alone
    assert sorted(p.name for p in consumers.glob(".tmp-*")) == [".tmp-c"]


@pytest.mark.slow
def test_stress_2000_jobs_from_concurrent_producers_into_two_workers(tmp_path, callback_receiver):
    path, config = job_config(tmp_path, worker_concurrency=1)
    workers = [Worker(path).start() for _ in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(4) as pool:
            parts = pool.starmap(produce, [(str(path), 500, callback_receiver.url)] * 4)
        ids = [job_id for part in parts for job_id in part]
        assert len(set(ids)) == 2000
        missing = callback_receiver.wait_for_jobs(ids, timeout=240)
        assert not missing, f"{len(missing)} of 2000 jobs lost"
        arrived = [c.json["job_id"] for c in callback_receiver.accepted()]
        assert len(arrived) == 2000, "duplicate deliveries without any failure"
        for worker in workers:
            assert worker.alive(), worker.log()[-3000:]
            log = worker.log()
            assert "Unrecoverable error" not in log and "JSONDecodeError" not in log
        ran = [w.log().count("atoll.run_pipeline[") for w in workers]
        assert all(ran), f"one worker ran no job: {ran}"
    finally:
        for worker in workers:
            worker.stop()
