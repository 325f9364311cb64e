"""Named callers with scopes, against a real ``atoll serve`` (gunicorn, its embedded worker and broker):
each caller sees, cancels and re-runs only its own jobs (another's id is a 404), an admin sees and
filters all, a missing scope is a 403 naming it, two tokens of one caller work during a rotation, and
no token is ever written to a log or a record."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from atoll.errors import ConfigError
from tests.support import eventually, job_config
from tests.support import serve as serve_target
from tests.support.serving import ROOT

pytestmark = pytest.mark.slow

TOKENS = {"ann": "ann-token-4f1d0c", "bob": "bob-token-9a7e22", "root": "root-token-51b3aa",
          "reader": "reader-token-0d6c9e", "legacy": "legacy-token-77c1f0", "ann-new": "ann-rotated-e3b8d1",
          "capped": "capped-token-2b9f41"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def auth(name: str) -> dict:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def callers(ann_tokens: tuple[str, ...] = ("ann",)) -> dict:
    return {"ann": {"tokens": [sha(TOKENS[t]) for t in ann_tokens], "scopes": ["run", "read"]},
            "bob": {"tokens": [sha(TOKENS["bob"])], "scopes": ["run", "read"]},
            "root": {"tokens": [sha(TOKENS["root"])], "scopes": ["admin"]},
            "reader": {"tokens": [sha(TOKENS["reader"])], "scopes": ["read"]},
            "capped": {"tokens": [sha(TOKENS["capped"])], "scopes": ["run", "read"], "max_jobs": 1}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, folder) of ``atoll serve async_service:service`` with four callers and a legacy token."""
    folder = tmp_path_factory.mktemp("callers")
    path, _ = job_config(folder, callers=callers(), auth_tokens=[TOKENS["legacy"]], caller_max_jobs=50)
    def ready(url: str) -> bool:
        health = requests.get(f"{url}/health", headers=auth("root"), timeout=2).json()
        return health["checks"]["workers"]["ok"]

    with serve_target("async_service:service", path, workers=2, threads=4, ready=ready,
                      log=folder / "serve.log", timeout=90) as (url, _):
        yield url, folder


def submit(url: str, who: str, name: str = "double", data=(1, 2), **body) -> str:
    answer = requests.post(f"{url}/pipelines/{name}", json={"data": list(data), "async": True, **body},
                           headers=auth(who), timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def finished(url: str, who: str, job_id: str) -> dict:
    def done():
        record = requests.get(f"{url}/jobs/{job_id}", headers=auth(who), timeout=10).json()
        return record if record["status"] in ("succeeded", "failed", "cancelled") else None
    return eventually(done, 60, what=f"job {job_id} to finish")


def listed(url: str, who: str, query: str = "") -> set[str]:
    answer = requests.get(f"{url}/jobs?limit=500{query}", headers=auth(who), timeout=10)
    assert answer.status_code == 200, answer.text
    return {job["job_id"] for job in answer.json()["jobs"]}


def test_callers_see_cancel_and_rerun_only_their_own_jobs(served, callback_receiver):
    url, _ = served
    ann_job = submit(url, "ann", callback=callback_receiver.url)
    bob_job = submit(url, "bob")
    assert finished(url, "ann", ann_job)["owner"] == "ann"
    assert finished(url, "bob", bob_job)["results"] == [2, 4]
    # each lists its own only; the other's id is an unknown id: 404, not 403
    assert ann_job in listed(url, "ann") and bob_job not in listed(url, "ann")
    assert bob_job in listed(url, "bob") and ann_job not in listed(url, "bob")
    for path in (f"/jobs/{bob_job}", f"/jobs/{bob_job}/results", f"/jobs/{bob_job}/logs"):
        answer = requests.get(url + path, headers=auth("ann"), timeout=10)
        assert answer.status_code == 404, (path, answer.text)
        unknown = requests.get(url + path.replace(bob_job, bob_job[:-4] + "0000"), headers=auth("ann"),
                               timeout=10)
        assert answer.json()["error"]["name"] == unknown.json()["error"]["name"] == "UnknownJob"
    assert requests.post(f"{url}/jobs/{bob_job}/rerun", headers=auth("ann"), timeout=10).status_code == 404
    assert requests.delete(f"{url}/jobs/{bob_job}", headers=auth("ann"), timeout=10).status_code == 404
    assert requests.get(f"{url}/jobs/{bob_job}/results", headers=auth("bob"), timeout=10).json() == \
        {"results": [2, 4]}
    # a caller re-runs its own job; the new job is its own too
    again = requests.post(f"{url}/jobs/{ann_job}/rerun", headers=auth("ann"), timeout=10)
    assert again.status_code == 202, again.text
    assert finished(url, "ann", again.json()["job_id"])["owner"] == "ann"
    # a caller cancels its own job, not another's
    slow = submit(url, "bob", "nap", [1], kwargs={"seconds": 30})
    assert requests.delete(f"{url}/jobs/{slow}", headers=auth("ann"), timeout=10).status_code == 404
    cancelled = requests.delete(f"{url}/jobs/{slow}", headers=auth("bob"), timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # the admin sees all and filters by caller; the legacy auth_tokens are the admin caller "default"
    assert {ann_job, bob_job, slow} <= listed(url, "root")
    assert {ann_job, bob_job} <= listed(url, "legacy")
    only_bob = listed(url, "root", "&caller=bob")
    assert {bob_job, slow} <= only_bob and ann_job not in only_bob
    assert requests.get(f"{url}/jobs/{ann_job}", headers=auth("root"), timeout=10).json()["owner"] == "ann"
    legacy_job = submit(url, "legacy")
    assert finished(url, "root", legacy_job)["owner"] == "default"
    # the callback names the caller, never its token
    assert not callback_receiver.wait_for_jobs({ann_job}, timeout=30)
    call = [c for c in callback_receiver.accepted() if c.json["job_id"] == ann_job][0]
    headers = {k.lower(): v for k, v in call.headers.items()}
    assert headers["x-atoll-caller"] == "ann"
    assert TOKENS["ann"] not in str(call.headers) and TOKENS["ann"].encode() not in call.body


def test_a_missing_scope_is_a_403_naming_it_and_a_bad_token_a_401(served):
    url, _ = served
    answer = requests.post(f"{url}/pipelines/double", json={"data": [1], "async": True},
                           headers=auth("reader"), timeout=10)
    assert answer.status_code == 403
    assert "'run'" in answer.json()["error"]["message"] and "reader" in answer.json()["error"]["message"]
    assert requests.get(f"{url}/jobs", headers=auth("reader"), timeout=10).status_code == 200
    metrics = requests.get(f"{url}/metrics", headers=auth("ann"), timeout=10)
    assert metrics.status_code == 403 and "'admin'" in metrics.json()["error"]["message"]
    assert requests.get(f"{url}/metrics", headers=auth("root"), timeout=10).status_code == 200
    wrong = requests.get(f"{url}/jobs", headers={"Authorization": "Bearer " + sha(TOKENS["ann"])}, timeout=10)
    assert wrong.status_code == 401  # the hash in the configuration is not a token
    assert requests.get(f"{url}/jobs", timeout=10).status_code == 401


def test_a_caller_over_its_job_quota_gets_a_429_until_a_job_finishes(served):
    url, _ = served
    first = submit(url, "capped", "nap", [1], kwargs={"seconds": 4})
    refused = requests.post(f"{url}/pipelines/double", json={"data": [1], "async": True},
                            headers=auth("capped"), timeout=10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    error = refused.json()["error"]
    assert error["name"] == "QuotaExceeded" and error["limit"] == "max_jobs"
    assert "max_jobs = 1" in error["message"]
    assert listed(url, "capped") == {first}  # nothing half-submitted
    metrics = requests.get(f"{url}/metrics", headers=auth("root"), timeout=10).text
    assert 'atoll_rejected_total{caller="capped",reason="max_jobs"} 1.0' in metrics
    assert submit(url, "bob", "double")  # another caller's quota (caller_max_jobs: 50) is its own
    finished(url, "capped", first)
    second = submit(url, "capped", "double")
    assert finished(url, "capped", second)["results"] == [2, 4]


def test_no_token_is_in_the_logs_or_the_state_dir(served):
    url, folder = served
    job_id = submit(url, "bob", "chatty", ["hello"])
    finished(url, "bob", job_id)
    requests.get(f"{url}/jobs/{job_id}/logs", headers=auth("bob"), timeout=10)
    line = f"GET /jobs/{job_id}/logs"  # the access log names the caller (written after the answer)
    eventually(lambda: line in (folder / "serve.log").read_text(), 10, what="the access log line")
    logged = [x for x in (folder / "serve.log").read_text().splitlines() if line in x]
    assert logged and " caller=bob id=" in logged[0]
    files = [folder / "serve.log", *(p for p in (folder / "state").rglob("*") if p.is_file())]
    assert len(files) > 3
    for path in files:
        data = path.read_bytes()
        for name, token in TOKENS.items():
            assert token.encode() not in data, f"{name}'s token in {path}"


def test_two_tokens_of_one_caller_work_during_a_rotation(tmp_path):
    def serve_with(ann_tokens):
        path, _ = job_config(tmp_path, callers=callers(ann_tokens))
        return serve_target("async_service:service", path, workers=1, threads=2,
                            ready=lambda url: requests.get(f"{url}/livez", timeout=2).ok,
                            log=tmp_path / "serve.log", timeout=90)

    with serve_with(("ann", "ann-new")) as (url, _):
        old = submit(url, "ann")
        for who in ("ann", "ann-new"):  # the same caller with either token: its jobs are shared
            answer = requests.get(f"{url}/jobs/{old}", headers=auth(who), timeout=10)
            assert answer.status_code == 200 and answer.json()["owner"] == "ann"
    with serve_with(("ann-new",)) as (url, _):
        assert requests.get(f"{url}/jobs", headers=auth("ann"), timeout=10).status_code == 401
        assert requests.get(f"{url}/jobs/{old}", headers=auth("ann-new"), timeout=10).json()["owner"] == "ann"


def test_atoll_token_prints_a_token_and_the_line_with_its_hash(tmp_path):
    done = subprocess.run([sys.executable, "-m", "atoll", "token", "--name", "reporting", "--scopes",
                           "run,read"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token, line = done.stdout.splitlines()
    assert line.strip() == f"reporting: {{tokens: [{sha(token)}], scopes: [run, read]}}"
    import yaml

    from atoll.config import load_config
    path = tmp_path / "conf.yaml"
    path.write_text("callers:\n" + line + "\n")
    assert load_config(str(path)).callers["reporting"]["tokens"] == [sha(token)]
    bad = subprocess.run([sys.executable, "-m", "atoll", "token", "--scopes", "run,root"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "scopes" in bad.stderr
    assert yaml.safe_load(path.read_text())  # the line is YAML


@pytest.mark.parametrize("callers_value, words", [
    ({"ann": {"tokens": ["plain-token"], "scopes": ["run"]}}, ["callers.ann.tokens", "SHA-256"]),
    ({"ann": {"tokens": [sha("a"), sha("b"), sha("c")], "scopes": ["run"]}}, ["1 to 2"]),
    ({"ann": {"tokens": [sha("a")], "scopes": ["root"]}}, ["callers.ann.scopes", "run, read, admin"]),
    ({"ann": {"tokens": [sha("a")], "scope": ["run"]}}, ["unknown keys", "scope"]),
    ({"a b": {"tokens": [sha("a")], "scopes": ["run"]}}, ["caller's name"]),
    ({"ann": {"tokens": [sha("a")], "scopes": ["run"], "rate_limit": "fast"}},
     ["callers.ann.rate_limit", "50/second"]),
    ({"ann": {"tokens": [sha("a")], "scopes": ["run"], "max_stored_bytes": -1}},
     ["callers.ann.max_stored_bytes", "at least 0"]),
])
def test_bad_callers_are_config_errors_that_never_echo_a_token(callers_value, words):
    from atoll.config import load_config
    with pytest.raises(ConfigError) as error:
        load_config(callers=callers_value)
    for word in words:
        assert word in str(error.value)
    assert "plain-token" not in str(error.value)


@pytest.mark.parametrize("rate", ["50/second", "10 per 5 seconds", "20/second;600/minute", "1/day"])
def test_rate_limits_are_what_flask_limiter_reads(rate):
    from limits import parse_many

    from atoll.config import load_config
    assert load_config(caller_rate_limit=rate).caller_rate_limit == rate and parse_many(rate)
    with pytest.raises(ConfigError, match="caller_rate_limit"):
        load_config(caller_rate_limit=rate + " please")


def test_rate_limits_counted_in_each_of_several_web_processes_warn(capsys):
    from atoll.cli import warn_rates_per_process
    from atoll.config import load_config

    assert not warn_rates_per_process(load_config(), 4)  # no rate limit
    assert not warn_rates_per_process(load_config(caller_rate_limit="5/second"), 1)
    assert not warn_rates_per_process(load_config(caller_rate_limit="5/second",
                                                  rate_limit_storage_url="redis://127.0.0.1:6379/0"), 4)
    limited = {"ann": {**callers()["ann"], "rate_limit": "1/second"}}
    assert warn_rates_per_process(load_config(callers=limited), 2)
    assert "2 times its rate" in capsys.readouterr().err


def test_serving_a_public_address_without_tokens_warns(tmp_path):
    from atoll.cli import warn_open_bind
    from atoll.config import load_config

    assert not warn_open_bind(load_config(), "127.0.0.1") and not warn_open_bind(load_config(), "::1")
    assert not warn_open_bind(load_config(callers=callers()), "0.0.0.0")
    path = Path(tmp_path) / "err"
    with open(path, "w") as err:
        done = subprocess.run([sys.executable, "-c", "from atoll.cli import warn_open_bind; "
                               "from atoll.config import load_config; "
                               "print(warn_open_bind(load_config(), '0.0.0.0'))"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, timeout=60)
    assert done.stdout.strip() == "True"
    assert "WARNING" in path.read_text() and "0.0.0.0" in path.read_text()
