"""The OpenAPI document and the service agree on what they accept and answer: ``"callback": null`` is
valid for both; a job record with its callback state and a status-only /health fit their schemas
(checked with openapi-schema-validator, the validator behind openapi-spec-validator)."""

from __future__ import annotations

import uuid

import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator, validate
from openapi_spec_validator import validate as validate_spec

from atoll import Atoll, Pipeline
from atoll.config import load_config
from atoll.service import tasks
from atoll.service.callbacks import callback_state, record_callback


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
    backend = tasks.get_celery(service).backend
    job_id = str(uuid.uuid4())
    url = "https://example.org/hook"
    record = {"job_id": job_id, "pipeline": "double", "status": "succeeded", "results": [2],
              "error": None, "submitted_at": tasks.now(), "started_at": tasks.now(),
              "finished_at": tasks.now(), "callback": callback_state(url)}
    backend.store_result(job_id, record, "SUCCESS")
    record_callback(backend, job_id, callback_state(url, "abandoned", 9, "answered 503"))
    answer = client.get(f"/jobs/{job_id}").get_json()
    assert answer["callback"] == {"url": url, "state": "abandoned", "attempts": 9,
                                  "last_error": "answered 503"}
    conforms(spec, {"$ref": "#/components/schemas/Job"}, answer)
    with pytest.raises(ValidationError):
        conforms(spec, {"$ref": "#/components/schemas/Job"}, {**answer, "callback": {"state": "lost"}})


def test_a_status_only_health_fits_the_health_schema(tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state"), auth_tokens=["t"]))
    spec, client = spec_and_client(service, {"Authorization": "Bearer t"})
    anonymous = client.get("/health").get_json()
    assert set(anonymous) == {"status"}
    conforms(spec, {"$ref": "#/components/schemas/Health"}, anonymous)
