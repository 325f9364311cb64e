"""Jobs as a resource, end to end against a real worker on a real broker (the embedded one and RabbitMQ):
honest Celery states, listing, cancelling (queued and running), output, idempotency keys, large results
and Retry-After."""

from __future__ import annotations

import json
import time

import pytest

from atoll.service.jobs.model import JobFailed
from tests.async_service import build_service
from tests.spark_cluster import require_spark
from tests.support import Worker, eventually, job_config, race_saves, running_stack, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request, tmp_path_factory):
    """(config, service, test client, worker) on one broker, with one worker process for the module."""
    with running_stack(request, tmp_path_factory, "jobs", inline_results_max_bytes=2000,
                       job_log_max_bytes=4096) as (config, worker):
        service = build_service(config)
        yield config, service, service.create_app().test_client(), worker


def submit(client, name, data, headers=None, **body):
    response = client.post(f"/pipelines/{name}", json={"data": data, "async": True, **body},
                           headers=headers or {})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


# -- Celery states ----------------------------------------------------------------------------


def test_a_failed_job_is_a_celery_failure_and_a_succeeded_one_a_success(stack):
    _, service, client, _ = stack
    failed = submit(client, "explode", [1, 2])
    succeeded = submit(client, "double", [1])
    assert wait_for_job(client, failed)["status"] == "failed"
    assert wait_for_job(client, succeeded)["status"] == "succeeded"
    result = service.celery.AsyncResult(failed)
    assert result.state == "FAILURE" and result.failed()
    assert isinstance(result.result, JobFailed)
    assert str(result.result) == "stage 1 map(_explode_on_three) failed on item 3: KeyError: 'no entry 3'"
    assert "_explode_on_three" in result.traceback  # where Flower shows it
    record = result.result.args[1]  # the whole record travels with the exception
    assert record["status"] == "failed" and record["error"]["stage"]["function"] == "_explode_on_three"
    ok = service.celery.AsyncResult(succeeded)
    assert ok.state == "SUCCESS" and ok.successful() and ok.result["results"] == [2]


# -- listing ----------------------------------------------------------------------------------


def test_jobs_are_listed_newest_first_with_filters_and_cursors(stack):
    _, _, client, _ = stack
    ids = [submit(client, "double", [i]) for i in range(5)]
    failed = submit(client, "explode", [2])
    for job_id in [*ids, failed]:
        wait_for_job(client, job_id)
    page = client.get("/jobs?pipeline=double&limit=2").get_json()
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:2]
    assert all("results" not in j for j in page["jobs"])  # the listing leaves results out
    seen = [j["job_id"] for j in page["jobs"]]
    while page["next"] is not None:
        page = client.get(f"/jobs?pipeline=double&limit=2&cursor={page['next']}").get_json()
        seen += [j["job_id"] for j in page["jobs"]]
    assert seen[:5] == ids[::-1]  # earlier tests of the module may have run double too
    assert len(seen) == len(set(seen))
    failures = client.get("/jobs?status=failed&pipeline=explode").get_json()["jobs"]
    assert failures[0]["job_id"] == failed and failures[0]["error"]["name"] == "KeyError"
    newest = client.get("/jobs?limit=1").get_json()
    assert newest["jobs"][0]["job_id"] == failed and newest["next"] is not None


@pytest.mark.parametrize("query, name", [
    ("status=lost", "InvalidQuery"), ("limit=0", "InvalidQuery"), ("limit=501", "InvalidQuery"),
    ("limit=ten", "InvalidQuery"), ("cursor=bm9wZQ", "InvalidCursor"), ("colour=red", "InvalidQuery"),
])
def test_a_bad_listing_query_is_a_400_naming_the_parameter(stack, query, name):
    _, _, client, _ = stack
    response = client.get(f"/jobs?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["name"] == name
    assert query.split("=")[0] in response.get_json()["error"]["message"]


# -- cancelling -------------------------------------------------------------------------------


def test_a_queued_job_that_is_cancelled_never_runs(stack, tmp_path, callback_receiver):
    _, service, client, _ = stack
    # two naps fill both pool processes (prefetch 1): the third job waits in the queue
    blockers = [submit(client, "nap", [1], kwargs={"seconds": 2.0}) for _ in range(2)]
    marker = tmp_path / "ran"
    job_id = submit(client, "touch", [1], kwargs={"seconds": 0, "marker": str(marker)},
                    callback=callback_receiver.url)
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200 and answer.get_json()["status"] == "cancelled"
    assert answer.get_json()["finished_at"] is not None
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    payload = [c for c in callback_receiver.accepted() if c.json["job_id"] == job_id][0].json
    assert payload["status"] == "cancelled" and payload["results"] is None
    for blocker in blockers:
        assert wait_for_job(client, blocker)["status"] == "succeeded"
    time.sleep(1.0)  # the worker took the cancelled message by now, and must have dropped it
    assert not marker.exists()
    assert wait_for_job(client, job_id)["status"] == "cancelled"
    assert service.celery.AsyncResult(job_id).state == "REVOKED"
    assert client.get(f"/jobs/{job_id}").get_json()["callback"]["state"] == "delivered"


def test_a_running_job_that_is_cancelled_is_stopped(stack, tmp_path):
    _, _, client, worker = stack
    marker = tmp_path / "ran"
    job_id = submit(client, "touch", [1], kwargs={"seconds": 20, "marker": str(marker)})
    eventually(lambda: client.get(f"/jobs/{job_id}").get_json()["status"] == "running", interval=0.05,
               what=f"job {job_id} to run")
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200 and answer.get_json()["status"] == "cancelled"
    # the pool process was stopped, not left sleeping: two quick jobs run on both processes at once
    quick = [submit(client, "nap", [i], kwargs={"seconds": 1.0}) for i in range(2)]
    started = time.monotonic()
    for job_id_ in quick:
        assert wait_for_job(client, job_id_, timeout=15)["status"] == "succeeded"
    assert time.monotonic() - started < 10  # well under the 20 s the cancelled job would still sleep
    assert not marker.exists()
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "cancelled"
    assert "cancelled" in worker.log()


def test_a_running_local_executor_job_that_is_cancelled_stops_its_pool_work(stack, tmp_path):
    _, _, client, _ = stack
    # 40 chunks of one element, each sleeping 0.5 s then leaving a marker file, on 2 pool processes
    job_id = submit(client, "chunked", list(range(40)), kwargs={"seconds": 0.5, "folder": str(tmp_path)})
    eventually(lambda: len(list(tmp_path.iterdir())) >= 2, interval=0.05, what="two items to be done")
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    time.sleep(1.0)  # a chunk that was already sleeping may still finish
    done = len(list(tmp_path.iterdir()))
    time.sleep(2.0)  # 8 more markers would appear if the pool went on
    assert len(list(tmp_path.iterdir())) == done < 40
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "cancelled"
    again = submit(client, "chunked", [1, 2], kwargs={"seconds": 0, "folder": str(tmp_path / "again")})
    (tmp_path / "again").mkdir()
    assert wait_for_job(client, again, timeout=20)["status"] == "succeeded"


def test_cancelling_a_finished_job_is_a_409_and_an_unknown_one_a_404(stack):
    _, _, client, _ = stack
    job_id = submit(client, "double", [1])
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 409
    assert answer.get_json()["error"]["name"] == "JobFinished"
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "succeeded"
    unknown = client.delete("/jobs/01a23680-4edc-7d2f-9aa7-064f96a1a969")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["name"] == "UnknownJob"


# -- progress ---------------------------------------------------------------------------------


def test_a_running_job_shows_its_progress(stack, tmp_path):
    _, _, client, _ = stack
    # 12 chunks of one element, 0.4 s each, on 2 pool processes: about 2.4 s of running
    job_id = submit(client, "chunked", list(range(12)), kwargs={"seconds": 0.4, "folder": str(tmp_path)})
    seen = []

    def finished() -> dict | None:
        record = client.get(f"/jobs/{job_id}").get_json()
        if record["progress"] is not None:
            seen.append((record["progress"]["done"], record["progress"]["total"]))
        return record if record["status"] in ("succeeded", "failed") else None

    record = eventually(finished, 60, what=f"job {job_id} to finish")
    assert record["status"] == "succeeded"
    assert record["progress"] == {"done": 12, "total": 12}
    running = [p for p in seen[:-1] if p[0] < p[1]]
    assert running, f"no progress was shown while the job ran: {seen}"
    assert all(total == 12 for _, total in running)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)  # never goes back


# -- output -----------------------------------------------------------------------------------


def test_what_a_job_printed_and_logged_is_kept_also_when_it_failed(stack):
    _, _, client, _ = stack
    ok = submit(client, "chatty", ["a", "b"])
    failed = submit(client, "chatty", ["c", "boom"])
    assert wait_for_job(client, ok)["status"] == "succeeded"
    assert wait_for_job(client, failed)["status"] == "failed"
    response = client.get(f"/jobs/{ok}/logs")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    entries = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert {"stream": "stdout", "message": "seen a"}.items() <= entries[0].items()
    assert ("stderr", "warning about a") in [(e["stream"], e["message"]) for e in entries]
    logged = [e for e in entries if e["stream"] == "log"]
    assert logged and logged[0]["logger"] == "chatty" and logged[0]["level"] == "INFO"
    assert logged[0]["message"] == "logged a"
    failed_lines = client.get(f"/jobs/{failed}/logs").get_data(as_text=True)
    assert "seen boom" in failed_lines
    assert client.get("/jobs/01a23680-4edc-7d2f-9aa7-064f96a1a969/logs").status_code == 404


def test_a_cancelled_jobs_output_is_kept(stack):
    _, _, client, _ = stack
    job_id = submit(client, "saynap", [1], kwargs={"seconds": 20})
    eventually(lambda: client.get(f"/jobs/{job_id}").get_json()["status"] == "running", interval=0.05,
               what=f"job {job_id} to run")
    time.sleep(0.3)
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    # the worker stores what the job printed once its run is stopped
    text = eventually(lambda: client.get(f"/jobs/{job_id}/logs").get_data(as_text=True), 20, 0.05,
                      what=f"job {job_id}'s logs")
    assert "started 1" in text


def test_a_jobs_output_is_bounded_keeping_its_tail(stack):
    config, _, client, _ = stack
    job_id = submit(client, "chatty", [f"line {i:04d}" for i in range(200)])
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    text = client.get(f"/jobs/{job_id}/logs").get_data(as_text=True)
    assert len(text.encode()) <= config.job_log_max_bytes
    entries = [json.loads(line) for line in text.splitlines()]
    assert entries[0]["stream"] == "atoll" and "dropped" in entries[0]["message"]
    assert entries[-1]["message"] == "logged line 0199"


# -- idempotency ------------------------------------------------------------------------------


def test_the_same_idempotency_key_gives_the_same_job_and_another_body_a_422(stack):
    _, _, client, _ = stack
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    first = submit(client, "double", [1, 2], headers=key)
    again = client.post("/pipelines/double", json={"data": [1, 2], "async": True}, headers=key)
    assert again.status_code == 202 and again.get_json()["job_id"] == first
    assert again.headers["Location"].endswith(f"/jobs/{first}")
    other = client.post("/pipelines/double", json={"data": [3], "async": True}, headers=key)
    assert other.status_code == 422 and other.get_json()["error"]["name"] == "IdempotencyKeyReused"
    stranger = client.post("/pipelines/double", json={"data": [1, 2], "async": True},
                           headers={**key, "Authorization": "Bearer someone-else"})
    assert stranger.status_code == 202 and stranger.get_json()["job_id"] != first  # per caller
    assert wait_for_job(client, first)["results"] == [2, 4]
    listed = client.get("/jobs?pipeline=double&limit=500").get_json()["jobs"]
    assert [j["job_id"] for j in listed].count(first) == 1


def test_concurrent_requests_with_one_key_make_one_job(stack):
    from concurrent.futures import ThreadPoolExecutor

    _, service, _, _ = stack
    app = service.create_app()
    key = {"Idempotency-Key": f"race-{time.time_ns()}"}

    def post(_):
        response = app.test_client().post("/pipelines/double", json={"data": [5], "async": True}, headers=key)
        return response.status_code, (response.get_json() or {}).get("job_id")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(16)))
    ids = {job_id for status, job_id in answers if status == 202}
    assert len(ids) == 1, answers
    assert all(status in (202, 409) for status, _ in answers), answers


# -- large results ----------------------------------------------------------------------------


def test_large_results_travel_by_url(stack, callback_receiver):
    config, _, client, _ = stack
    job_id = submit(client, "big", [50], callback=callback_receiver.url)
    record = wait_for_job(client, job_id)
    assert record["status"] == "succeeded" and record["results"] is None
    assert record["results_url"] == record["status_url"] + "/results"
    path = record["results_url"].split("localhost", 1)[1]
    results = client.get(path).get_json()["results"]
    assert results == ["x" * 100] * 50
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    payload = [c for c in callback_receiver.accepted() if c.json["job_id"] == job_id][0].json
    assert payload["results"] is None and payload["results_url"] == record["results_url"]
    small = submit(client, "big", [2])
    record = wait_for_job(client, small)
    assert record["results"] == ["x" * 100] * 2 and record["results_url"] is None
    assert client.get(f"/jobs/{small}/results").get_json() == {"results": ["x" * 100] * 2}


def test_results_of_an_unfinished_job_are_a_409(stack):
    _, _, client, _ = stack
    job_id = submit(client, "nap", [1], kwargs={"seconds": 1.5})
    answer = client.get(f"/jobs/{job_id}/results")
    assert answer.status_code == 409 and answer.get_json()["error"]["name"] == "NoResults"
    wait_for_job(client, job_id)


# -- Retry-After ------------------------------------------------------------------------------


def test_202_and_503_answers_say_when_to_retry(stack, tmp_path):
    _, _, client, _ = stack
    response = client.post("/pipelines/double", json={"data": [1], "async": True})
    assert response.status_code == 202 and response.headers["Retry-After"] == "1"
    _, down = job_config(tmp_path, worker_broker="amqp://guest:guest@127.0.0.1:1//")
    refused = build_service(down).create_app().test_client().post(
        "/pipelines/double", json={"data": [1], "async": True})
    assert refused.status_code == 503 and refused.get_json()["error"]["name"] == "BrokerUnavailable"
    assert int(refused.headers["Retry-After"]) > 0


# -- a job whose process is killed -------------------------------------------------------------


def test_a_job_past_its_hard_time_limit_fails_with_a_record_and_a_callback(tmp_path, callback_receiver):
    """The pool process is killed by the hard limit, so the task cannot write its outcome: the worker's
    main process does (Celery's task_failure signal), and Celery's state agrees."""
    path, config = job_config(tmp_path, pipeline_time_limits={"nap": {"hard": 1.0}})
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        service = build_service(config)
        client = service.create_app().test_client()
        job_id = submit(client, "nap", [1], kwargs={"seconds": 30}, callback=callback_receiver.url)
        record = wait_for_job(client, job_id, timeout=30)
        assert record["status"] == "failed" and record["error"]["name"] == "TimeLimitExceeded"
        assert "hard time limit of 1.0 s" in record["error"]["message"]
        assert record["submitted_at"] and record["finished_at"]
        assert service.celery.AsyncResult(job_id).state == "FAILURE"
        assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
        payload = [c for c in callback_receiver.accepted() if c.json["job_id"] == job_id][0].json
        assert payload["status"] == "failed" and payload["error"]["name"] == "TimeLimitExceeded"
    finally:
        worker.stop()


# -- a finished record never changes ----------------------------------------------------------


def _race(state_dir: str, job_ids: list[str], outcome: str, start, results) -> None:
    """One side of the race: move each job to ``outcome`` and save it (run in its own process)."""
    from atoll.config import load_config
    from atoll.service.jobs.model import ErrorBody, Job

    store = build_service(load_config(state_dir=state_dir)).job_system().store
    start.wait()
    for job_id in job_ids:
        job = Job(job_id, "double")
        job.start()
        if outcome == "succeeded":
            job.succeed([1])
        elif outcome == "failed":
            job.fail(ErrorBody("KeyError", "x"))
        else:
            job.cancel()
        results.put((job_id, outcome, store.save(job)))


def test_when_a_worker_and_a_cancel_cross_exactly_one_outcome_is_stored(tmp_path):
    """Three processes finish the same 200 running jobs three ways at once: for every job exactly one
    save wins, and the stored record is the winner's, never overwritten by a later save."""
    from atoll.config import load_config
    from atoll.service.jobs.model import Job, new_job_id

    state_dir = str(tmp_path / "state")
    store = build_service(load_config(state_dir=state_dir)).job_system().store
    ids = []
    for _ in range(200):
        job = Job(new_job_id(), "double")
        job.start()
        assert store.save(job)
        ids.append(job.job_id)
    winners = race_saves(_race, lambda _: (state_dir,), ("succeeded", "failed", "cancelled"), ids)
    assert set(winners) == set(ids)
    for job_id, outcome in winners.items():
        assert store.load(job_id).status.value == outcome


# -- Spark in the worker ----------------------------------------------------------------------


@pytest.mark.spark
def test_a_spark_job_shows_its_progress_and_is_stopped_when_cancelled(tmp_path):
    """The worker's pool process runs the pipeline on Spark (local mode): the record shows partitions
    done while it runs, and a cancelled job's Spark tasks stop (no marker written after the cancel)."""
    require_spark()
    path, config = job_config(tmp_path, spark_master="local[2]",
                                spark_conf={"spark.default.parallelism": "6", "spark.ui.enabled": "false"},
                                worker_concurrency=1)
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        client = build_service(config).create_app().test_client()
        done_folder = tmp_path / "done"
        done_folder.mkdir()
        job_id = submit(client, "sparknap", list(range(6)),
                        kwargs={"seconds": 1.0, "folder": str(done_folder)})
        seen = []
        record = eventually(lambda: _progress_seen(client, job_id, seen), 120, 0.05,
                            what=f"job {job_id} to finish")
        assert record["status"] == "succeeded" and sorted(record["results"]) == list(range(6))
        assert record["progress"]["done"] == record["progress"]["total"] >= 6
        assert any(done < total for done, total in seen[:-1]), seen

        cancelled_folder = tmp_path / "cancelled"
        cancelled_folder.mkdir()
        job_id = submit(client, "sparknap", list(range(6)), kwargs={"seconds": 6.0,
                                                                    "folder": str(cancelled_folder)})
        eventually(lambda: (client.get(f"/jobs/{job_id}").get_json()["progress"] or {}).get("total"), 60,
                   0.05, what=f"job {job_id} to show its progress")
        assert client.delete(f"/jobs/{job_id}").status_code == 200
        # the tasks running at the cancel (6 s naps) are killed: Spark interrupts them and kills their
        # Python workers after spark.python.task.killTimeout (2 s); the partitions left never start
        time.sleep(9)
        assert list(cancelled_folder.iterdir()) == []
        assert client.get(f"/jobs/{job_id}").get_json()["status"] == "cancelled"
        again = submit(client, "sparknap", [1], kwargs={"seconds": 0, "folder": str(done_folder)})
        assert wait_for_job(client, again, timeout=60)["status"] == "succeeded"
    finally:
        worker.stop()


def _progress_seen(client, job_id, seen):
    record = client.get(f"/jobs/{job_id}").get_json()
    if record["progress"] is not None:
        seen.append((record["progress"]["done"], record["progress"]["total"]))
    return record if record["status"] in ("succeeded", "failed", "cancelled") else None


def test_celery_apps_of_dropped_services_are_not_kept_alive(tmp_path):
    """Each service's Celery app listens for task_failure (a job killed by its hard time limit); the
    receiver belongs to the app, so a process that makes many services does not keep them all."""
    import gc
    import weakref

    from celery.signals import task_failure

    def make() -> weakref.ref:
        service = build_service(job_config(tmp_path)[1])
        return weakref.ref(service.celery)

    gc.collect()
    before = len(task_failure.receivers)
    apps = [make() for _ in range(5)]
    gc.collect()
    assert [app() for app in apps] == [None] * 5
    make()  # Celery drops the dead receivers when the next one connects
    gc.collect()
    assert len(task_failure.receivers) <= before + 1
