"""atoll as a user installs it: a wheel in a fresh virtualenv with only the extras asked for."""

from __future__ import annotations

import json
import subprocess

import pytest

from atoll.service.callbacks import signature_headers
from tests.served import serving
from tests.venvs import build_wheel, clean_env, make_venv

pytestmark = pytest.mark.slow

LIGHT_CLIENT = r"""
import importlib.util, json, sys

import atoll
from atoll import Client, Job, RemoteError, verify_callback

absent = [m for m in ("flask", "celery", "kombu", "gunicorn", "pyspark")
          if importlib.util.find_spec(m) is not None]
assert not absent, f"installed although not asked for: {absent}"
loaded = [m for m in ("flask", "celery", "kombu", "werkzeug") if m in sys.modules]
assert not loaded, f"imported: {loaded}"

url, signed = sys.argv[1], json.loads(sys.argv[2])
with Client(url) as client:
    assert client.run("double", [1, 2]) == [2, 4]
    try:
        client.run("lookup", ["z"])
    except RemoteError as exc:
        error = {"name": exc.name, "status": exc.status, "stage": exc.stage}
    job = Job(client, "no-such-job")
assert verify_callback("s3cret", signed["headers"], signed["body"])
assert not verify_callback("other", signed["headers"], signed["body"])
print(json.dumps({"file": atoll.__file__, "error": error}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_client_and_verify_callback_need_only_the_client_extra(wheel, tmp_path):
    python = make_venv(tmp_path / "venv", f"{wheel}[client]")
    conf = tmp_path / "atoll.yaml"
    conf.write_text(f"state_dir: {tmp_path / 'state'}\nembedded_worker: false\n")
    body = b'{"job_id":"j1","status":"succeeded","results":[2]}'
    signed = {"headers": signature_headers("s3cret", "j1", body), "body": body.decode()}
    with serving("served:service", conf=str(conf), workers=1) as url:
        done = subprocess.run([str(python), "-c", LIGHT_CLIENT, url, json.dumps(signed)],
                              capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["file"].startswith(str(tmp_path / "venv"))  # the installed copy, not this tree
    assert report["error"]["name"] == "KeyError" and report["error"]["status"] == 500
    assert report["error"]["stage"]["function"] == "lookup"
