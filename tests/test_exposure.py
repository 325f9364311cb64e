"""What errors tell callers: ``expose_tracebacks``, server paths in tracebacks, the open /health, secrets
in reprs and config errors, and bodies holding a lone UTF-16 surrogate (through ``app.test_client()``
and the real file result backend; no worker needed)."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

from atoll import Atoll, Pipeline
from atoll.config import load_config, validate
from atoll.errors import ConfigError
from atoll.service.http.errors import shorten_paths

TOKEN = "tok-" + uuid.uuid4().hex
SECRET = "plain-secret-" + uuid.uuid4().hex


def _lookup(record: dict) -> str:
    return record["missing"]


def _blow_up_outside_stages(data):  # raised by the executor, not inside a stage
    raise RuntimeError("the executor broke")


def service_with(tmp_path, **overrides) -> Atoll:
    service = Atoll(load_config(state_dir=str(tmp_path / "state"), **overrides))
    service.register_pipeline("/lookup", Pipeline(name="lookup").map(_lookup))
    return service


def failing_call(tmp_path, **overrides) -> dict:
    client = service_with(tmp_path, **overrides).create_app().test_client()
    answer = client.post("/pipelines/lookup", json={"data": [{"password": "hunter2"}]})
    assert answer.status_code == 500
    return answer.get_json()["error"]


ABSOLUTE = re.compile(r'File "/')


def test_a_500_carries_a_traceback_without_server_paths_by_default(tmp_path):
    error = failing_call(tmp_path)
    assert error["name"] == "KeyError" and error["item"] == {"password": "hunter2"}
    assert "_lookup" in error["traceback"]
    assert not ABSOLUTE.search(error["traceback"]), error["traceback"]
    assert 'File "tests/test_exposure.py"' in error["traceback"]  # the user's module path stays
    assert 'File "atoll/' in error["traceback"]


def test_expose_tracebacks_false_keeps_name_stage_and_message_only(tmp_path):
    error = failing_call(tmp_path, expose_tracebacks=False)
    assert set(error) == {"name", "message", "stage"}
    assert error["name"] == "KeyError"
    assert error["stage"]["operator"] == "map" and error["stage"]["function"] == "_lookup"
    assert "'missing'" in error["message"] and "stage 0 map(_lookup)" in error["message"]
    assert "hunter2" not in json.dumps(error)


def test_expose_tracebacks_false_on_a_failure_outside_the_stages(tmp_path, monkeypatch):
    service = service_with(tmp_path, expose_tracebacks=False)
    monkeypatch.setattr(service, "run_pipeline", lambda *args, **_: _blow_up_outside_stages(args))
    answer = service.create_app().test_client().post("/pipelines/lookup", json={"data": [1]})
    assert answer.status_code == 500
    error = answer.get_json()["error"]
    assert error["name"] == "RuntimeError" and "the executor broke" in error["message"]
    assert "traceback" not in error and "item" not in error


def test_a_failed_job_record_follows_expose_tracebacks_when_read(tmp_path):
    # a record as a worker with expose_tracebacks: true stored it, in the real file result backend
    service = service_with(tmp_path, expose_tracebacks=False)
    job_id = str(uuid.uuid4())
    tb = 'Traceback (most recent call last):\n  File "/srv/secret/place/pipes.py", line 3\nKeyError\n'
    record = {"job_id": job_id, "pipeline": "lookup", "status": "failed", "results": None,
              "error": {"name": "KeyError", "message": "m", "traceback": tb, "stage": None,
                        "item": {"password": "hunter2"}}}
    service.celery.backend.store_result(job_id, record, "SUCCESS")
    client = service.create_app().test_client()
    error = client.get(f"/jobs/{job_id}").get_json()["error"]
    assert set(error) == {"name", "message", "stage"}
    shown = service_with(tmp_path / "open").create_app()  # the same record, tracebacks exposed
    shown.extensions["atoll"].celery.backend.store_result(job_id, record, "SUCCESS")
    error = shown.test_client().get(f"/jobs/{job_id}").get_json()["error"]
    assert 'File "pipes.py"' in error["traceback"] and "/srv/secret" not in error["traceback"]


@pytest.mark.parametrize("path, short", [
    ("/usr/lib/python3.11/site-packages/celery/app/trace.py", "celery/app/trace.py"),
    ("/opt/app/.venv/lib/python3.12/dist-packages/atoll/operators.py", "atoll/operators.py"),
    ("/nowhere/known/stages.py", "stages.py"),
    ("<dynamic-code>", "<dynamic-code>"),
    ("relative/mod.py", "relative/mod.py"),
])
def test_shorten_paths(path, short):
    assert shorten_paths(f'  File "{path}", line 1, in f\n') == f'  File "{short}", line 1, in f\n'


def test_shorten_paths_uses_the_import_root(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    assert shorten_paths(f'File "{tmp_path}/mypkg/stages.py"') == 'File "mypkg/stages.py"'


# -- /health ------------------------------------------------------------------------------------


def test_open_health_tells_only_the_status_when_tokens_are_configured(tmp_path):
    client = service_with(tmp_path, auth_tokens=[TOKEN]).create_app().test_client()
    anonymous = client.get("/health")
    assert anonymous.get_json() == {"status": anonymous.get_json()["status"]}
    assert anonymous.get_json()["status"] in ("ok", "degraded", "down")
    wrong = client.get("/health", headers={"Authorization": "Bearer nope"})
    assert set(wrong.get_json()) == {"status"}
    full = client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert full.status_code == anonymous.status_code
    assert {"broker", "workers", "service"} <= set(full.get_json()["checks"])


def test_health_without_tokens_stays_detailed(tmp_path):
    body = service_with(tmp_path).create_app().test_client().get("/health").get_json()
    assert "checks" in body and "version" in body


# -- secrets ------------------------------------------------------------------------------------


def test_config_repr_hides_tokens_secret_and_url_passwords():
    config = load_config(auth_tokens=[TOKEN], callback_secret=SECRET,
                         worker_broker="amqp://atoll:brokerpw@rabbit:5672//",
                         worker_backend="redis://:redispw@cache:6379/0")
    text = repr(config)
    for secret in (TOKEN, SECRET, "brokerpw", "redispw"):
        assert secret not in text
    assert "'auth_tokens': ['***']" in text and "'callback_secret': '***'" in text
    assert "amqp://atoll:***@rabbit:5672//" in text
    assert config.callback_secret == SECRET  # only the repr hides it


@pytest.mark.parametrize("name, value", [
    ("auth_tokens", TOKEN),               # a string where a list is expected
    ("auth_tokens", [TOKEN, 7]),
    ("callback_secret", [SECRET]),
    ("callback_secret", "whsec_" + SECRET),  # not base64
])
def test_config_errors_do_not_print_secrets(name, value):
    with pytest.raises(ConfigError) as caught:
        validate(name, value, "conf.yaml")
    assert name in str(caught.value) and SECRET not in str(caught.value) and TOKEN not in str(caught.value)


def test_config_errors_from_a_file_do_not_print_secrets(tmp_path):
    path = tmp_path / "atoll.yaml"
    path.write_text(f"auth_tokens: {TOKEN}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "auth_tokens" in str(caught.value) and TOKEN not in str(caught.value)


def test_serving_logs_no_secret(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    service = service_with(tmp_path, auth_tokens=[TOKEN], callback_secret=SECRET,
                           worker_broker="amqp://atoll:brokerpw@127.0.0.1:1//")
    client = service.create_app().test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    client.post("/pipelines/lookup", json={"data": [{}]}, headers=headers)
    refused = client.post("/pipelines/lookup", json={"data": [{}], "async": True}, headers=headers)
    assert refused.status_code == 503  # nothing listens on port 1
    client.get("/health", headers=headers)
    logged = caplog.text + refused.get_data(as_text=True)
    for secret in (TOKEN, SECRET, "brokerpw"):
        assert secret not in logged


# -- lone surrogates ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    '{"data": ["\\ud800"]}',
    '{"data": ["ok"], "async": true, "kwargs": {"\\udfff": 1}}',
    '{"data": [[["a\\uDBFFb"]]], "async": true}',
])
def test_a_lone_surrogate_is_refused_at_submit(tmp_path, body):
    client = service_with(tmp_path).create_app().test_client()
    answer = client.post("/pipelines/lookup", data=body, content_type="application/json")
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["name"] == "InvalidJSON" and "lone UTF-16 surrogate" in error["message"]
    assert "body." in error["message"]


@pytest.mark.parametrize("raw", [
    b'{"data": ["a\xed\xa0\x80b"]}',  # UTF-8's bytes for U+D800 (ill-formed UTF-8)
    '{"data": ["x"], "kwargs": {"k": "\ud800"}}'.encode("utf-16-le", "surrogatepass"),  # unpaired unit
])
def test_a_lone_surrogate_in_the_bodys_own_bytes_is_refused(tmp_path, raw):
    """Not only escapes: the body's bytes themselves may carry a lone surrogate (JSON bytes are decoded
    as json.loads does, with "surrogatepass")."""
    client = service_with(tmp_path).create_app().test_client()
    answer = client.post("/pipelines/lookup", data=raw, content_type="application/json")
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["name"] == "InvalidJSON" and "lone UTF-16 surrogate" in error["message"]


def test_a_surrogate_pair_and_an_escaped_backslash_are_accepted(tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state")))
    service.register_pipeline("/echo", Pipeline(name="echo").map(lambda s: s))
    client = service.create_app().test_client()
    body = '{"data": ["\\ud83d\\ude00", "\\\\ud800"]}'
    answer = client.post("/pipelines/echo", data=body, content_type="application/json")
    assert answer.status_code == 200 and answer.get_json() == {"results": ["\U0001F600", "\\ud800"]}


def test_every_stored_record_stays_readable(tmp_path):
    # a pipeline may produce a lone surrogate itself (chr(0xD800)); its record must still be served
    service = service_with(tmp_path)
    job_id = str(uuid.uuid4())
    record = {"job_id": job_id, "pipeline": "lookup", "status": "succeeded", "results": ["a", chr(0xD800)],
              "error": None}
    service.celery.backend.store_result(job_id, record, "SUCCESS")
    answer = service.create_app().test_client().get(f"/jobs/{job_id}")
    assert answer.status_code == 200
    assert json.loads(answer.get_data().decode("utf-8"))["results"] == ["a", chr(0xD800)]


def test_sync_results_holding_a_lone_surrogate_are_served(tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state")))
    service.register_pipeline("/make", Pipeline(name="make").map(lambda n: chr(n)))
    answer = service.create_app().test_client().post("/pipelines/make", json={"data": [0xD800, 0xE9]})
    assert answer.status_code == 200
    assert json.loads(answer.get_data().decode("utf-8")) == {"results": [chr(0xD800), "é"]}


def test_expose_tracebacks_false_hides_the_item_of_a_refused_input(tmp_path):
    service = Atoll(load_config(state_dir=str(tmp_path / "state"), expose_tracebacks=False))
    service.register_pipeline("/count", Pipeline(name="count").reduceByKey(lambda a, b: a + b))
    answer = service.create_app().test_client().post("/pipelines/count",
                                                     json={"data": [["k", 1], "hunter2"]})
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert "hunter2" not in json.dumps(error) and "item" not in error and "traceback" not in error
    assert "needs (key, value) pairs" in error["message"] and "(item hidden)" in error["message"]
