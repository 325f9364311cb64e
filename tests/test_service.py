"""The service through Flask's test client: registry, sync round trip, kwargs, every error, encoding,
auth and health."""

from __future__ import annotations

import pytest

import atoll
from atoll import Atoll, ConfigError, Pipeline, PipelineError, SerialExecutor
from atoll.config import load_config
from atoll.executors import LocalExecutor
from atoll.parallelism import usable_cores
from atoll.service import RegistrationError, UnknownPipeline
from atoll.service.encoding import EncodingError, jsonable, to_json
from tests.served import build_service


@pytest.fixture(scope="module")
def client():
    return build_service(load_config()).create_app().test_client()


def post(client, name, body, **kw):
    return client.post(f"/pipelines/{name}", json=body, **kw)


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert isinstance(error["name"], str) and isinstance(error["message"], str)
    return error


# -- registry -------------------------------------------------------------------------------------


def test_register_takes_an_endpoint_and_names_the_pipeline_without_slashes():
    service = Atoll(load_config())
    service.register_pipeline("/wordcount", Pipeline().map(str.upper))
    service.register_pipeline("plain", Pipeline())
    assert sorted(service.pipelines) == ["plain", "wordcount"]
    assert service.pipelines["wordcount"].endpoint == "/pipelines/wordcount"
    assert isinstance(service.pipelines["wordcount"].executor(), SerialExecutor)


@pytest.mark.parametrize("endpoint", ["/", "/a/b", "a b", "", "/x?y"])
def test_bad_endpoints_are_refused(endpoint):
    with pytest.raises(RegistrationError, match="one path segment"):
        Atoll(load_config()).register_pipeline(endpoint, Pipeline())


def test_duplicates_and_late_registration_are_errors():
    service = Atoll(load_config())
    service.register_pipeline("/a", Pipeline())
    with pytest.raises(RegistrationError, match="already registered as 'a'"):
        service.register_pipeline("a/", Pipeline())
    service.create_app()
    with pytest.raises(RegistrationError, match="before create_app"):
        service.register_pipeline("/b", Pipeline())


def test_registering_something_else_than_a_pipeline_is_an_error():
    with pytest.raises(RegistrationError, match="expected an atoll Pipeline, got function"):
        Atoll(load_config()).register_pipeline("/f", lambda x: x)


def test_execution_options_choose_the_executor():
    service = Atoll(load_config(default_executor="local", n_jobs=3))
    service.register_pipeline("/default", Pipeline())
    service.register_pipeline("/two", Pipeline(), n_jobs=2)
    service.register_pipeline("/one", Pipeline(), n_jobs=1)
    mine = SerialExecutor()
    service.register_pipeline("/mine", Pipeline(), executor=mine)
    service.register_pipeline("/named", Pipeline(), executor="serial")
    service.register_pipeline("/spark", Pipeline(), distributed=True)
    default = service.pipelines["default"].executor()
    assert isinstance(default, LocalExecutor) and default is service.pipelines["default"].executor()
    assert isinstance(service.pipelines["two"].executor(), LocalExecutor)
    assert isinstance(service.pipelines["one"].executor(), SerialExecutor)
    assert service.pipelines["mine"].executor() is mine
    assert isinstance(service.pipelines["named"].executor(), SerialExecutor)
    assert service.pipelines["spark"].describe()["executor"] == "spark"  # built on first use only


@pytest.mark.parametrize("options, match", [
    ({"n_jobs": 2, "distributed": True}, "only one of"),
    ({"executor": "dask"}, "serial, local, spark; got 'dask'"),
    ({"n_jobs": 0}, "non-zero integer"),
])
def test_bad_execution_options(options, match):
    with pytest.raises(RegistrationError, match=match):
        Atoll(load_config()).register_pipeline("/p", Pipeline(), **options)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_one_n_jobs_rule_in_the_dsl_the_registry_and_the_config(n_jobs):
    messages = []
    with pytest.raises(PipelineError) as caught:
        Pipeline().map(abs)([1], n_jobs=n_jobs)
    messages.append(str(caught.value))
    with pytest.raises(RegistrationError) as caught:
        Atoll(load_config()).register_pipeline("/p", Pipeline(), n_jobs=n_jobs)
    messages.append(str(caught.value))
    with pytest.raises(ConfigError) as caught:
        load_config(n_jobs=n_jobs)
    messages.append(str(caught.value))
    assert all("n_jobs" in message and "integer" in message for message in messages), messages
    if type(n_jobs) is int:  # the config's type check names other types before the rule runs
        rule = "must be a non-zero integer: positive for that many processes, negative to count back"
        assert all(rule in message for message in messages), messages


def test_negative_n_jobs_count_back_from_the_cores_at_registration_and_in_config():
    # joblib's convention: -2 is all cores but one, and never fewer than one process
    service = Atoll(load_config(default_executor="local", n_jobs=-2))
    service.register_pipeline("/by_config", Pipeline().map(abs))
    service.register_pipeline("/far_below", Pipeline().map(abs), n_jobs=-1000)
    assert service.run_pipeline("far_below", [-1, 2], {}) == [1, 2]
    assert service.pipelines["far_below"].executor().n_jobs == 1
    assert service.run_pipeline("by_config", [-3], {}) == [3]
    assert service.pipelines["by_config"].executor().n_jobs == max(1, usable_cores() - 1)


def test_run_pipeline_is_the_path_workers_use():
    service = build_service(load_config())
    assert service.run_pipeline("scaled", [1, 2], {"factor": 3}) == [3, 6]
    with pytest.raises(UnknownPipeline, match="no pipeline named 'nope'; registered: double"):
        service.run_pipeline("nope", [], {})
    with pytest.raises(KeyError):  # also a KeyError for callers that expect one
        service.run_pipeline("nope", [], {})


# -- the sync path --------------------------------------------------------------------------------


def test_sync_round_trip(client):
    response = post(client, "double", {"data": [1, 2, 3]})
    assert response.status_code == 200
    assert response.get_json() == {"results": [2, 4, 6]}


def test_json_suffixed_content_types_are_json(client):
    response = client.post("/pipelines/double", data='{"data": [5]}',
                           content_type="application/vnd.api+json; charset=utf-8")
    assert response.get_json() == {"results": [10]}


def test_a_pipeline_with_n_jobs_runs_inside_the_request(client):
    response = post(client, "wordcount_local", {"data": ["a b a", "b c"]})
    assert dict(map(tuple, response.get_json()["results"])) == {"a": 2, "b": 2, "c": 1}


def test_list_pipelines(client):
    listed = {p["name"]: p for p in client.get("/pipelines").get_json()["pipelines"]}
    assert listed["scaled"]["kwargs"] == ["factor"]
    assert listed["scaled"]["endpoint"] == "/pipelines/scaled"
    assert listed["scaled"]["stages"] == ["map(scale, factor=<runtime>)"]
    assert len(listed["scaled"]["sig"]) == 32
    assert listed["wordcount_local"]["executor"] == "local(n_jobs=2)"


@pytest.mark.parametrize("kwargs, expected", [
    ({"factor": 2}, [2, 4]),
    ({"factor": 0.5}, [0.5, 1.0]),
    ({"factor": [0]}, [[0], [0, 0]]),  # any JSON value goes through as it is
])
def test_runtime_kwargs(client, kwargs, expected):
    assert post(client, "scaled", {"data": [1, 2], "kwargs": kwargs}).get_json()["results"] == expected


def test_a_sync_call_checks_its_kwargs_once_and_a_python_call_still_checks_them(client, monkeypatch):
    from atoll import Pipeline, SerialExecutor
    from atoll.errors import PipelineError

    checks = []
    check = Pipeline.check_kwargs
    monkeypatch.setattr(Pipeline, "check_kwargs",
                        lambda self, kwargs: checks.append(kwargs) or check(self, kwargs))
    assert post(client, "scaled", {"data": [1], "kwargs": {"factor": 3}}).get_json() == {"results": [3]}
    assert checks == [{"factor": 3}]  # by the run request, at the edge; the executor trusts it
    with pytest.raises(PipelineError, match="missing runtime kwargs"):
        SerialExecutor().run(Pipeline().map(lambda x, factor: x * factor, kwargs=["factor"]), [1])


def test_null_kwargs_mean_none(client):
    assert post(client, "double", {"data": [1], "kwargs": None}).get_json() == {"results": [2]}


def test_data_may_be_any_json_value(client):
    for data in (None, 0, "text", {"a": [1, {"b": None}]}, [], True):
        assert post(client, "echo", {"data": data}).get_json() == {"results": data}


# -- request errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({}, ["missing runtime kwargs ['factor']", "map(scale, factor=<runtime>)"]),
    ({"factor": 2, "scale": 3}, ["unknown runtime kwargs ['scale']", "it takes: factor"]),
])
def test_wrong_kwargs_are_400(client, kwargs, words):
    error = error_of(post(client, "scaled", {"data": [1], "kwargs": kwargs}), 400)
    assert error["name"] == "InvalidKwargs" and error["expected"] == ["factor"]
    for word in words:
        assert word in error["message"]


@pytest.mark.parametrize("kwargs", [[1], "factor=2", 3])
def test_kwargs_must_be_an_object(client, kwargs):
    error = error_of(post(client, "scaled", {"data": [1], "kwargs": kwargs}), 400)
    assert error["name"] == "InvalidKwargs" and "JSON object" in error["message"]


@pytest.mark.parametrize("raw, name, words", [
    ("{bad", "InvalidJSON", ["not valid JSON", "line 1 column 2"]),
    ("", "InvalidJSON", ["empty"]),
    ('{"data": NaN}', "InvalidJSON", ["NaN is not valid JSON"]),
    ('{"data": Infinity}', "InvalidJSON", ["Infinity"]),
    ("[1, 2]", "InvalidRequest", ["JSON object", "array"]),
    ('"data"', "InvalidRequest", ["string"]),
    ("{}", "MissingData", ['no "data" field', "'double'"]),
    ('{"kwargs": {}}', "MissingData", ['no "data"']),
    ('{"data": 1, "kwarg": {}}', "InvalidRequest", ["unknown fields ['kwarg']", "data, kwargs, callback"]),
    ('{"data": 1, "async": "yes"}', "InvalidRequest", ['"async" must be true or false']),
    ('{"data": 1, "callback": 42}', "InvalidCallback", ["URL string", "number"]),
    ('{"data": 1, "callback": "ftp://x.org/r"}', "InvalidCallback", ["http:// or https://"]),
    ('{"data": 1, "callback": "http://"}', "InvalidCallback", ["with a host"]),
    ('{"data": 1, "callback": "http://x.org:99999/"}', "InvalidCallback", ["not a valid URL"]),
    ('{"data": 1, "callback": "/relative"}', "InvalidCallback", ["absolute"]),
    ('{"data": 1, "callback": "http://x.org/a b"}', "InvalidCallback",
     ["' ' at position 14", "percent-encoded"]),
    ('{"data": 1, "callback": "http://x.org/a\\tb"}', "InvalidCallback", ["'\\t' at position 14"]),
    ('{"data": 1, "callback": "http://x.org/\\u0000"}', "InvalidCallback", ["position 13"]),
    ('{"data": 1, "callback": "http://x.org/caf\\u00e9"}', "InvalidCallback", ["non-ASCII"]),
    ('{"data": 1, "callback": "http://x.org\\r\\nX-Evil: 1/"}', "InvalidCallback",
     ["'\\r' at position 12"]),
])
def test_malformed_bodies_are_400(client, raw, name, words):
    response = client.post("/pipelines/double", data=raw, content_type="application/json")
    error = error_of(response, 400)
    assert error["name"] == name
    for word in words:
        assert word in error["message"]


def test_body_that_is_not_utf8_is_400(client):
    response = client.post("/pipelines/double", data=b'{"data": "\xff"}', content_type="application/json")
    assert error_of(response, 400)["name"] == "InvalidJSON"


def test_deeply_nested_json_is_400_not_a_crash(client):
    raw = '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    error = error_of(client.post("/pipelines/echo", data=raw, content_type="application/json"), 400)
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_not_json_is_415(client, content_type):
    kw = {"content_type": content_type} if content_type else {}
    error = error_of(client.post("/pipelines/double", data='{"data": [1]}', **kw), 415)
    assert error["name"] == "UnsupportedMediaType" and "application/json" in error["message"]


def test_body_over_max_request_bytes_is_413():
    app = build_service(load_config(max_request_bytes=100)).create_app()
    client = app.test_client()
    assert post(client, "echo", {"data": "x" * 50}).status_code == 200
    error = error_of(post(client, "echo", {"data": "x" * 200}), 413)
    assert error["name"] == "RequestTooLarge" and "max_request_bytes = 100" in error["message"]


def test_unknown_pipeline_is_404_listing_the_registered_ones(client):
    error = error_of(post(client, "nope", {"data": []}), 404)
    assert error["name"] == "PipelineNotFound"
    assert "'nope'" in error["message"] and "double" in error["message"]


def test_unknown_path_is_json_404(client):
    assert error_of(client.get("/no/such/path"), 404)["name"] == "NotFound"


def test_wrong_method_is_json_405_with_allow(client):
    response = client.get("/pipelines/double")
    assert error_of(response, 405)["name"] == "MethodNotAllowed"
    assert "POST" in response.headers["Allow"]
    assert error_of(client.delete("/health"), 405)["name"] == "MethodNotAllowed"


# -- pipeline errors ------------------------------------------------------------------------------


def test_input_a_pipeline_rejects_is_422_with_the_stage(client):
    error = error_of(post(client, "double", {"data": 5}), 422)
    assert error["name"] == "PipelineError"
    assert error["stage"]["operator"] == "map" and error["stage"]["index"] == 0
    assert "int" in error["message"]


def test_failing_stage_is_500_with_name_stage_item_and_traceback(client):
    error = error_of(post(client, "lookup", {"data": ["a", "zz", "b"]}), 500)
    assert error["name"] == "KeyError"
    assert error["stage"] == {"index": 0, "operator": "map", "function": "lookup", "path": "0"}
    assert error["item"] == "zz"
    assert "stage 0 map(lookup) failed on item 'zz'" in error["message"]
    assert "in lookup" in error["traceback"] and "KeyError: 'zz'" in error["traceback"]


def test_a_result_that_is_not_json_is_500_naming_type_and_place(client):
    error = error_of(post(client, "opaque", {"data": [1, 2, 3, 4]}), 500)
    assert error["name"] == "EncodingError"
    assert error["path"] == "results[2].score" and error["type"] == "tests.served.Opaque"
    assert "results[2].score: cannot encode a tests.served.Opaque" in error["message"]
    assert post(client, "opaque", {"data": [1, 2]}).status_code == 200  # and the server goes on


def test_an_executor_that_breaks_is_a_json_500():
    class Broken(SerialExecutor):
        def run_pass(self, data, steps, aggregate):
            raise RuntimeError("disk on fire")

    service = Atoll(load_config())
    service.register_pipeline("/p", Pipeline().map(abs), executor=Broken())
    error = error_of(post(service.create_app().test_client(), "p", {"data": [1]}), 500)
    assert error["name"] == "RuntimeError" and "disk on fire" in error["message"]


def test_an_unexpected_error_in_a_handler_is_json_500_without_details():
    service = Atoll(load_config())
    service.health_checks.append(lambda: 1 / 0)  # a check that raises is reported, not fatal
    app = service.create_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    error = error_of(app.test_client().get("/boom"), 500)
    assert error["name"] == "InternalServerError" and "secret detail" not in error["message"]


# -- encoding -------------------------------------------------------------------------------------


def test_results_encoding(client):
    results = post(client, "odd", {"data": None}).get_json()["results"]
    assert results == {
        "tuple": [1, [2, 3]], "int64": 7, "float32": 0.5, "bool": True, "array": [[0, 1, 2], [3, 4, 5]],
        "set": [1, 2, 3], "date": "2024-02-29", "datetime": "2024-02-29T12:30:00+00:00",
        "decimal": "1.10", "nan": None, "int_keys": {"1": "one", "2": "two"},
    }


def test_encoding_functions():
    assert to_json({"a": (1, {2})}) == '{"a":[1,[2]]}'
    assert jsonable((1, (2,))) == [1, [2]]
    assert jsonable({"s": {"b", 1}})["s"] in ([1, "b"], ["b", 1])  # mixed types keep their order
    with pytest.raises(EncodingError) as caught:
        to_json({"rows": [{"ok": 1}, {"bad key": {(1, 2): "v"}}]})
    assert caught.value.path == 'results.rows[1]["bad key"]["(1, 2)"] (a key)'
    assert caught.value.type_name == "builtins.tuple"
    with pytest.raises(EncodingError, match=r"results\[0\]: cannot encode a builtins.bytes"):
        jsonable([b"raw"])


# -- async dispatch -------------------------------------------------------------------------------


def test_callback_or_async_hands_the_job_to_submit_response(monkeypatch, client):
    # the job system belongs to the asynchronous path (tested there, against a real broker); here
    # a stand-in records the call so that the dispatch contract of this handler is checked.
    from atoll.service.http import jobs

    calls = []

    def submit_response(run, body):
        calls.append((run.pipeline, run.data, run.kwargs, run.callback))
        return {"job_id": "j1", "status_url": "/jobs/j1"}, 202

    monkeypatch.setattr(jobs, "submit_response", submit_response)
    response = post(client, "scaled", {"data": [1], "kwargs": {"factor": 2}, "callback": "http://x.org/r"})
    assert response.status_code == 202 and response.get_json()["job_id"] == "j1"
    assert post(client, "double", {"data": [1], "async": True}).status_code == 202
    assert post(client, "double", {"data": [1], "async": False}).get_json() == {"results": [2]}
    assert calls == [("scaled", [1], {"factor": 2}, "http://x.org/r"), ("double", [1], {}, None)]
    # the body is validated before anything is queued
    assert post(client, "scaled", {"data": [1], "async": True}).status_code == 400
    assert len(calls) == 2


# -- auth -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured():
    # no embedded worker expected: /health depends on the tokens alone here
    return build_service(load_config(auth_tokens=["s3cret", "other"], embedded_worker=False)
                         ).create_app().test_client()


def test_auth_required_on_everything_but_health(secured):
    for method, path in (("get", "/pipelines"), ("post", "/pipelines/double"), ("get", "/openapi.json"),
                         ("get", "/jobs/x")):
        response = getattr(secured, method)(path, json={"data": [1]})
        error = error_of(response, 401)
        assert error["name"] == "Unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert secured.get("/health").status_code == 200


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer s3cre", "Basic s3cret", "s3cret", "Bearer "])
def test_wrong_tokens_are_401(secured, header):
    response = post(secured, "double", {"data": [1]}, headers={"Authorization": header})
    assert error_of(response, 401)["name"] == "Unauthorized"


@pytest.mark.parametrize("token", ["s3cret", "other"])
def test_right_tokens_pass(secured, token):
    response = post(secured, "double", {"data": [1]}, headers={"Authorization": f"Bearer {token}"})
    assert response.get_json() == {"results": [2]}


# -- health ---------------------------------------------------------------------------------------


def health_of(service, checks=None):
    app = service.create_app()
    if checks is not None:  # only these (create_app may have added the broker's and workers')
        service.health_checks[:] = [service.health_checks[0], *checks]
    response = app.test_client().get("/health")
    return response.status_code, response.get_json()


def test_health_reports_every_check():
    status, body = health_of(build_service(load_config()))
    assert body["checks"]["service"] == {"ok": True, "required": True, "pipelines": 7}
    checks = body["checks"].values()
    assert status == (200 if all(c["ok"] for c in checks if c["required"]) else 503)
    assert (body["status"] == "ok") == all(c["ok"] for c in checks)


def test_health_ok_when_every_check_passes():
    service = Atoll(load_config())
    assert health_of(service, [lambda: ("extra", True, {}, False)]) == (200, {
        "status": "ok", "version": atoll.__version__, "checks": {
            "service": {"ok": True, "required": True, "pipelines": 0},
            "extra": {"ok": True, "required": False}}})


def test_health_optional_failure_is_degraded_and_required_failure_is_503():
    service = Atoll(load_config())
    status, body = health_of(service, [lambda: ("workers", False, {"alive": 0}, False)])
    assert status == 200 and body["status"] == "degraded"
    assert body["checks"]["workers"] == {"ok": False, "required": False, "alive": 0}
    service = Atoll(load_config())
    status, body = health_of(service, [lambda: ("broker", False, {"url": "amqp://..."}, True)])
    assert status == 503 and body["status"] == "down" and body["checks"]["broker"]["ok"] is False


def test_a_health_check_that_raises_counts_as_a_required_failure():
    service = Atoll(load_config())

    def broker():
        raise ConnectionError("refused")

    status, body = health_of(service, [broker])
    assert status == 503 and body["checks"]["broker"]["error"] == "ConnectionError: refused"


def test_extra_blueprints_are_registered_by_create_app():
    from flask import Blueprint

    extra = Blueprint("extra", __name__)
    extra.get("/extra")(lambda: {"here": True})
    service = Atoll(load_config())
    service.blueprints.append(extra)
    assert service.create_app().test_client().get("/extra").get_json() == {"here": True}


# -- a pipeline on Spark inside a request -----------------------------------------------------------


@pytest.mark.spark
def test_distributed_pipeline_runs_on_spark_inside_a_request(spark_local_executor):
    # distributed=True builds SparkExecutor.from_config(service.config): local[2] here, which reuses
    # the session's running SparkContext for that master.
    service = Atoll(load_config(spark_master="local[2]"))
    service.register_pipeline("/wc", Pipeline().flatMap(str.split).map(lambda w: (w, 1))
                              .reduceByKey(lambda a, b: a + b), distributed=True)
    service.register_pipeline("/fails", Pipeline().map(lambda x: 10 // x), executor=spark_local_executor)
    client = service.create_app().test_client()
    response = post(client, "wc", {"data": ["a b a", "c a"] * 50})
    assert dict(map(tuple, response.get_json()["results"])) == {"a": 150, "b": 50, "c": 50}
    assert type(service.pipelines["wc"].executor()).__name__ == "SparkExecutor"
    error = error_of(post(client, "fails", {"data": [5, 0, 2]}), 500)
    assert error["name"] == "ZeroDivisionError" and error["item"] == 0
    assert error["stage"]["operator"] == "map"
