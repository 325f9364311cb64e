"""Datasets: uploads checked while they stream, the store's lifecycle, and runs on data by reference.

Real parts: the local store in a temporary folder, the Flask app through its test client, ``atoll
serve`` on a loopback port for uploads larger than ``max_request_bytes``, worker processes on the
embedded broker and on RabbitMQ reading the same dataset from the store.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import requests

from atoll.config import Config
from tests.datasets_service import build_service
from tests.support import Worker, delete_queue, job_config, serve, wait_for_job, write_config

JSONL = "application/x-ndjson"


def app_of(tmp_path: Path, **values):
    service = build_service(Config({"state_dir": str(tmp_path / "state"), **values}))
    return service, service.create_app().test_client()


def stored(tmp_path: Path) -> list[str]:
    """Every file left in the store (uses and uploads included)."""
    root = tmp_path / "state" / "datasets"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def upload(client, body: bytes, content_type: str = JSONL, **headers):
    return client.post("/datasets", data=body, content_type=content_type, headers=headers)


# -- uploads -----------------------------------------------------------------------------------------

def test_json_lines_upload_answers_201_with_its_metadata_and_downloads_as_sent(tmp_path):
    _, client = app_of(tmp_path)
    body = b"".join(json.dumps({"n": i, "text": f"line {i}"}).encode() + b"\n" for i in range(1000))
    answer = upload(client, body)
    assert answer.status_code == 201
    meta = answer.get_json()
    assert meta["format"] == "jsonl" and meta["records"] == 1000 and meta["bytes"] == len(body)
    assert meta["sha256"] == hashlib.sha256(body).hexdigest()
    assert answer.headers["Location"].endswith(f"/datasets/{meta['dataset_id']}")
    assert meta["created_at"] < meta["expires_at"]
    assert client.get(f"/datasets/{meta['dataset_id']}").get_json()["records"] == 1000
    assert client.get(f"/datasets/{meta['dataset_id']}/data").data == body


def test_text_gzip_and_json_array_uploads_are_stored_as_lines(tmp_path):
    _, client = app_of(tmp_path)
    text = upload(client, gzip.compress(b"a b\nb c"), "text/plain", **{"Content-Encoding": "gzip"})
    assert text.status_code == 201 and text.get_json()["records"] == 2
    assert client.get(f"/datasets/{text.get_json()['dataset_id']}/data").data == b"a b\nb c\n"
    array = upload(client, json.dumps([{"n": i} for i in range(5000)]).encode(), "application/json")
    assert array.status_code == 201 and array.get_json()["records"] == 5000
    lines = client.get(f"/datasets/{array.get_json()['dataset_id']}/data").data.splitlines()
    assert [json.loads(line) for line in lines] == [{"n": i} for i in range(5000)]


def test_range_downloads_answer_206_and_416(tmp_path):
    _, client = app_of(tmp_path)
    dataset_id = upload(client, b"abc\ndef\n", "text/plain").get_json()["dataset_id"]
    part = client.get(f"/datasets/{dataset_id}/data", headers={"Range": "bytes=4-6"})
    assert part.status_code == 206 and part.data == b"def"
    assert part.headers["Content-Range"] == "bytes 4-6/8"
    assert client.get(f"/datasets/{dataset_id}/data", headers={"Range": "bytes=-2"}).data == b"f\n"
    far = client.get(f"/datasets/{dataset_id}/data", headers={"Range": "bytes=100-"})
    assert far.status_code == 416 and far.headers["Content-Range"] == "bytes */8"


@pytest.mark.parametrize("body, headers, status, name, words", [
    (b"", {}, 422, "EmptyDataset", "no record"),
    (b'{"n": 1}\n{"n": 2}\nnot json\n{"n": 4}\n', {}, 422, "InvalidDataset", "line 3"),
    (gzip.compress(b'{"n": 1}\n' * 1000)[:-12], {"Content-Encoding": "gzip"}, 422, "InvalidDataset",
     "truncated"),
    (b"\x1f\x8b not gzip at all", {"Content-Encoding": "gzip"}, 422, "InvalidDataset", "not valid gzip"),
    (gzip.compress(b"0" * (50 * 1024 * 1024)), {"Content-Encoding": "gzip"}, 413, "DatasetTooLarge",
     "decompresses"),
    (b'{"n": 1}\n' * 200_000, {}, 413, "DatasetTooLarge", "dataset_max_bytes"),
])
def test_bad_uploads_are_clear_errors_and_leave_nothing(tmp_path, body, headers, status, name, words):
    _, client = app_of(tmp_path, dataset_max_bytes=1024 * 1024)
    answer = upload(client, body, **headers)
    assert answer.status_code == status, answer.get_json()
    error = answer.get_json()["error"]
    assert error["name"] == name and words in error["message"]
    if name == "InvalidDataset" and "line" in words:
        assert error["line"] == 3
    assert stored(tmp_path) == []
    assert client.get("/datasets").get_json()["datasets"] == []


def test_a_json_array_with_a_bad_element_names_it(tmp_path):
    _, client = app_of(tmp_path)
    answer = upload(client, b'[{"n": 1}, {"n": 2}, {"n": oops}]', "application/json")
    assert answer.status_code == 422 and answer.get_json()["error"]["element"] == 2
    assert upload(client, b'{"not": "an array"}', "application/json").status_code == 422
    assert stored(tmp_path) == []


def test_a_lone_surrogate_is_a_422_in_every_format_it_cannot_be_stored_in(tmp_path):
    # "\ud800" is valid JSON syntax but no UTF-8 string: Python's parser takes it, the store cannot
    _, client = app_of(tmp_path)
    answer = upload(client, b'[{"n": 1}, {"t": "\\ud800"}]', "application/json")
    assert answer.status_code == 422 and answer.get_json()["error"]["element"] == 1
    assert upload(client, b'{"t": "\\udfff"}\n', "application/x-ndjson").status_code == 422
    assert stored(tmp_path) == []


def test_unsupported_type_or_encoding_is_415(tmp_path):
    _, client = app_of(tmp_path)
    assert upload(client, b"x", "image/png").status_code == 415
    assert upload(client, b"x", "text/plain", **{"Content-Encoding": "br"}).status_code == 415


def test_quota_of_the_store_is_507_and_keeps_nothing(tmp_path):
    _, client = app_of(tmp_path, datasets_max_total_bytes=1000)
    assert upload(client, b"x" * 600 + b"\n", "text/plain").status_code == 201
    answer = upload(client, b"y" * 600 + b"\n", "text/plain")
    assert answer.status_code == 507 and answer.get_json()["error"]["name"] == "DatasetQuotaExceeded"
    assert len(client.get("/datasets").get_json()["datasets"]) == 1
    assert len([f for f in stored(tmp_path) if f.endswith("/data")]) == 1


def _store_when_told(root: str, limit: int, start_at: float, size: int) -> str:
    """(in a process of its own) Store a dataset of ``size`` bytes from ``start_at`` on, its body read
    slowly; return "stored" or the error's name."""
    from atoll.service.datasets.store import DatasetStore

    store = DatasetStore(Config({"datasets_url": root, "datasets_max_total_bytes": limit}))

    def body():
        time.sleep(0.3)  # the others have all started: a check made before this is stale now
        yield b"x" * (size - 1) + b"\n"

    time.sleep(max(0.0, start_at - time.time()))
    try:
        store.create(body(), "text", False)
        return "stored"
    except Exception as exc:
        return type(exc).__name__


def test_concurrent_uploads_never_exceed_the_quota_together(tmp_path):
    import multiprocessing

    root = str(tmp_path / "datasets")
    start_at = time.time() + 3  # the processes have started by then
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        outcomes = pool.starmap(_store_when_told, [(root, 1000, start_at, 600)] * 4)
    assert sorted(outcomes) == ["DatasetQuotaExceeded"] * 3 + ["stored"], outcomes
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["data", "meta.json", "quota.lock"]  # no reservation left
    assert sum(p.stat().st_size for p in files if p.name == "data") == 600


def test_a_live_reservation_holds_room_and_a_lapsed_one_is_swept(tmp_path):
    from atoll.service.datasets.store import RESERVATION_SECONDS

    service, client = app_of(tmp_path, datasets_max_total_bytes=1000)
    reservation = tmp_path / "state" / "datasets" / "reservations" / ("0" * 32)
    reservation.parent.mkdir(parents=True)
    reservation.write_text(json.dumps({"bytes": 900, "at": time.time()}))  # a writer under way
    answer = upload(client, b"y" * 200 + b"\n", "text/plain")
    assert answer.status_code == 507 and answer.get_json()["error"]["available"] == 100
    reservation.write_text(json.dumps({"bytes": 900, "at": time.time() - RESERVATION_SECONDS - 1}))
    assert upload(client, b"y" * 200 + b"\n", "text/plain").status_code == 201  # its writer died
    service.datasets().sweep()
    assert not reservation.exists()


def test_results_count_against_the_quota(tmp_path):
    _, client = app_of(tmp_path, datasets_max_total_bytes=1500)
    source = upload(client, b'{"n": 1}\n' * 100).get_json()["dataset_id"]  # 900 bytes, and as many
    answer = client.post("/pipelines/double", json={"data": {"dataset": source}, "results_to": "dataset"})
    assert answer.status_code == 507 and answer.get_json()["error"]["name"] == "DatasetQuotaExceeded"
    assert [f for f in stored(tmp_path) if f.endswith("/data")] == [f"{source}/data"]


def test_list_is_newest_first_with_a_cursor_and_delete_removes(tmp_path):
    _, client = app_of(tmp_path)
    ids = [upload(client, f"{i}\n".encode(), "text/plain").get_json()["dataset_id"] for i in range(5)]
    first = client.get("/datasets?limit=2").get_json()
    assert [d["dataset_id"] for d in first["datasets"]] == ids[::-1][:2]
    rest = client.get(f"/datasets?limit=10&cursor={first['next']}").get_json()
    assert [d["dataset_id"] for d in rest["datasets"]] == ids[::-1][2:] and rest["next"] is None
    assert client.get("/datasets?cursor=../x").status_code == 400
    assert client.delete(f"/datasets/{ids[0]}").status_code == 204
    assert client.get(f"/datasets/{ids[0]}").status_code == 404
    assert client.get(f"/datasets/{ids[0]}/data").status_code == 404
    assert not any(f.startswith(ids[0]) for f in stored(tmp_path))
    assert client.get("/datasets/..%2F..%2Fetc").status_code == 404


def test_expired_datasets_and_abandoned_uploads_are_swept(tmp_path):
    service, client = app_of(tmp_path, dataset_expires=1)
    dataset_id = upload(client, b"a\n", "text/plain").get_json()["dataset_id"]
    upload_id = client.post("/datasets/uploads", json={"format": "text"}).get_json()["upload_id"]
    client.patch(f"/datasets/uploads/{upload_id}", data=b"half a li", headers={"Upload-Offset": "0"})
    orphan = tmp_path / "state" / "datasets" / ("0" * 12 + "1" * 20) / "data"  # a process died mid-upload
    orphan.parent.mkdir()
    orphan.write_bytes(b"partial")
    time.sleep(1.2)
    assert client.get(f"/datasets/{dataset_id}").status_code == 404  # expired: gone at once
    assert service.datasets().sweep() == 3
    assert [f for f in stored(tmp_path)] == []


# -- resumable uploads ---------------------------------------------------------------------------------

def test_a_resumable_upload_in_parts_survives_a_cut_part_and_completes(tmp_path):
    _, client = app_of(tmp_path)
    body = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(10000)))
    started = client.post("/datasets/uploads", json={"format": "jsonl", "gzip": True})
    assert started.status_code == 201
    upload_id = started.get_json()["upload_id"]
    half = len(body) // 2
    assert client.patch(f"/datasets/uploads/{upload_id}", data=body[:half],
                        headers={"Upload-Offset": "0"}).headers["Upload-Offset"] == str(half)
    wrong = client.patch(f"/datasets/uploads/{upload_id}", data=body[half:], headers={"Upload-Offset": "7"})
    assert wrong.status_code == 409 and wrong.get_json()["error"]["offset"] == half
    assert client.head(f"/datasets/uploads/{upload_id}").headers["Upload-Offset"] == str(half)
    client.patch(f"/datasets/uploads/{upload_id}", data=body[half:], headers={"Upload-Offset": str(half)})
    done = client.post(f"/datasets/uploads/{upload_id}/complete")
    assert done.status_code == 201 and done.get_json()["records"] == 10000
    assert client.get(f"/datasets/uploads/{upload_id}").status_code == 404
    assert not any(f.startswith("uploads/") for f in stored(tmp_path))


def test_a_bad_resumable_upload_is_refused_at_completion_and_leaves_nothing(tmp_path):
    _, client = app_of(tmp_path)
    upload_id = client.post("/datasets/uploads", json={"format": "jsonl"}).get_json()["upload_id"]
    client.patch(f"/datasets/uploads/{upload_id}", data=b'{"n": 1}\n{bad\n', headers={"Upload-Offset": "0"})
    answer = client.post(f"/datasets/uploads/{upload_id}/complete")
    assert answer.status_code == 422 and answer.get_json()["error"]["line"] == 2
    assert stored(tmp_path) == []


# -- runs on data by reference -------------------------------------------------------------------------

def test_a_sync_run_on_one_dataset_and_on_a_list_of_them(tmp_path):
    _, client = app_of(tmp_path)
    a = upload(client, b"to be or\nnot to be\n", "text/plain").get_json()["dataset_id"]
    b = upload(client, b"be quick\n", "text/plain").get_json()["dataset_id"]
    one = client.post("/pipelines/wordcount", json={"data": {"dataset": a}}).get_json()["results"]
    assert dict(one) == {"to": 2, "be": 2, "or": 1, "not": 1}
    both = client.post("/pipelines/wordcount", json={"data": {"dataset": [a, b]}}).get_json()["results"]
    assert dict(both) == {"to": 2, "be": 3, "or": 1, "not": 1, "quick": 1}


@pytest.mark.parametrize("data, status", [
    ({"dataset": "../../etc/passwd"}, 400),
    ({"dataset": ["0" * 32, "../x"]}, 400),
    ({"dataset": []}, 400),
    ({"dataset": "f" * 32}, 404),
])
def test_bad_dataset_references_are_refused_before_running(tmp_path, data, status):
    _, client = app_of(tmp_path)
    answer = client.post("/pipelines/wordcount", json={"data": data})
    assert answer.status_code == status
    assert answer.get_json()["error"]["name"] == ("DataRefRefused" if status == 400 else "DatasetNotFound")


def test_files_are_read_only_inside_data_roots(tmp_path):
    root = tmp_path / "root"
    (root / "comments").mkdir(parents=True)
    (root / "comments" / "2026-01.txt").write_text("a b\n")
    (root / "comments" / "2026-02.txt").write_text("b c\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    os.symlink(secret, root / "comments" / "2026-99.txt")
    (root / "out").symlink_to(tmp_path)
    _, client = app_of(tmp_path, data_roots=[str(root)])
    run = client.post("/pipelines/wordcount", json={"data": {"files": "comments/2026-0*.txt"}})
    assert dict(run.get_json()["results"]) == {"a": 1, "b": 2, "c": 1}
    for pattern in ("../secret.txt", "comments/../../secret.txt", str(secret), "/etc/passwd",
                    "~/secret.txt", "comments/2026-*.txt", "out/secret.txt", "file:///etc/passwd"):
        answer = client.post("/pipelines/wordcount", json={"data": {"files": pattern}})
        assert answer.status_code == 400, pattern
        assert answer.get_json()["error"]["name"] == "DataRefRefused"
        assert "password" not in answer.get_data(as_text=True)
    _, closed = app_of(tmp_path / "other")
    assert closed.post("/pipelines/wordcount", json={"data": {"files": "comments/*"}}).status_code == 400


@pytest.mark.parametrize("url", [
    "s3://other-bucket/logs/a.txt", "s3://bucket/secrets/a.txt", "s3://bucket/logs/../secrets/a.txt",
    "s3://bucket/logs/%2e%2e/secrets/a.txt", "http://169.254.169.254/latest/meta-data/",
    "file:///etc/passwd", "/etc/passwd", "s3://bucket/logsextra/a.txt", "s3://user@bucket/logs/a.txt",
    "s3://bucket/logs/a.txt?versionId=1",
])
def test_urls_outside_data_sources_are_refused(tmp_path, url):
    _, client = app_of(tmp_path, data_sources=["s3://bucket/logs/"])
    answer = client.post("/pipelines/wordcount", json={"data": {"url": url}})
    assert answer.status_code == 400 and answer.get_json()["error"]["name"] == "DataRefRefused"


def test_urls_under_data_sources_are_read(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.txt").write_text("x y x\n")
    _, client = app_of(tmp_path, data_sources=[f"file://{folder}/"])
    answer = client.post("/pipelines/wordcount", json={"data": {"url": f"file://{folder}/a.txt"}})
    assert dict(answer.get_json()["results"]) == {"x": 2, "y": 1}


# -- atoll serve: uploads larger than max_request_bytes stream through the web server -----------------

def test_atoll_serve_streams_an_upload_far_larger_than_max_request_bytes(tmp_path):
    config = write_config(tmp_path, embedded_worker=False, log_level="WARNING", max_request_bytes=64 * 1024)
    lines = [json.dumps({"n": i, "pad": "x" * 100}).encode() + b"\n" for i in range(100_000)]
    body = b"".join(lines)
    with serve("datasets_service:service", config, workers=1, threads=2) as (url, _):
        def chunks():
            for start in range(0, len(body), 1 << 20):
                yield body[start:start + (1 << 20)]
        sent = requests.post(f"{url}/datasets", data=chunks(), headers={"Content-Type": JSONL}, timeout=60)
        assert sent.status_code == 201, sent.text
        assert sent.json()["bytes"] == len(body) and sent.json()["records"] == 100_000
        whole = requests.post(f"{url}/datasets", data=body, headers={"Content-Type": JSONL}, timeout=60)
        assert whole.status_code == 201 and whole.json()["sha256"] == hashlib.sha256(body).hexdigest()
        bad = requests.post(f"{url}/datasets", data=body + b"oops\n", headers={"Content-Type": JSONL},
                            timeout=60)
        assert bad.status_code == 422 and bad.json()["error"]["line"] == 100_001
        total = requests.post(f"{url}/pipelines/total", json={"data": {"dataset": sent.json()["dataset_id"]}},
                              timeout=60)
        assert total.json() == {"results": sum(range(100_000))}
        # other bodies are still bounded by max_request_bytes
        big = requests.post(f"{url}/pipelines/total", json={"data": ["x" * 100_000]}, timeout=10)
        assert big.status_code == 413
        assert len(requests.get(f"{url}/datasets", timeout=5).json()["datasets"]) == 2


# -- jobs: workers read the dataset from the store -----------------------------------------------------

@pytest.fixture(params=["embedded", "rabbitmq"])
def stack(request, tmp_path):
    overrides = {}
    if request.param == "rabbitmq":
        overrides["worker_broker"] = request.getfixturevalue("rabbitmq_url")
    path, config = job_config(tmp_path, **overrides)
    yield path, config
    if config.worker_broker:
        delete_queue(config.worker_broker, config.worker_queue)


def test_workers_read_the_same_dataset_and_delete_waits_for_queued_jobs(stack):
    path, config = stack
    service = build_service(config)
    client = service.create_app().test_client()
    body = b"".join(b"w%d common\n" % (i % 10) for i in range(20000))
    dataset_id = upload(client, body, "text/plain").get_json()["dataset_id"]
    jobs = [client.post(f"/pipelines/{name}", json={"data": {"dataset": dataset_id}, "async": True})
            .get_json()["job_id"] for name in ("wordcount", "wordcount2", "wordcount")]
    refused = client.delete(f"/datasets/{dataset_id}")  # no worker yet: the jobs are queued
    assert refused.status_code == 409 and refused.get_json()["error"]["name"] == "DatasetInUse"
    assert set(refused.get_json()["error"]["jobs"]) == set(jobs)
    assert client.get(f"/datasets/{dataset_id}").get_json()["jobs"] == sorted(jobs)
    workers = [Worker(path, target="datasets_service:service").start() for _ in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        for job_id in jobs:
            record = wait_for_job(client, job_id, timeout=60)
            assert record["status"] == "succeeded", record
            counts = dict(record["results"])
            assert counts["common"] == 20000 and counts["w3"] == 2000
    finally:
        for worker in workers:
            worker.stop()
    assert client.delete(f"/datasets/{dataset_id}").status_code == 204


def test_a_dataset_gone_while_its_job_was_queued_fails_the_job_clearly(tmp_path):
    path, config = job_config(tmp_path)
    service = build_service(config)
    client = service.create_app().test_client()
    dataset_id = upload(client, b'{"n": 1}\n', JSONL).get_json()["dataset_id"]
    job_id = client.post("/pipelines/total", json={"data": {"dataset": dataset_id}, "async": True}
                         ).get_json()["job_id"]
    service.datasets().delete(dataset_id)  # as expiry or an operator would, behind the 409's back
    worker = Worker(path, target="datasets_service:service").start()
    try:
        worker.wait_ready()
        record = wait_for_job(client, job_id, timeout=60)
    finally:
        worker.stop()
    assert record["status"] == "failed"
    assert record["error"]["name"] == "DatasetNotFound"
    assert dataset_id in record["error"]["message"] and "deleted or expired" in record["error"]["message"]


# -- results by reference -----------------------------------------------------------------------------

def test_sync_results_to_a_dataset(tmp_path):
    _, client = app_of(tmp_path)
    source = upload(client, b'{"n": 1}\n{"n": 2}\n{"n": 3}\n').get_json()["dataset_id"]
    answer = client.post("/pipelines/double", json={"data": {"dataset": source}, "results_to": "dataset"})
    assert answer.status_code == 200
    results_id = answer.get_json()["results_dataset"]
    assert answer.get_json()["dataset"]["records"] == 3
    lines = client.get(f"/datasets/{results_id}/data").data.splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 2}, {"n": 4}, {"n": 6}]
    assert client.post("/pipelines/double", json={"data": [], "results_to": "s3://x"}).status_code == 400


def test_a_job_writes_its_results_as_a_dataset_and_its_record_and_callback_carry_the_id(
        tmp_path, callback_receiver):
    path, config = job_config(tmp_path)
    service = build_service(config)
    client = service.create_app().test_client()
    source = upload(client, b"".join(b'{"n": %d}\n' % i for i in range(1000))).get_json()["dataset_id"]
    job_id = client.post("/pipelines/double", json={
        "data": {"dataset": source}, "results_to": "dataset",
        "callback": f"{callback_receiver.url}/hook"}).get_json()["job_id"]
    worker = Worker(path, target="datasets_service:service").start()
    try:
        worker.wait_ready()
        record = wait_for_job(client, job_id, timeout=60)
        assert not callback_receiver.wait_for_jobs({job_id}, timeout=30)
    finally:
        worker.stop()
    delivered = callback_receiver.accepted()[0].json
    assert delivered["results_dataset"] == record["results_dataset"] and delivered["results"] is None
    assert record["status"] == "succeeded" and record["results"] is None, record
    meta = client.get(f"/datasets/{record['results_dataset']}").get_json()
    assert meta["records"] == 1000 and meta["job_id"] == job_id
    lines = client.get(f"/datasets/{meta['dataset_id']}/data").data.splitlines()
    assert [json.loads(line)["n"] for line in lines] == [2 * i for i in range(1000)]


# -- the Python client, against atoll serve ------------------------------------------------------------

def test_the_client_uploads_resumes_lists_runs_iterates_and_downloads(tmp_path):
    from atoll import Client, Dataset

    config, _ = job_config(tmp_path, max_request_bytes=64 * 1024)
    source = tmp_path / "comments.jsonl"
    source.write_bytes(b"".join(json.dumps({"n": i, "text": "x" * 50}).encode() + b"\n"
                                for i in range(50_000)))
    with serve("datasets_service:service", config, workers=1, threads=2) as (url, _):
        client = Client(url)
        dataset = client.upload(source, part_bytes=1024 * 1024)
        assert isinstance(dataset, Dataset) and dataset.meta["records"] == 50_000
        assert dataset.meta["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        # a cut upload: one part arrived, then the client went away; upload(resume=) sends the rest
        started = client.request("POST", "/datasets/uploads", {"format": "jsonl"}, expect=(201,))
        first = source.read_bytes()[:1_000_000]
        client.session.patch(f"{url}/datasets/uploads/{started['upload_id']}", data=first,
                             headers={"Upload-Offset": "0"})
        resumed = client.upload(source, resume=started["upload_id"], part_bytes=300_000)
        assert resumed.meta["sha256"] == dataset.meta["sha256"]
        texts = client.upload(iter(["to be or", "not to be"]), format="text")
        assert [d.dataset_id for d in client.datasets()] == [texts.dataset_id, resumed.dataset_id,
                                                             dataset.dataset_id]
        assert dict(client.run("wordcount", texts)) == {"to": 2, "be": 2, "or": 1, "not": 1}
        assert client.run("total", dataset) == sum(range(50_000))
        job = client.submit("double", dataset, results_to="dataset")
        results = job.result(timeout=60)
        assert isinstance(results, Dataset)
        assert job.record()["results_dataset"] == results.dataset_id
        for i, record in enumerate(results):  # streamed from the service
            assert record == {"n": 2 * i}
        assert i == 49_999
        target = tmp_path / "copy.jsonl"
        dataset.download(target)
        assert target.read_bytes() == source.read_bytes()
        texts.delete()
        assert texts.dataset_id not in [d.dataset_id for d in client.datasets()]


def test_datasets_record_their_owner_and_another_callers_is_a_404(tmp_path):
    # named callers are another part of the service; a stand-in sets flask.g.caller as its
    # authentication does (None, or an object with name, scopes and is_admin) from a test header
    from types import SimpleNamespace

    from flask import g, request

    service = build_service(Config({"state_dir": str(tmp_path / "state")}))
    app = service.create_app()

    @app.before_request
    def _caller() -> None:
        name = request.headers.get("X-Test-Caller")
        g.caller = (SimpleNamespace(name=name, scopes=["run", "read"], is_admin=name == "admin")
                    if name else None)

    client = app.test_client()
    ann = {"X-Test-Caller": "ann"}
    mine = upload(client, b"a b\n", "text/plain", **ann).get_json()
    assert mine["owner"] == "ann"
    bob = {"X-Test-Caller": "bob"}
    for answer in (client.get(f"/datasets/{mine['dataset_id']}", headers=bob),
                   client.get(f"/datasets/{mine['dataset_id']}/data", headers=bob),
                   client.delete(f"/datasets/{mine['dataset_id']}", headers=bob),
                   client.post("/pipelines/wordcount", headers=bob,
                               json={"data": {"dataset": mine["dataset_id"]}})):
        assert answer.status_code == 404 and answer.get_json()["error"]["name"] == "DatasetNotFound"
    assert client.get("/datasets", headers=bob).get_json()["datasets"] == []
    assert [d["dataset_id"] for d in client.get("/datasets", headers=ann).get_json()["datasets"]] == \
        [mine["dataset_id"]]
    admin = {"X-Test-Caller": "admin"}
    assert client.get(f"/datasets/{mine['dataset_id']}", headers=admin).status_code == 200
    run = client.post("/pipelines/wordcount", headers=ann, json={"data": {"dataset": mine["dataset_id"]}})
    assert run.get_json()["results"] == [["a", 1], ["b", 1]]


# -- results written as they are produced ----------------------------------------------------------------

@pytest.fixture(params=["serial", "local", "spark"])
def executor(request):
    """Each executor, cutting 1,000 elements into many chunks (Spark: into its partitions)."""
    from atoll.executors import LocalExecutor, SerialExecutor

    if request.param == "serial":
        return SerialExecutor(chunk_size=100)
    if request.param == "local":  # every chunk of 10 to the two workers
        return LocalExecutor(n_jobs=2, probe_seconds=0, min_parallel_seconds=0, max_chunk=10)
    return request.getfixturevalue("spark_local_executor")


def test_element_wise_results_are_in_the_store_before_the_last_element_is_made(tmp_path, executor):
    # Each record says how many bytes of results the store held when its function ran. Were the results
    # collected before being written, every record would say 0 (the data file is opened empty first).
    from atoll import Pipeline
    from atoll.service import Atoll
    from tests.datasets_service import results_seen

    service = Atoll(Config({"state_dir": str(tmp_path / "state")}))
    pipeline = Pipeline(name="seen").map(results_seen, kwargs=["store"]).filter(lambda r: r["n"] % 7)
    service.register_pipeline("/seen", pipeline, executor=executor)
    store = str(tmp_path / "state" / "datasets")
    data = range(1000) if executor.name == "spark" else (n for n in range(1000))  # Spark: its partitions
    dataset = service.run_to_dataset("seen", data, {"store": store})
    records = [json.loads(line) for line in service.datasets().open(dataset.dataset_id).read().splitlines()]
    assert [r["n"] for r in records] == [n for n in range(1000) if n % 7]
    assert dataset.records == len(records)
    assert records[0]["seen"] == 0 and records[-1]["seen"] > 100_000  # the first half (or more) written
    assert pipeline.run(range(1000), executor, store=store)[-1]["n"] == 999  # run() still a list


@pytest.mark.parametrize("pipeline", ["keyed-then-element-wise", "reduce", "sortBy", "to", "no stages"])
def test_streamed_results_equal_run_results_on_every_executor(executor, pipeline):
    from operator import add

    from atoll import Pipeline

    pipelines = {
        "keyed-then-element-wise": Pipeline().map(lambda n: (n % 5, n)).reduceByKey(add).mapValues(str),
        "reduce": Pipeline().map(lambda n: n * n).reduce(add),
        "sortBy": Pipeline().flatMap(lambda n: [n, -n]).sortBy(abs),
        "to": Pipeline().map(lambda n: n + 1).to(lambda xs: (min(xs), max(xs))),
        "no stages": Pipeline(),
    }
    data = list(range(300))
    expected = pipelines[pipeline].run(data, executor)
    streamed = list(executor.stream(pipelines[pipeline], data))
    if pipeline == "keyed-then-element-wise":  # key order not guaranteed across executors
        assert sorted(streamed) == sorted(expected)
    else:
        assert streamed == (list(expected) if isinstance(expected, list | tuple) else [expected])


def test_a_failure_half_way_through_streamed_results_keeps_nothing(tmp_path, executor):
    from atoll import Pipeline
    from atoll.service import Atoll

    def fails_late(n):
        if n == 900:
            raise KeyError(n)
        return n

    service = Atoll(Config({"state_dir": str(tmp_path / "state")}))
    service.register_pipeline("/late", Pipeline().map(fails_late), executor=executor)
    data = range(1000) if executor.name == "spark" else (n for n in range(1000))
    with pytest.raises(KeyError):
        service.run_to_dataset("late", data)
    assert stored(tmp_path) == []


def _fails_on_sevens(n):
    if n % 7 == 0:
        raise ValueError(n)
    return {"n": n}


def test_streamed_results_under_an_error_policy_keep_their_dead_letters(tmp_path, executor):
    from atoll import Pipeline
    from atoll.dead_letters import ErrorPolicy, TooManyErrors
    from atoll.service import Atoll

    service = Atoll(Config({"state_dir": str(tmp_path / "state")}))
    pipeline = Pipeline().map(_fails_on_sevens)
    service.register_pipeline("/sevens", pipeline, executor=executor)
    data = list(range(1000))
    outcome = service.run_to_dataset("sevens", data, errors=ErrorPolicy("collect"))
    expected = pipeline.run(data, executor, on_error="collect")
    assert outcome.skipped == expected.skipped == 143 and len(outcome.errors) == 143
    lines = service.datasets().open(outcome.results.dataset_id).read().splitlines()
    assert [json.loads(line) for line in lines] == expected.results
    with pytest.raises(TooManyErrors):  # found out after the last element: nothing is kept
        service.run_to_dataset("sevens", data, errors=ErrorPolicy("skip", max_errors=10))
    assert [f for f in stored(tmp_path) if f.endswith("/data")] == [f"{outcome.results.dataset_id}/data"]
    answer = service.create_app().test_client().post("/pipelines/sevens", json={
        "data": data, "results_to": "dataset", "on_error": "skip"}).get_json()
    assert answer["dataset"]["records"] == 857 and answer["element_errors"]["skipped"] == 143


def test_results_far_larger_than_the_memory_a_streamed_run_takes(tmp_path):
    import tracemalloc

    from atoll import Pipeline
    from atoll.executors import SerialExecutor
    from atoll.service import Atoll

    service = Atoll(Config({"state_dir": str(tmp_path / "state")}))
    service.register_pipeline("/big", Pipeline().map(lambda n: "x" * 2000 + str(n)),
                              executor=SerialExecutor(chunk_size=1000))
    tracemalloc.start()
    try:
        dataset = service.run_to_dataset("big", (n for n in range(30_000)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dataset.bytes > 60_000_000 and peak < 15_000_000, peak  # about 2 chunks' worth, not 60 MB
