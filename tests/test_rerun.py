"""Re-running a finished job (POST /jobs/<id>/rerun, Client.rerun, Job.rerun), end to end against a real
worker on a real broker (the embedded one and RabbitMQ)."""

from __future__ import annotations

import time

import pytest

from tests.async_service import build_service
from tests.support import eventually, running_stack, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request, tmp_path_factory):
    """(config, service, test client, worker) on one broker, with one worker process for the module."""
    with running_stack(request, tmp_path_factory, "rerun") as (config, worker):
        service = build_service(config)
        yield config, service, service.create_app().test_client(), worker


def submit(client, name, data, headers=None, **body):
    response = client.post(f"/pipelines/{name}", json={"data": data, "async": True, **body},
                           headers=headers or {})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def rerun(client, job_id, headers=None):
    response = client.post(f"/jobs/{job_id}/rerun", headers=headers or {})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == body["status_url"] and body["status_url"].endswith(body["job_id"])
    return body["job_id"]


def test_a_failed_job_rerun_runs_the_same_request_again_and_links_it(stack):
    _, _, client, _ = stack
    failed = submit(client, "explode", [1, 2])
    assert wait_for_job(client, failed)["status"] == "failed"
    again = rerun(client, failed)
    assert again != failed
    record = wait_for_job(client, again)
    assert record["status"] == "failed" and record["rerun_of"] == failed
    assert record["error"]["stage"]["function"] == "_explode_on_three"  # the same data: 3 again
    assert client.get(f"/jobs/{failed}").get_json()["rerun_of"] is None
    # same data and kwargs: a re-run of a succeeded job gives the same results
    done = submit(client, "double", [4, 5])
    assert wait_for_job(client, done)["results"] == [8, 10]
    second = rerun(client, done)
    assert wait_for_job(client, second)["results"] == [8, 10]
    # a re-run of a re-run links the one it re-ran
    third = rerun(client, second)
    record = wait_for_job(client, third)
    assert record["rerun_of"] == second and record["results"] == [8, 10]


def test_a_rerun_keeps_kwargs_and_callback(stack, callback_receiver, tmp_path):
    _, _, client, _ = stack
    marker = tmp_path / "ran"
    first = submit(client, "touch", [1], kwargs={"seconds": 0, "marker": str(marker)},
                   callback=callback_receiver.url)
    assert wait_for_job(client, first)["status"] == "succeeded"
    assert marker.exists()
    marker.unlink()
    again = rerun(client, first)
    assert wait_for_job(client, again)["status"] == "succeeded"
    assert marker.exists()  # the same kwargs: the marker's path
    assert not callback_receiver.wait_for_jobs({first, again}, timeout=30)
    payload = [c for c in callback_receiver.accepted() if c.json["job_id"] == again][0].json
    assert payload["status"] == "succeeded"


def test_a_cancelled_job_can_be_rerun_and_a_running_one_cannot(stack, tmp_path):
    _, _, client, _ = stack
    marker = tmp_path / "ran"
    job_id = submit(client, "touch", [1], kwargs={"seconds": 20, "marker": str(marker)})
    eventually(lambda: client.get(f"/jobs/{job_id}").get_json()["status"] in ("queued", "running"),
               what=f"job {job_id} to be known")
    early = client.post(f"/jobs/{job_id}/rerun")
    assert early.status_code == 409, early.get_json()
    assert early.get_json()["error"]["name"] == "JobNotFinished"
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    again = rerun(client, job_id)
    eventually(lambda: client.get(f"/jobs/{again}").get_json()["status"] == "running", interval=0.05,
               what=f"re-run {again} to run")
    record = client.delete(f"/jobs/{again}").get_json()
    assert record["status"] == "cancelled" and record["rerun_of"] == job_id


def test_an_unknown_job_is_a_404(stack):
    _, _, client, _ = stack
    unknown = client.post("/jobs/01a23680-4edc-7d2f-9aa7-064f96a1a969/rerun")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["name"] == "UnknownJob"
    assert client.post("/jobs/not-a-job/rerun").status_code == 404


def test_an_idempotency_key_gives_the_same_rerun(stack):
    _, _, client, _ = stack
    first = submit(client, "double", [1])
    assert wait_for_job(client, first)["status"] == "succeeded"
    key = {"Idempotency-Key": f"rerun-{time.time_ns()}"}
    one = rerun(client, first, key)
    assert rerun(client, first, key) == one
    other = submit(client, "double", [2])
    assert wait_for_job(client, other)["status"] == "succeeded"
    assert rerun(client, other, key) != one  # the key is per job re-run (per path)
    assert rerun(client, first) != one  # without a key: a new job each time
    listed = client.get("/jobs?limit=500").get_json()["jobs"]
    assert sum(1 for j in listed if j.get("rerun_of") == first) == 2


def test_a_job_whose_request_is_not_kept_is_a_410(stack):
    _, _, client, _ = stack
    job_id = submit(client, "double", [1])
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    # as when a record outlived its request (a job queued before re-runs existed)
    client.application.extensions["atoll.jobs"].store.backend.forget(f"{job_id}.request")
    gone = client.post(f"/jobs/{job_id}/rerun")
    assert gone.status_code == 410 and gone.get_json()["error"]["name"] == "RequestExpired"


def test_the_kept_request_is_written_again_when_the_job_finishes(stack):
    """The request expires result_expires after its last write, as the record: the worker writes it
    again with the finished record (here: removed while the job runs, it is back once it finished)."""
    _, _, client, _ = stack
    store = client.application.extensions["atoll.jobs"].store
    job_id = submit(client, "nap", [7], kwargs={"seconds": 1.5})
    eventually(lambda: client.get(f"/jobs/{job_id}").get_json()["status"] == "running", interval=0.05,
               what=f"job {job_id} to run")
    store.backend.forget(f"{job_id}.request")
    assert store.get_aside(job_id, "request") is None
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    assert store.get_aside(job_id, "request") is not None
    assert wait_for_job(client, rerun(client, job_id))["results"] == [7]
