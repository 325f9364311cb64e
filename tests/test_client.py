"""atoll.Client against a real ``atoll serve`` on a loopback port: results, kwargs, RemoteError fields, and
jobs (listing, idempotency keys, cancelling, output, progress, large results) with its embedded worker."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
import requests

from atoll import Client, RemoteError, RunResult
from tests.support import eventually, free_port, job_config, serve, write_config


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    open_conf = write_config(folder, embedded_worker=False)
    secured_conf = write_config(folder, state_dir=str(folder / "state2"), embedded_worker=False,
                                auth_tokens=["client-token"])
    with serve("served:service", open_conf, workers=1) as (plain, _), \
            serve("served:service", secured_conf, workers=1) as (secured, _):
        yield plain, secured


@pytest.fixture(scope="module")
def client(urls):
    with Client(urls[0]) as c:
        yield c


def test_run_returns_results(client):
    assert client.run("double", [1, 2]) == [2, 4]
    assert client.run("/double/", [3]) == [6]


def test_run_passes_kwargs(client):
    assert client.run("scaled", [1, 2], factor=10) == [10, 20]


def test_run_encodes_tuples_numpy_and_dates_in_the_request(client):
    data = {"t": (1, 2), "a": np.arange(3), "d": dt.date(2020, 1, 2)}
    assert client.run("echo", data) == {"t": [1, 2], "a": [0, 1, 2], "d": "2020-01-02"}


def test_pipelines(client):
    listed = {p["name"]: p for p in client.pipelines()}
    assert listed["scaled"]["kwargs"] == ["factor"]


def test_health_and_openapi(client):
    assert client.health()["checks"]["service"]["ok"] is True
    assert "/pipelines/double" in client.openapi()["paths"]


def test_stage_failure_is_a_remote_error_with_everything(client):
    with pytest.raises(RemoteError) as caught:
        client.run("lookup", ["a", "nope"])
    err = caught.value
    assert (err.name, err.status, err.item) == ("KeyError", 500, "nope")
    assert err.stage == {"index": 0, "operator": "map", "function": "lookup", "path": "0"}
    assert "KeyError: 'nope'" in err.traceback and "stage 0 map(lookup)" in err.message
    assert str(err).startswith("KeyError (HTTP 500): stage 0 map(lookup) failed on item 'nope'")


@pytest.mark.parametrize("call, status, name", [
    (lambda c: c.run("scaled", [1]), 400, "InvalidKwargs"),
    (lambda c: c.run("scaled", [1], factor=1, extra=2), 400, "InvalidKwargs"),
    (lambda c: c.run("nope", [1]), 404, "PipelineNotFound"),
    (lambda c: c.run("double", 7), 422, "PipelineError"),
    (lambda c: c.run("opaque", [3]), 500, "EncodingError"),
])
def test_errors_are_remote_errors(client, call, status, name):
    with pytest.raises(RemoteError) as caught:
        call(client)
    assert (caught.value.status, caught.value.name) == (status, name)
    assert caught.value.payload["name"] == name


def test_token(urls):
    with Client(urls[1]) as anonymous:
        with pytest.raises(RemoteError) as caught:
            anonymous.run("double", [1])
        assert (caught.value.status, caught.value.name) == (401, "Unauthorized")
    with Client(urls[1], token="client-token") as authorised:
        assert authorised.run("double", [1]) == [2]


def test_an_answer_that_is_not_atoll_json_is_a_remote_error(urls):
    with Client(urls[0] + "/nowhere") as lost:
        with pytest.raises(RemoteError) as caught:
            lost.pipelines()
    assert caught.value.status == 404


def test_nothing_listening_raises_a_connection_error():
    with Client(f"http://127.0.0.1:{free_port()}", timeout=5) as c:
        with pytest.raises(requests.ConnectionError):
            c.run("double", [1])


# -- jobs: `atoll serve async_service:service` with its embedded worker ------------------------------


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """A Client of a served async_service whose embedded worker runs the jobs; small bounds for output
    and inline results."""
    folder = tmp_path_factory.mktemp("client-jobs")
    path, config = job_config(folder, inline_results_max_bytes=2000, job_log_max_bytes=4096)
    assert config.embedded_worker and config.worker_broker is None
    # /health answers 200 once the embedded worker consumes the queue
    with serve("async_service:service", path, workers=1) as (url, _), Client(url) as c:
        yield c


def test_run_and_submit_with_an_error_policy(jobs):
    outcome = jobs.run("divide", [1, 0, 3], on_error="collect")
    assert isinstance(outcome, RunResult) and outcome.results == [60, 20] and outcome.skipped == 1
    assert outcome.errors[0]["element"] == 0 and outcome.errors[0]["error"] == "ZeroDivisionError"
    assert jobs.run("divide", [1, 3]) == [60, 20]  # no policy: the results as always
    # a pipeline registered with a policy answers a RunResult without one in the call
    registered = jobs.run("comments", [{"text": "ab"}, {}, {"text": "c"}])
    assert registered.results == [2, 1] and registered.skipped == 1
    job = jobs.submit("divide", [0, 0, 6], on_error="collect")
    assert job.result(60) == [10]
    assert [letter["element"] for letter in job.dead_letters()] == [0, 0]
    assert job.record()["element_errors"]["skipped"] == 2


def test_list_jobs_newest_first_with_filters(jobs):
    ids = [jobs.submit("double", [i]).job_id for i in range(3)]
    failed = jobs.submit("explode", [2])
    for job_id in ids:
        assert jobs.job(job_id).result(timeout=30) is not None
    with pytest.raises(RemoteError):
        failed.result(timeout=30)
    listed = jobs.list_jobs(pipeline="double", limit=3)
    assert [j.job_id for j in listed] == ids[::-1]
    assert all(j._summary["status"] == "succeeded" and "results" not in j._summary for j in listed)
    failures = jobs.list_jobs(status="failed", pipeline="explode")
    assert [j.job_id for j in failures][:1] == [failed.job_id]
    assert jobs.list_jobs(status="failed", pipeline="double") == []
    assert repr(failures[0]) == f"Job({failed.job_id!r}, status='failed')"


def test_list_jobs_follows_cursors_past_one_page(jobs):
    ids = [jobs.submit("double", [i]).job_id for i in range(5)]
    for job_id in ids:
        jobs.job(job_id).result(timeout=30)
    paged = Client(jobs.url)
    paged.list_page_size = 2  # five jobs take three requests, the last one asking for one job
    with paged:
        listed = paged.list_jobs(pipeline="double", limit=5)
        assert [j.job_id for j in listed] == ids[::-1]
        everything = paged.list_jobs(pipeline="double", limit=1000)
    assert [j.job_id for j in everything][:5] == ids[::-1]
    assert len({j.job_id for j in everything}) == len(everything) >= 5
    with pytest.raises(RemoteError) as caught:
        jobs.list_jobs(status="lost")
    assert (caught.value.status, caught.value.name) == (400, "InvalidQuery")


def test_the_same_idempotency_key_gives_the_same_job(jobs):
    key = f"order-{time.time_ns()}"
    first = jobs.submit("double", [1, 2], idempotency_key=key)
    again = jobs.submit("double", [1, 2], idempotency_key=key)
    assert again.job_id == first.job_id
    assert jobs.submit("double", [1, 2]).job_id != first.job_id  # no key: a new job
    with pytest.raises(RemoteError) as caught:
        jobs.submit("double", [3], idempotency_key=key)
    assert (caught.value.status, caught.value.name) == (422, "IdempotencyKeyReused")
    assert caught.value.payload["job_id"] == first.job_id
    assert again.result(timeout=30) == [2, 4]


def test_cancel_a_running_job(jobs):
    job = jobs.submit("nap", [1], seconds=20)
    eventually(lambda: job.status() == "running", interval=0.05, what="the job to be running")
    record = job.cancel()
    assert record["status"] == "cancelled" and record["finished_at"] is not None
    assert job.status() == "cancelled"
    with pytest.raises(RemoteError) as caught:
        job.result(timeout=5)
    assert caught.value.name == "JobCancelled" and job.job_id in caught.value.message
    assert jobs.submit("double", [4]).result(timeout=15) == [8]  # the worker goes on
    assert jobs.job(job.job_id).status() == "cancelled"


def test_rerun_a_finished_job_and_a_rerun_of_it(jobs):
    job = jobs.submit("double", [1, 2])
    assert job.result(timeout=30) == [2, 4]
    again = job.rerun()
    assert again.job_id != job.job_id and again.result(timeout=30) == [2, 4]
    assert again.record()["rerun_of"] == job.job_id
    third = jobs.rerun(again.job_id, idempotency_key=f"rerun-{time.time_ns()}")
    assert third.result(timeout=30) == [2, 4] and third.record()["rerun_of"] == again.job_id
    running = jobs.submit("nap", [1], seconds=20)
    with pytest.raises(RemoteError) as caught:
        running.rerun()
    assert (caught.value.status, caught.value.name) == (409, "JobNotFinished")
    running.cancel()
    assert running.rerun().record()["rerun_of"] == running.job_id
    for found in jobs.list_jobs(pipeline="nap"):
        if found.record()["status"] in ("queued", "running"):
            found.cancel()  # the re-run of the nap: free the worker
    with pytest.raises(RemoteError) as unknown:
        jobs.rerun("01a23680-4edc-7d2f-9aa7-064f96a1a969")
    assert (unknown.value.status, unknown.value.name) == (404, "UnknownJob")


def test_cancel_a_finished_job_is_a_409(jobs):
    job = jobs.submit("double", [1])
    assert job.result(timeout=30) == [2]
    with pytest.raises(RemoteError) as caught:
        job.cancel()
    assert (caught.value.status, caught.value.name) == (409, "JobFinished")
    assert caught.value.payload["job_status"] == "succeeded"
    assert jobs.job(job.job_id).status() == "succeeded"
    with pytest.raises(RemoteError) as unknown:
        jobs.job("01a23680-4edc-7d2f-9aa7-064f96a1a969").cancel()
    assert (unknown.value.status, unknown.value.name) == (404, "UnknownJob")


def test_logs_are_what_the_pipeline_printed_and_logged(jobs):
    job = jobs.submit("chatty", ["a", "b"])
    assert job.result(timeout=30) == ["a", "b"]
    lines = job.logs()
    assert [(e["stream"], e["message"]) for e in lines if e["stream"] == "stdout"] == [
        ("stdout", "seen a"), ("stdout", "seen b")]
    assert ("stderr", "warning about b") in [(e["stream"], e["message"]) for e in lines]
    logged = [e for e in lines if e["stream"] == "log"]
    assert [(e["logger"], e["level"], e["message"]) for e in logged] == [
        ("chatty", "INFO", "logged a"), ("chatty", "INFO", "logged b")]
    assert all(set(e) >= {"time", "stream", "message"} for e in lines)
    quiet = jobs.submit("double", [1])
    quiet.result(timeout=30)
    assert quiet.logs() == []


def test_logs_of_a_failed_job_are_kept(jobs):
    job = jobs.submit("chatty", ["c", "boom"])
    with pytest.raises(RemoteError) as caught:
        job.result(timeout=30)
    assert caught.value.name == "ValueError"
    assert "seen boom" in [e["message"] for e in job.logs()]


def test_progress_is_none_or_done_of_total(jobs):
    job = jobs.submit("double", [1, 2, 3])
    job.result(timeout=30)
    progress = job.progress
    assert progress is None or (set(progress) == {"done", "total"} and progress["done"] == progress["total"])


def test_result_fetches_large_results_from_results_url(jobs):
    job = jobs.submit("big", [50])
    assert job.result(timeout=30) == ["x" * 100] * 50
    record = job.record()
    assert record["results"] is None and record["results_url"] == record["status_url"] + "/results"
    small = jobs.submit("big", [2])
    assert small.result(timeout=30) == ["x" * 100] * 2
    assert small.record()["results_url"] is None


def test_the_clients_finished_statuses_are_the_services():
    from atoll.client import FINISHED
    from atoll.service.jobs.model import JobStatus

    assert set(FINISHED) == {status.value for status in JobStatus if status.finished}
