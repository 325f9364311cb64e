"""GET /openapi.json: a valid OpenAPI 3.1 document (checked by openapi-spec-validator) that lists every
registered pipeline with its runtime kwargs; and a schemathesis fuzz of the served service against it."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from atoll import Atoll, Pipeline
from atoll.config import load_config
from tests.served import build_service
from tests.support import serve, write_config


def spec_of(service):
    response = service.create_app().test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture(scope="module")
def spec():
    return spec_of(build_service(load_config()))


def test_the_document_is_valid_openapi_31(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_the_validator_would_catch_a_broken_document(spec):
    broken = {**spec, "paths": {"/x": {"get": {"responses": {"200": {"content": "nope"}}}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_registered_pipeline_is_a_path_with_its_kwargs(spec):
    service = build_service(load_config())
    for name, registered in service.pipelines.items():
        operation = spec["paths"][f"/pipelines/{name}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        kwargs = body["properties"]["kwargs"]
        assert sorted(kwargs["properties"]) == sorted(registered.pipeline.expected_kwargs)
        assert kwargs["additionalProperties"] is False
        if registered.pipeline.expected_kwargs:
            assert "kwargs" in body["required"] and kwargs["required"] == ["factor"]
        assert {"data", "callback", "async"} <= set(body["properties"])
        assert {"200", "202", "400", "413", "415", "422", "500"} <= set(operation["responses"])
        assert "callbacks" in operation


def test_the_whole_api_is_described(spec):
    assert {"/pipelines", "/jobs/{job_id}", "/health", "/openapi.json"} <= set(spec["paths"])
    job = spec["components"]["schemas"]["Job"]
    assert job["properties"]["status"]["enum"] == ["queued", "running", "retrying", "succeeded", "failed",
                                                        "cancelled"]
    assert spec["paths"]["/health"]["get"]["responses"]["503"]
    assert "security" not in spec  # no tokens configured


def test_every_route_of_the_app_is_a_path_of_the_spec(spec):
    app = build_service(load_config()).create_app()
    routes = {re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
              if rule.endpoint != "static"}
    routes.discard("/pipelines/{name}")  # described once per registered pipeline
    assert routes <= set(spec["paths"]), routes - set(spec["paths"])


def test_auth_is_described_when_configured():
    service = Atoll(load_config(auth_tokens=["t"]))
    service.register_pipeline("/p", Pipeline().map(abs))
    response = service.create_app().test_client().get(
        "/openapi.json", headers={"Authorization": "Bearer t"})
    spec = response.get_json()
    validate(spec)
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/health"]["get"]["security"] == []


def test_the_example_service_is_described():
    from examples.comments import service

    spec = spec_of(service)
    validate(spec)
    top = spec["paths"]["/pipelines/top_words"]["post"]["requestBody"]["content"]["application/json"]
    assert sorted(top["schema"]["properties"]["kwargs"]["required"]) == ["min_length", "n"]


# -- fuzz -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_url(tmp_path_factory):
    conf = write_config(tmp_path_factory.mktemp("fuzz"), embedded_worker=False, max_request_bytes=65536)
    with serve("served:service", conf, workers=1) as (url, _):
        yield url


#: a 5xx the API documents: a failing stage (500 with its stage) or results that are not JSON
DOCUMENTED_5XX = {"EncodingError"}


def check_response(case, response):
    """Fail unless the answer matches the schema and a 5xx is a documented pipeline failure."""
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance])
    if response.status_code == 503 and case.operation.label in ("GET /health", "GET /readyz"):
        return  # a report of what is down (its schema was checked above), not an error answer
    if response.status_code >= 500:
        error = response.json()["error"]
        documented = (response.status_code == 500 and error.get("stage") is not None) or \
            error["name"] in DOCUMENTED_5XX
        assert documented, f"undocumented server error: {response.status_code} {error}"


def test_fuzz_against_the_served_schema(served_url):
    # schemathesis' pytest loader does not run under pytest 9 (it sets a removed node attribute), so
    # each operation's hypothesis strategy is driven here directly: bounded examples per operation.
    schema = schemathesis.openapi.from_url(f"{served_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"POST /pipelines/scaled", "GET /jobs/{job_id}", "GET /health", "GET /pipelines"} <= labels
    seen = []

    def fuzz(operation):
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def run(case):
            response = case.call(base_url=served_url, timeout=30)
            seen.append((operation.label, response.status_code))
            check_response(case, response)

        run()

    for operation in operations:
        fuzz(operation)
    statuses = {status for _, status in seen}
    assert 200 in statuses and statuses & {400, 422}, statuses  # valid and refused bodies both tried
