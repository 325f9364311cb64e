"""The service over a real socket: ``atoll serve`` (gunicorn, 2 gthread workers) on a loopback port,
called with plain HTTP — sync round trip, every error, kwargs, auth and encoding."""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import serve, write_config


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("served"), embedded_worker=False, max_request_bytes=4096)


@pytest.fixture(scope="module")
def url(conf):
    with serve("served:service", conf) as (base, _):
        yield base


@pytest.fixture(scope="module")
def secured_url(tmp_path_factory):
    path = write_config(tmp_path_factory.mktemp("secured"), embedded_worker=False, auth_tokens=["tok-1"])
    with serve("served:service", path, workers=1) as (base, _):
        yield base


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["error"]


def test_sync_round_trip(url):
    response = requests.post(f"{url}/pipelines/double", json={"data": [1, 2, 3]}, timeout=10)
    assert response.status_code == 200 and response.json() == {"results": [2, 4, 6]}


def test_many_concurrent_calls_all_answer(url):
    def call(i):
        return requests.post(f"{url}/pipelines/scaled", json={"data": [i], "kwargs": {"factor": 3}},
                             timeout=30).json()["results"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(200))) == [[3 * i] for i in range(200)]


def test_kwargs_and_local_executor(url):
    response = requests.post(f"{url}/pipelines/wordcount_local", json={"data": ["a b a"]}, timeout=60)
    assert dict(map(tuple, response.json()["results"])) == {"a": 2, "b": 1}
    error = error_of(requests.post(f"{url}/pipelines/scaled", json={"data": [1]}, timeout=10), 400)
    assert error["name"] == "InvalidKwargs" and "factor" in error["message"]


def test_encoding(url):
    results = requests.post(f"{url}/pipelines/odd", json={"data": 0}, timeout=10).json()["results"]
    assert results["array"] == [[0, 1, 2], [3, 4, 5]] and results["datetime"] == "2024-02-29T12:30:00+00:00"
    assert results["nan"] is None and results["set"] == [1, 2, 3] and results["decimal"] == "1.10"


@pytest.mark.parametrize("method, path, body, headers, status, name", [
    ("POST", "/pipelines/double", b"{bad", {"Content-Type": "application/json"}, 400, "InvalidJSON"),
    ("POST", "/pipelines/double", b'{"x": 1}', {"Content-Type": "application/json"}, 400, "InvalidRequest"),
    ("POST", "/pipelines/double", b'{"kwargs": {}}', {"Content-Type": "application/json"}, 400,
     "MissingData"),
    ("POST", "/pipelines/double", b'{"data": 1}', {"Content-Type": "text/plain"}, 415,
     "UnsupportedMediaType"),
    ("POST", "/pipelines/double", b'{"data": "' + b"x" * 5000 + b'"}',
     {"Content-Type": "application/json"}, 413, "RequestTooLarge"),
    ("POST", "/pipelines/nope", b'{"data": 1}', {"Content-Type": "application/json"}, 404,
     "PipelineNotFound"),
    ("GET", "/pipelines/double", None, {}, 405, "MethodNotAllowed"),
    ("GET", "/nowhere", None, {}, 404, "NotFound"),
    ("POST", "/pipelines/double", b'{"data": 1}', {"Content-Type": "application/json"}, 422,
     "PipelineError"),
    ("POST", "/pipelines/lookup", b'{"data": ["a", "q"]}', {"Content-Type": "application/json"}, 500,
     "KeyError"),
    ("POST", "/pipelines/opaque", b'{"data": [3]}', {"Content-Type": "application/json"}, 500,
     "EncodingError"),
])
def test_errors_are_json_with_the_right_status(url, method, path, body, headers, status, name):
    response = requests.request(method, url + path, data=body, headers=headers, timeout=10)
    assert error_of(response, status)["name"] == name
    assert requests.get(f"{url}/health", timeout=10).status_code in (200, 503)  # still serving


def test_stage_failure_carries_stage_item_and_traceback(url):
    response = requests.post(f"{url}/pipelines/lookup", json={"data": ["a", "q"]}, timeout=10)
    error = error_of(response, 500)
    assert error["stage"]["function"] == "lookup" and error["item"] == "q"
    assert "KeyError: 'q'" in error["traceback"]


def test_oversize_chunked_body_is_413(url):
    def chunks():
        yield b'{"data": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = requests.post(f"{url}/pipelines/echo", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert error_of(response, 413)["name"] == "RequestTooLarge"


def test_a_truncated_body_does_not_hurt_the_server(url):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/pipelines/double")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "100")
    conn.endheaders()
    conn.send(b'{"data": [1')
    conn.close()
    assert requests.post(f"{url}/pipelines/double", json={"data": [4]}, timeout=10).json() == {"results": [8]}


def test_auth_over_the_socket(secured_url):
    body = {"data": [1]}
    assert error_of(requests.post(f"{secured_url}/pipelines/double", json=body, timeout=10),
                    401)["name"] == "Unauthorized"
    wrong = {"Authorization": "Bearer tok-2"}
    assert requests.post(f"{secured_url}/pipelines/double", json=body, headers=wrong,
                         timeout=10).status_code == 401
    right = {"Authorization": "Bearer tok-1"}
    assert requests.post(f"{secured_url}/pipelines/double", json=body, headers=right,
                         timeout=10).json() == {"results": [2]}
    assert requests.get(f"{secured_url}/health", timeout=10).status_code in (200, 503)
    assert "error" not in requests.get(f"{secured_url}/health", timeout=10).json()


def test_pipelines_and_openapi_over_the_socket(url):
    names = {p["name"] for p in requests.get(f"{url}/pipelines", timeout=10).json()["pipelines"]}
    assert {"double", "scaled", "lookup"} <= names
    spec = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert json.dumps(spec) and "/pipelines/scaled" in spec["paths"]
