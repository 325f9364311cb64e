"""The job store on Redis (``worker_backend: redis://``), the store of a service on several machines:
records, listing, idempotency claims and the record lock, against a real Redis server.

Needs a Redis server on 127.0.0.1:6379 (``ATOLL_TEST_REDIS`` for another URL) and the ``redis`` client
(the ``redis`` extra); skipped with the reason otherwise, failed under ``ATOLL_REQUIRE=redis``.
"""

from __future__ import annotations

import os
import uuid

import pytest

from atoll import Atoll, Pipeline
from atoll.config import load_config
from atoll.service.jobs.model import ErrorBody, Job, JobStatus, new_job_id
from tests.support import race_saves
from tests.support.redis_db import empty_redis

URL = os.environ.get("ATOLL_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url():
    yield from empty_redis(URL)


def _store(url: str, tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state"), worker_backend=url,
                                worker_queue=f"atoll-test-{uuid.uuid4().hex[:8]}", embedded_worker=False))
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    return service, service.job_system().store


def test_records_listing_and_claims_on_redis(redis_url, tmp_path):
    service, store = _store(redis_url, tmp_path)
    jobs = []
    for i in range(7):
        job = Job(new_job_id(), "double" if i % 2 else "other")
        job.start()
        if i == 3:
            job.fail(ErrorBody("KeyError", "x"))
        elif i != 6:
            job.succeed([i])
        assert store.save(job)
        jobs.append(job)
    assert store.load(jobs[3].job_id).status is JobStatus.FAILED
    assert service.celery.AsyncResult(jobs[3].job_id).failed()
    client = service.create_app().test_client()
    page = client.get("/jobs?limit=3").get_json()
    assert [j["job_id"] for j in page["jobs"]] == [j.job_id for j in jobs[::-1][:3]]
    rest = client.get(f"/jobs?limit=10&cursor={page['next']}").get_json()
    assert [j["job_id"] for j in rest["jobs"]] == [j.job_id for j in jobs[::-1][3:]]
    assert rest["next"] is None
    failed = client.get("/jobs?status=failed").get_json()["jobs"]
    assert [j["job_id"] for j in failed] == [jobs[3].job_id]
    # a finished record never changes
    late = Job(jobs[0].job_id, "other")
    late.start()
    late.cancel()
    assert not store.save(late)
    assert store.load(jobs[0].job_id).status is JobStatus.SUCCEEDED
    # an idempotency claim is taken once
    assert store.claim("k1", {"job_id": jobs[0].job_id, "body": "h"}) is None
    assert store.claim("k1", {"job_id": "other", "body": "h2"}) == {"job_id": jobs[0].job_id, "body": "h"}


def _race(url: str, folder: str, job_ids: list[str], outcome: str, start, results) -> None:
    from pathlib import Path

    _, store = _store(url, Path(folder))
    start.wait()
    for job_id in job_ids:
        job = Job(job_id, "double")
        job.start()
        job.succeed([1]) if outcome == "succeeded" else job.cancel()
        results.put((job_id, outcome, store.save(job)))


def test_a_worker_and_a_cancel_that_cross_store_one_outcome_on_redis(redis_url, tmp_path):
    _, store = _store(redis_url, tmp_path)
    ids = []
    for _ in range(100):
        job = Job(new_job_id(), "double")
        job.start()
        assert store.save(job)
        ids.append(job.job_id)
    winners = race_saves(_race, lambda outcome: (redis_url, str(tmp_path / outcome)),
                         ("succeeded", "cancelled"), ids)
    assert set(winners) == set(ids)
    assert all(store.load(job_id).status.value == outcome for job_id, outcome in winners.items())
