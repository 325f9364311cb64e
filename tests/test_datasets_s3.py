"""The dataset store on S3: the same code over ``s3://`` through s3fs.

moto's standalone S3 server (``moto_server``, started here on a loopback port, in memory) stands in
for a real object store, as it does in s3fs's own test suite: s3fs talks HTTP to it exactly as it
would to AWS S3 or MinIO.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from atoll.config import Config
from atoll.sources import read_jsonl
from tests.datasets_service import build_service
from tests.support import eventually, free_port

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")

JSONL = "application/x-ndjson"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "AWS_ACCESS_KEY_ID": "test",
                                    "AWS_SECRET_ACCESS_KEY": "test"})
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: requests.get(url, timeout=1).status_code < 500, 30, what="moto_server",
                   ignoring=(requests.RequestException,))
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def s3_config(s3_endpoint, tmp_path):
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": s3_endpoint,
                                                                  "region_name": "us-east-1"}}
    bucket = f"atoll-{uuid.uuid4().hex[:10]}"
    assert requests.put(f"{s3_endpoint}/{bucket}", timeout=10).status_code == 200  # a new bucket
    fs = s3fs.S3FileSystem(**options)
    config = Config({"state_dir": str(tmp_path / "state"), "datasets_url": f"s3://{bucket}/datasets",
                     "datasets_storage_options": options})
    return config, fs, bucket


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


@pytest.mark.skipif("storage_options" not in inspect.signature(read_jsonl).parameters,
                    reason="read_jsonl over fsspec URLs with storage_options is not in this tree yet")
def test_a_run_reads_an_s3_dataset_where_it_lies(s3_config):
    config, _, _ = s3_config
    client = build_service(config).create_app().test_client()
    dataset_id = client.post("/datasets", data=b'{"n": 1}\n{"n": 2}\n{"n": 39}\n',
                             content_type=JSONL).get_json()["dataset_id"]
    answer = client.post("/pipelines/total", json={"data": {"dataset": dataset_id}})
    assert answer.get_json() == {"results": 42}
