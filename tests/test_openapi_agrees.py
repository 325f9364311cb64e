"""The OpenAPI document and the service agree on what they accept and answer: ``"callback": null`` is
valid for both; a job record with its callback state and a status-only /health fit their schemas
(checked with openapi-schema-validator, the validator behind openapi-spec-validator)."""

from __future__ import annotations

import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator, validate
from openapi_spec_validator import validate as validate_spec

from atoll import Atoll, Pipeline
from atoll.config import load_config
from atoll.service.jobs.delivery import record_callback
from atoll.service.jobs.model import CallbackState, ErrorBody, Job, JobStatus, Progress, new_job_id
from atoll.service.jobs.store import JobStore


@pytest.fixture
def service(tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state")))
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    return service


def spec_and_client(service, headers=None):
    client = service.create_app().test_client()
    spec = client.get("/openapi.json", headers=headers or {}).get_json()
    validate_spec(spec)
    return spec, client


def conforms(spec: dict, schema: dict, instance) -> None:
    """Validate ``instance`` against ``schema`` with the document's components for $ref."""
    validate(instance, {**schema, "components": spec["components"]}, cls=OAS31Validator)


def test_callback_null_is_valid_for_the_spec_and_the_service(service):
    spec, client = spec_and_client(service)
    body_schema = spec["paths"]["/pipelines/double"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    body = {"data": [1, 2], "callback": None}
    conforms(spec, body_schema, body)
    answer = client.post("/pipelines/double", json=body)
    assert answer.status_code == 200 and answer.get_json() == {"results": [2, 4]}
    conforms(spec, {"$ref": "#/components/schemas/Results"}, answer.get_json())
    with pytest.raises(ValidationError):  # what the service refuses, the spec refuses too
        conforms(spec, body_schema, {"data": [1], "callback": 42})
    assert client.post("/pipelines/double", json={"data": [1], "callback": 42}).status_code == 400


def test_a_job_record_with_its_callback_state_fits_the_job_schema(service):
    spec, client = spec_and_client(service)
    store = JobStore(service.celery)
    url = "https://example.org/hook"
    job = Job(new_job_id(), "double", callback=CallbackState(url), status_url="http://x/jobs/1")
    job.start()
    job.succeed([2])
    store.save(job)
    record_callback(store, job.job_id, CallbackState(url, "abandoned", 9, "answered 503"))
    answer = client.get(f"/jobs/{job.job_id}").get_json()
    assert answer["callback"] == {"url": url, "state": "abandoned", "attempts": 9,
                                  "last_error": "answered 503"}
    conforms(spec, {"$ref": "#/components/schemas/Job"}, answer)
    with pytest.raises(ValidationError):
        conforms(spec, {"$ref": "#/components/schemas/Job"}, {**answer, "callback": {"state": "lost"}})


@pytest.mark.parametrize("expose", [True, False])
def test_every_status_of_a_job_fits_the_schemas_generated_from_the_model(tmp_path, expose):
    """The Job, JobSummary, JobList and CallbackPayload components come from the dataclasses: every
    form the service answers validates, whatever the status, with or without tracebacks."""
    service = Atoll(load_config(state_dir=str(tmp_path / "state"), expose_tracebacks=expose))
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    spec, client = spec_and_client(service)
    store = JobStore(service.celery)
    jobs = []
    for status in JobStatus:
        job = Job(new_job_id(), "double", submitted_at="2026-12-02T10:00:00.000+00:00",
                  callback=CallbackState("https://example.org/hook"))
        if status is not JobStatus.QUEUED:
            job.start()
            job.progress = Progress(1, 4)
        if status is JobStatus.SUCCEEDED:
            job.succeed({"a": [1, 2]})
        elif status is JobStatus.FAILED:
            job.fail(ErrorBody.from_exception(ValueError("bad"), pipeline="double"))
        elif status is JobStatus.CANCELLED:
            job.cancel()
        elif status is JobStatus.RETRYING:  # an attempt failed; it waits for the next
            job.wait_retry(ErrorBody.from_exception(ConnectionError("refused"), pipeline="double"))
        store.save(job)
        jobs.append(job)
        answer = client.get(f"/jobs/{job.job_id}").get_json()
        assert answer["status"] == status.value
        conforms(spec, {"$ref": "#/components/schemas/Job"}, answer)
        conforms(spec, {"$ref": "#/components/schemas/CallbackPayload"}, job.callback_payload(expose))
    listing = client.get("/jobs").get_json()
    conforms(spec, {"$ref": "#/components/schemas/JobList"}, listing)
    assert [j["job_id"] for j in listing["jobs"]] == [j.job_id for j in reversed(jobs)]
    with pytest.raises(ValidationError):  # the generated schema is strict where the model is
        conforms(spec, {"$ref": "#/components/schemas/Job"}, {**listing["jobs"][0], "status": "lost"})


def test_a_status_only_health_fits_the_health_schema(tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state"), auth_tokens=["t"]))
    spec, client = spec_and_client(service, {"Authorization": "Bearer t"})
    anonymous = client.get("/health").get_json()
    assert set(anonymous) == {"status"}
    conforms(spec, {"$ref": "#/components/schemas/Health"}, anonymous)
