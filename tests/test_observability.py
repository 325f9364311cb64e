"""What an operator sees: /livez and /readyz, X-Request-ID, /metrics (parsed with prometheus_client's
own parser, in one process and summed over gunicorn's worker processes) and the access log."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from atoll.config import load_config
from tests.served import build_service
from tests.support import answers, serve

TOKEN = "observability-token"


def samples(text: str) -> dict[tuple, float]:
    """Return {(sample name, sorted labels): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_total(text: str, pipeline: str, mode: str, status: str) -> float:
    return samples(text).get(("atoll_requests_total", (("mode", mode), ("pipeline", pipeline),
                                                        ("status", status))), 0.0)


@pytest.fixture
def client():
    return build_service(load_config()).create_app().test_client()


# -- probes ---------------------------------------------------------------------------------------


def test_livez_answers_without_asking_anything(tmp_path):
    # a broker that does not exist: liveness does no I/O, so it is still 200 and fast
    service = build_service(load_config(worker_broker="amqp://guest:guest@127.0.0.1:1//",
                                        state_dir=str(tmp_path)))
    calls = []
    service.health_checks.append(lambda: calls.append(1) or ("counted", True, {}, True))
    client = service.create_app().test_client()
    response = client.get("/livez")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert calls == []


def test_readyz_names_what_is_down_and_nothing_more(tmp_path):
    service = build_service(load_config(worker_broker="amqp://secret-user:pw@127.0.0.1:1//",
                                        state_dir=str(tmp_path)))
    response = service.create_app().test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready" and "broker" in body["failing"]
    assert "secret-user" not in response.get_data(as_text=True)


def test_readyz_runs_the_checks_once_per_cache_period():
    service = build_service(load_config())
    calls = []
    service.health_checks.append(lambda: calls.append(1) or ("counted", True, {}, True))
    app = service.create_app()
    app.extensions["atoll.readiness"].ttl = 3600
    client = app.test_client()
    answers = {client.get("/readyz").status_code for _ in range(25)}
    assert len(calls) == 1 and len(answers) == 1
    app.extensions["atoll.readiness"].ttl = 0
    client.get("/readyz")
    assert len(calls) == 2


def test_probes_are_open_and_metrics_need_a_token_unless_public():
    closed = build_service(load_config(auth_tokens=[TOKEN])).create_app().test_client()
    assert closed.get("/livez").status_code == 200
    assert closed.get("/readyz").status_code in (200, 503)
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    public = build_service(load_config(auth_tokens=[TOKEN], metrics_public=True)).create_app()
    assert public.test_client().get("/metrics").status_code == 200
    assert public.test_client().post("/pipelines/double", json={"data": [1]}).status_code == 401


# -- request ids ----------------------------------------------------------------------------------


def test_a_well_formed_request_id_is_answered_as_sent(client):
    response = client.post("/pipelines/double", json={"data": [1]}, headers={"X-Request-ID": "order-7.a"})
    assert response.headers["X-Request-ID"] == "order-7.a"


@pytest.mark.parametrize("given", [None, "", "<script>alert(1)</script>", "a" * 129, "two words"])
def test_a_missing_or_malformed_request_id_is_replaced(client, given):
    headers = {} if given is None else {"X-Request-ID": given}
    first = client.get("/pipelines", headers=headers).headers["X-Request-ID"]
    second = client.get("/pipelines", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_a_new_request_id_is_a_version_4_uuid():
    import uuid

    client = build_service(load_config()).create_app().test_client()
    made = {client.get("/livez").headers["X-Request-ID"] for _ in range(50)}
    assert len(made) == 50
    assert {uuid.UUID(hex=given).version for given in made} == {4}
    assert {uuid.UUID(hex=given).variant for given in made} == {uuid.RFC_4122}


def test_a_request_id_with_a_line_break_is_replaced(client):
    # a server hands over what the client sent; Werkzeug's test client refuses to send it
    answered = client.get("/livez", environ_overrides={"HTTP_X_REQUEST_ID": "line\n"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", answered)


def test_error_answers_carry_the_request_id_too():
    client = build_service(load_config(auth_tokens=[TOKEN])).create_app().test_client()
    refused = client.post("/pipelines/double", json={"data": [1]}, headers={"X-Request-ID": "r-401"})
    assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "r-401"
    missing = client.post("/pipelines/nope", json={"data": [1]},
                          headers={"X-Request-ID": "r-404", "Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "r-404"


def test_log_records_written_during_a_request_carry_its_id(client, caplog):
    caplog.set_level(logging.INFO)
    marker = logging.getLogger("atoll.test")
    client.application.before_request_funcs.setdefault(None, []).append(
        lambda: marker.info("inside the request"))
    client.get("/pipelines", headers={"X-Request-ID": "log-me-1"})
    logging.getLogger("atoll.test").info("outside any request")
    ids = {record.getMessage(): record.request_id for record in caplog.records
           if record.name == "atoll.test"}
    assert ids == {"inside the request": "log-me-1", "outside any request": "-"}


# -- metrics --------------------------------------------------------------------------------------


def test_counters_move_by_exactly_what_was_done(client):
    before = client.get("/metrics").get_data(as_text=True)
    for value in (1, 2, 3):
        assert client.post("/pipelines/double", json={"data": [value]}).status_code == 200
    assert client.post("/pipelines/double", json={"nodata": 1}).status_code == 400
    assert client.post("/pipelines/lookup", json={"data": ["zz"]}).status_code == 500
    assert client.post("/pipelines/nope", json={"data": 1}).status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = response.get_data(as_text=True)

    def moved(pipeline, mode, status):
        return requests_total(after, pipeline, mode, status) - requests_total(before, pipeline, mode, status)

    assert moved("double", "sync", "200") == 3
    assert moved("double", "-", "400") == 1  # refused before its mode was known
    assert moved("lookup", "sync", "500") == 1
    assert moved("nope", "-", "404") == 1
    runs = samples(after)
    count = runs.get(("atoll_pipeline_run_duration_seconds_count",
                      (("executor", "serial"), ("pipeline", "double"))), 0.0)
    was = samples(before).get(("atoll_pipeline_run_duration_seconds_count",
                               (("executor", "serial"), ("pipeline", "double"))), 0.0)
    assert count - was == 3
    durations = samples(after)
    assert durations[("atoll_request_duration_seconds_count", (("pipeline", "double"),))] >= 4


def test_every_label_set_is_counted_past_the_series_kept_at_hand(client, monkeypatch):
    from atoll.service import metrics

    monkeypatch.setattr(metrics, "_CHILDREN_KEPT", 0)  # every series is looked up each time
    before = client.get("/metrics").get_data(as_text=True)
    for pipeline in ("double", "echo", "double"):
        assert client.post(f"/pipelines/{pipeline}", json={"data": [1]}).status_code == 200
    after = client.get("/metrics").get_data(as_text=True)
    for pipeline, count in (("double", 2), ("echo", 1)):
        moved = (requests_total(after, pipeline, "sync", "200")
                 - requests_total(before, pipeline, "sync", "200"))
        assert moved == count


def test_requests_for_metrics_are_not_counted(client):
    def served_elsewhere() -> float:
        return requests_total(client.get("/metrics").get_data(as_text=True), "-", "-", "200")

    before = served_elsewhere()
    assert served_elsewhere() == before
    client.get("/livez")
    assert served_elsewhere() == before + 1


@pytest.mark.slow
def test_metrics_add_up_every_gunicorn_worker_and_the_access_log_has_request_ids(tmp_path):
    log, counts = tmp_path / "serve.log", tmp_path / "metrics"
    counts.mkdir()
    with serve("served:service", workers=2, threads=2, ready=answers("/livez"), log=log,
               env={"PROMETHEUS_MULTIPROC_DIR": str(counts)}) as (url, _):
        sent = 0

        def post(i: int) -> None:
            response = requests.post(f"{url}/pipelines/double", json={"data": [i]},
                                     headers={"X-Request-ID": f"burst-{i}"}, timeout=30)
            assert response.status_code == 200 and response.headers["X-Request-ID"] == f"burst-{i}"

        # bursts of concurrent new connections until both worker processes have counted some (the
        # kernel decides which process accepts a connection)
        with ThreadPoolExecutor(8) as pool:
            deadline = time.monotonic() + 60
            while len(list(counts.glob("counter_*.db"))) < 2 or sent < 40:
                list(pool.map(post, range(sent, sent + 16)))
                sent += 16
                assert time.monotonic() < deadline, "the bursts kept reaching one worker process"
        with requests.Session() as session:
            totals = {requests_total(session.get(f"{url}/metrics", timeout=30).text, "double", "sync", "200")
                      for _ in range(10)}
    assert totals == {float(sent)}, "each scrape must see the sum over every worker process"
    text = log.read_text()
    assert re.search(rf'"POST /pipelines/double HTTP/1.1" 200 .* id=burst-{sent - 1}\n', text), text[-2000:]


# -- worker log lines -----------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_json_log_lines_carry_the_job_and_the_submitting_request(tmp_path):
    import json

    from tests.async_service import build_service
    from tests.support import Worker, eventually, job_config, wait_for_job

    path, config = job_config(tmp_path, log_format="json")
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        client = build_service(config).create_app().test_client()
        answer = client.post("/pipelines/double", json={"data": [1], "async": True},
                             headers={"X-Request-ID": "submit-json-1"})
        assert answer.status_code == 202 and answer.headers["X-Request-ID"] == "submit-json-1"
        job_id = answer.get_json()["job_id"]
        assert wait_for_job(client, job_id)["status"] == "succeeded"

        def json_lines() -> list[dict]:
            return [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]

        def logged() -> list[dict]:
            return [line for line in json_lines() if line.get("job_id") == job_id
                    and "succeeded" in line["message"]]

        done = eventually(logged, 20, 0.2, what=f"a JSON log line saying job {job_id} succeeded",
                          detail=lambda: worker.log()[-3000:])
        lines = json_lines()
    finally:
        worker.stop()
    line = done[0]
    assert line["request_id"] == "submit-json-1" and line["pipeline"] == "double"
    assert line["logger"] == "atoll.jobs" and line["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])
    # Celery's own log lines too (its text format starts "[2026-..."); only its banner is not logging
    assert not [text for text in worker.log().splitlines() if re.match(r"\[\d{4}-", text)]
    assert any("ready." in line["message"] and line["logger"].startswith("celery") for line in lines)


def test_web_log_lines_as_json_and_text_name_the_request(client):
    import io
    import json

    from atoll.service.log_format import formatter

    logger = logging.getLogger("atoll.test.format")
    logger.setLevel(logging.INFO)
    streams = {}
    for kind in ("json", "text"):
        streams[kind] = io.StringIO()
        handler = logging.StreamHandler(streams[kind])
        handler.setFormatter(formatter(kind))
        logger.addHandler(handler)
    client.application.before_request_funcs.setdefault(None, []).append(
        lambda: logger.info("serving %s", "it"))
    client.get("/pipelines", headers={"X-Request-ID": "fmt-1"})
    logger.info("idle")
    first, second = (json.loads(line) for line in streams["json"].getvalue().splitlines())
    assert first["message"] == "serving it" and first["request_id"] == "fmt-1"
    assert first["logger"] == "atoll.test.format" and first["job_id"] is None
    assert second["message"] == "idle" and second["request_id"] is None
    text = streams["text"].getvalue().splitlines()
    assert text[0].endswith("INFO atoll.test.format [fmt-1]: serving it")
    assert text[1].endswith("INFO atoll.test.format: idle")


@pytest.mark.slow
def test_a_workers_job_and_callback_counts_reach_metrics_and_the_request_id_reaches_the_receiver(
        tmp_path, monkeypatch, callback_receiver):
    from tests.async_service import build_service
    from tests.support import Worker, eventually, job_config, wait_for_job

    counts = tmp_path / "metrics"
    counts.mkdir()
    # the worker inherits the folder, as atoll serve's embedded worker does; the test's own
    # prometheus_client was imported without it, so only the worker's processes write there
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(counts))
    path, config = job_config(tmp_path)
    worker = Worker(path).start()
    try:
        worker.wait_ready()
        client = build_service(config).create_app().test_client()
        jobs = {}
        for name, data in (("double", [1, 2]), ("explode", [2]), ("double", [5])):
            answer = client.post(f"/pipelines/{name}", json={"data": data, "callback": callback_receiver.url},
                                 headers={"X-Request-ID": f"cb-{len(jobs)}"})
            assert answer.status_code == 202
            jobs[answer.get_json()["job_id"]] = f"cb-{len(jobs)}"
        assert not callback_receiver.wait_for_jobs(set(jobs), timeout=60)

        def settled(job_id: str) -> dict | None:
            record = wait_for_job(client, job_id)
            return None if record["callback"]["state"] == "pending" else record

        for job_id, request_id in jobs.items():
            # the worker records "delivered" once the receiver's answer is back, a moment after the
            # receiver has the call
            record = eventually(lambda job_id=job_id: settled(job_id), 20, 0.05,
                                what=f"job {job_id}'s callback to leave pending")
            assert record["request_id"] == request_id and record["callback"]["state"] == "delivered"
        text = client.get("/metrics").get_data(as_text=True)
    finally:
        worker.stop()
    received = {call.json["job_id"]: call.headers.get("x-request-id")
                for call in callback_receiver.accepted()}
    assert received == jobs
    found = samples(text)
    assert found[("atoll_jobs_total", (("pipeline", "double"), ("status", "succeeded")))] == 2
    assert found[("atoll_jobs_total", (("pipeline", "explode"), ("status", "failed")))] == 1
    assert found[("atoll_job_duration_seconds_count", (("pipeline", "double"),))] == 2
    assert found[("atoll_callback_deliveries_total", (("outcome", "delivered"),))] == 3
    assert found[("atoll_queue_depth", (("queue", config.worker_queue),))] == 0


@pytest.mark.slow
def test_a_worker_serves_its_own_metrics_with_metrics_bind(tmp_path):
    import os
    import subprocess
    import sys

    from tests.async_service import build_service
    from tests.support import TESTS, eventually, free_port, job_config, wait_for_job

    path, config = job_config(tmp_path)
    port = free_port()
    env = {**os.environ, "ATOLL_CONF": str(path),
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([sys.executable, "-m", "atoll.cli", "worker", "--metrics-bind", str(port),
                               "async_service:service"], env=env, cwd=str(TESTS), stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        client = build_service(config).create_app().test_client()
        job_id = client.post("/pipelines/double", json={"data": [4], "async": True}).get_json()["job_id"]
        assert wait_for_job(client, job_id, timeout=60)["status"] == "succeeded"

        def counted() -> str | None:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return text if ("atoll_jobs_total", (("pipeline", "double"), ("status", "succeeded"))) in \
                samples(text) else None

        text = eventually(counted, 20, 0.2, what="the worker's /metrics to count the job",
                          ignoring=(requests.ConnectionError,),
                          detail=lambda: (tmp_path / "worker.log").read_text()[-3000:])
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    assert samples(text)[("atoll_jobs_total", (("pipeline", "double"), ("status", "succeeded")))] == 1


def test_a_failed_serve_leaves_no_metrics_folder_behind(monkeypatch):
    import os

    from atoll.cli import main

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert main(["serve", "no_such_module_for_metrics"]) == 2
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # later requests in this process count in memory
