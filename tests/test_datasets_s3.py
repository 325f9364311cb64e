"""The dataset store on S3: the same code over ``s3://`` through s3fs.

moto's standalone S3 server (``moto_server``, started once per session by tests.support.s3) stands in
for a real object store, as it does in s3fs's own test suite: s3fs talks HTTP to it exactly as it
would to AWS S3 or MinIO.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest

from atoll.config import Config
from tests.datasets_service import build_service

JSONL = "application/x-ndjson"


@pytest.fixture
def s3_config(s3, tmp_path):
    """A service whose datasets live in a new bucket of the session's S3 stand-in (tests.support.s3)."""
    config = Config({"state_dir": str(tmp_path / "state"), "datasets_url": f"s3://{s3.name}/datasets",
                     "datasets_storage_options": s3.storage_options})
    return config, s3.server.filesystem(), s3.name


def objects(fs, bucket) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.find(f"{bucket}/datasets"))


def test_uploads_listing_ranges_and_delete_on_s3(s3_config):
    config, fs, bucket = s3_config
    client = build_service(config).create_app().test_client()
    body = b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(20000))
    answer = client.post("/datasets", data=gzip.compress(body), content_type=JSONL,
                         headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 201, answer.get_json()
    meta = answer.get_json()
    assert meta["records"] == 20000 and meta["sha256"] == hashlib.sha256(body).hexdigest()
    dataset_id = meta["dataset_id"]
    assert fs.cat_file(f"{bucket}/datasets/{dataset_id}/data") == body  # in the bucket itself
    assert [d["dataset_id"] for d in client.get("/datasets").get_json()["datasets"]] == [dataset_id]
    part = client.get(f"/datasets/{dataset_id}/data", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == body[10:20]
    bad = client.post("/datasets", data=body + b"{oops\n", content_type=JSONL)
    assert bad.status_code == 422 and bad.get_json()["error"]["line"] == 20001
    assert objects(fs, bucket) == [f"{bucket}/datasets/{dataset_id}/data",
                                   f"{bucket}/datasets/{dataset_id}/meta.json"]  # nothing half-written
    assert client.delete(f"/datasets/{dataset_id}").status_code == 204
    assert objects(fs, bucket) == []


def test_a_resumable_upload_and_its_expiry_on_s3(s3_config):
    config, fs, bucket = s3_config
    service = build_service(config.replace(dataset_expires=2))
    client = service.create_app().test_client()
    upload_id = client.post("/datasets/uploads", json={"format": "text"}).get_json()["upload_id"]
    client.patch(f"/datasets/uploads/{upload_id}", data=b"a b\nc", headers={"Upload-Offset": "0"})
    client.patch(f"/datasets/uploads/{upload_id}", data=b" d\n", headers={"Upload-Offset": "5"})
    done = client.post(f"/datasets/uploads/{upload_id}/complete")
    assert done.status_code == 201 and done.get_json()["records"] == 2
    abandoned = client.post("/datasets/uploads", json={"format": "text"}).get_json()["upload_id"]
    client.patch(f"/datasets/uploads/{abandoned}", data=b"half", headers={"Upload-Offset": "0"})
    assert any("/uploads/" in name for name in objects(fs, bucket))
    time.sleep(2.2)
    assert service.datasets().sweep() == 2  # the expired dataset and the abandoned upload
    assert objects(fs, bucket) == []


def test_a_run_reads_an_s3_dataset_where_it_lies(s3_config):
    config, _, _ = s3_config
    client = build_service(config).create_app().test_client()
    dataset_id = client.post("/datasets", data=b'{"n": 1}\n{"n": 2}\n{"n": 39}\n',
                             content_type=JSONL).get_json()["dataset_id"]
    answer = client.post("/pipelines/total", json={"data": {"dataset": dataset_id}})
    assert answer.get_json() == {"results": 42}


def test_the_quota_and_results_written_as_produced_on_s3(s3_config):
    config, fs, bucket = s3_config
    client = build_service(config.replace(datasets_max_total_bytes=2000)).create_app().test_client()
    source = client.post("/datasets", data=b'{"n": 1}\n' * 100, content_type=JSONL).get_json()["dataset_id"]
    answer = client.post("/pipelines/double", json={"data": {"dataset": source}, "results_to": "dataset"})
    assert answer.status_code == 200, answer.get_json()
    results = answer.get_json()["results_dataset"]
    assert fs.cat_file(f"{bucket}/datasets/{results}/data") == b'{"n":2}\n' * 100
    refused = client.post("/datasets", data=b"x" * 400 + b"\n", content_type="text/plain")
    assert refused.status_code == 507 and refused.get_json()["error"]["available"] == 300
    assert objects(fs, bucket) == sorted(f"{bucket}/datasets/{d}/{name}" for d in (source, results)
                                         for name in ("data", "meta.json"))  # no reservation left
