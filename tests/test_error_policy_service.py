"""The per-element error policy over HTTP, end to end: ``on_error`` and ``max_errors`` registered with a
pipeline and given per call, sync answers carrying what was dropped, jobs on a real worker and broker (the
embedded one and RabbitMQ) with ``element_errors`` in the record and the callback, ``GET /jobs/<id>/errors``,
the metric, a re-run keeping the policy, and bad values refused with the field named."""

from __future__ import annotations

import json

import pytest

from tests.async_service import build_service
from tests.support import running_stack, wait_for_job

pytestmark = pytest.mark.slow

COMMENTS = [{"text": "a" * (i % 7 + 1)} for i in range(1000)]
COMMENTS[417] = {"user": "x"}  # one comment of a thousand has no text


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def stack(request, tmp_path_factory):
    """(config, test client) on one broker, with one worker process for the module."""
    with running_stack(request, tmp_path_factory, "dirty") as (config, _):
        yield config, build_service(config).create_app().test_client()


def submit(client, name, data, **body):
    response = client.post(f"/pipelines/{name}", json={"data": data, **body})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def letters(client, job_id) -> list[dict]:
    response = client.get(f"/jobs/{job_id}/errors")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def test_a_job_keeps_going_past_a_bad_comment_and_reports_it(stack, callback_receiver):
    _, client = stack
    job_id = submit(client, "comments", COMMENTS, callback=callback_receiver.url)
    record = wait_for_job(client, job_id)
    assert record["status"] == "succeeded", record
    expected = [len(c["text"]) for c in COMMENTS if "text" in c]
    assert record["results"] == expected and len(expected) == 999
    errors = record["element_errors"]
    assert errors["skipped"] == 1 and errors["by_stage"] == {"0": 1}
    [sample] = errors["sample"]
    assert sample["element"] == {"user": "x"} and sample["error"] == "KeyError"
    assert sample["stage"] == {"index": 0, "operator": "map", "function": "_text_length", "path": "0"}
    assert "in _text_length" in sample["traceback"]
    assert letters(client, job_id) == [sample]
    # the callback carries the counts, not the dead letters
    assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    payload = [c for c in callback_receiver.accepted() if c.json["job_id"] == job_id][0].json
    assert payload["element_errors"] == {"skipped": 1, "by_stage": {"0": 1}}


def test_a_call_overrides_the_registered_policy(stack):
    _, client = stack
    failed = submit(client, "comments", COMMENTS[410:420], on_error="fail", **{"async": True})
    record = wait_for_job(client, failed)
    assert record["status"] == "failed" and record["error"]["name"] == "KeyError"
    assert record["element_errors"] is None and letters(client, failed) == []
    skipped = submit(client, "divide", [1, 0, 2, 0], on_error="skip", **{"async": True})
    record = wait_for_job(client, skipped)
    assert record["status"] == "succeeded" and record["results"] == [60, 30]
    assert record["element_errors"] == {"skipped": 2, "by_stage": {"0": 2}, "sample": []}
    assert letters(client, skipped) == []


def test_too_many_failures_fail_the_job_and_keep_the_dead_letters(stack):
    _, client = stack
    broken = [{"user": str(i)} for i in range(6)] + [{"text": "ok"}] * 4
    job_id = submit(client, "comments", broken, **{"async": True})
    record = wait_for_job(client, job_id)
    assert record["status"] == "failed" and record["error"]["name"] == "TooManyErrors", record
    assert "max_errors=0.5" in record["error"]["message"]
    assert record["element_errors"]["skipped"] == 6
    assert [letter["element"] for letter in letters(client, job_id)] == broken[:6]


def test_a_rerun_runs_with_the_same_policy(stack):
    _, client = stack
    first = submit(client, "divide", [0, 3], on_error="collect", **{"async": True})
    assert wait_for_job(client, first)["element_errors"]["skipped"] == 1
    again = client.post(f"/jobs/{first}/rerun").get_json()["job_id"]
    record = wait_for_job(client, again)
    assert record["status"] == "succeeded" and record["results"] == [20]
    assert record["element_errors"]["skipped"] == 1 and len(letters(client, again)) == 1


def test_a_sync_call_answers_the_results_with_what_it_dropped(stack):
    _, client = stack
    response = client.post("/pipelines/divide", json={"data": [1, 0, 2], "on_error": "collect"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["results"] == [60, 30]
    assert body["element_errors"]["skipped"] == 1 and body["element_errors"]["by_stage"] == {"0": 1}
    [letter] = body["element_errors"]["dead_letters"]
    assert letter["element"] == 0 and letter["error"] == "ZeroDivisionError"
    # the registered policy applies to a sync call too; without any, the answer is as it always was
    body = client.post("/pipelines/comments", json={"data": COMMENTS[415:420]}).get_json()
    assert body["results"] == [3, 4, 6, 7] and body["element_errors"]["skipped"] == 1
    assert client.post("/pipelines/double", json={"data": [1]}).get_json() == {"results": [2]}
    # past max_errors: 422 naming the error
    response = client.post("/pipelines/divide", json={"data": [0, 0, 1], "on_error": "skip", "max_errors": 1})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["name"] == "TooManyErrors"
    # the metric counts the dropped elements per pipeline and stage
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'atoll_elements_failed_total{pipeline="divide",stage="0"}' in metrics


@pytest.mark.parametrize("body, field", [
    ({"on_error": "ignore"}, "on_error"),
    ({"on_error": 1}, "on_error"),
    ({"max_errors": -1}, "max_errors"),
    ({"max_errors": 1.5}, "max_errors"),
    ({"max_errors": "10"}, "max_errors"),
    ({"max_errors": True}, "max_errors"),
])
def test_a_bad_policy_is_refused_naming_the_field(stack, body, field):
    _, client = stack
    response = client.post("/pipelines/divide", json={"data": [1], **body})
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["name"] == "InvalidRequest" and error["field"] == field and field in error["message"]


def test_the_pipeline_listing_shows_the_registered_policy(stack):
    _, client = stack
    listed = {p["name"]: p for p in client.get("/pipelines").get_json()["pipelines"]}
    assert listed["comments"]["on_error"] == {"on_error": "collect", "max_errors": 0.5}
    assert listed["double"]["on_error"] is None

