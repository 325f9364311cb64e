"""Job ids: UUIDs of version 7 whose text sorts in the order they were made, within a millisecond too."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

from atoll.service.jobs import model
from atoll.service.jobs.model import is_job_id, new_job_id


def _fields(job_id: str) -> tuple[int, int, int, int]:
    value = uuid.UUID(job_id).int
    random = (value >> 64 & 0xFFF) << 62 | value & (2 ** 62 - 1)
    return value >> 80, value >> 76 & 0xF, value >> 62 & 0b11, random


def test_ids_made_in_a_tight_loop_sort_in_the_order_they_were_made():
    ids = [new_job_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    millis = [_fields(i)[0] for i in ids]
    assert len(set(millis)) < len(ids), "the loop should make several ids within one millisecond"
    for job_id in ids:
        assert is_job_id(job_id)
        parsed = uuid.UUID(job_id)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_the_time_in_an_id_is_the_time_it_was_made():
    before = time.time_ns() // 1_000_000
    job_id = new_job_id()
    after = time.time_ns() // 1_000_000
    assert before <= _fields(job_id)[0] <= after


def test_a_clock_that_steps_back_does_not_break_the_order(monkeypatch):
    first = new_job_id()
    real = time.time_ns()
    monkeypatch.setattr(model.time, "time_ns", lambda: real - 5_000_000_000)
    later = [new_job_id() for _ in range(100)]
    assert [first, *later] == sorted([first, *later])


def test_random_bits_spent_in_one_millisecond_move_on_to_the_next(monkeypatch):
    ids = model._JobIds()
    frozen = time.time_ns()
    monkeypatch.setattr(model.time, "time_ns", lambda: frozen)
    made = [ids.next()]
    ids._random = ids._LIMIT - 1  # as if the 74 bits were spent
    made += [ids.next() for _ in range(10)]
    assert made == sorted(made)
    assert _fields(made[1])[0] == _fields(made[0])[0] + 1


def test_ids_of_several_threads_are_unique_and_each_threads_ids_ascend():
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(out):
        out.extend(new_job_id() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything)
    for out in per_thread:
        assert out == sorted(out)


def _child_ids(queue):
    queue.put([new_job_id() for _ in range(200)])


def test_a_child_forked_while_an_id_is_being_made_can_make_ids():
    """The parent's lock is held (as by a thread making an id) when the child is forked: the child takes a
    lock of its own and starts on fresh random bits."""
    new_job_id()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child_ids, args=(queue,)) for _ in range(2)]
    with model._job_ids._lock:
        for child in children:
            child.start()
    try:
        got = [queue.get(timeout=30) for _ in children]
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
    mine = [new_job_id() for _ in range(200)]
    everything = got[0] + got[1] + mine
    assert len(set(everything)) == len(everything)
    assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])
