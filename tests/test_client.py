"""atoll.Client against a real ``atoll serve`` on a loopback port: results, kwargs, RemoteError fields."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import requests

from atoll import Client, RemoteError
from tests.served import free_port, serving


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    open_conf = folder / "open.yaml"
    open_conf.write_text(f"state_dir: {folder / 'state'}\nembedded_worker: false\n")
    secured_conf = folder / "secured.yaml"
    secured_conf.write_text(f"state_dir: {folder / 'state2'}\nembedded_worker: false\n"
                            f"auth_tokens: [client-token]\n")
    with serving("served:service", conf=str(open_conf), workers=1) as plain, \
            serving("served:service", conf=str(secured_conf), workers=1) as secured:
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
