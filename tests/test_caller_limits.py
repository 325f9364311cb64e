"""Per-caller rate limits and stored-bytes quotas against a real ``atoll serve`` (gunicorn, its embedded
worker and broker): a burst from many threads gets 429 RateLimited with Retry-After and recovers after
it, nothing of a refused request is submitted, the limit holds across web processes and services that
share Redis, a caller over its stored bytes is refused until it deletes a dataset, and every refusal is
counted in ``atoll_rejected_total{caller,reason}``.

The Redis trial needs a Redis server on 127.0.0.1:6379 (``ATOLL_TEST_REDIS_LIMITS`` for another URL;
it empties that database) and the ``redis`` client; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import eventually, job_config
from tests.support import serve as serve_target
from tests.support.redis_db import empty_redis

pytestmark = pytest.mark.slow

TOKENS = {"ann": "ann-token-6c02f1", "bob": "bob-token-1e9b7d", "root": "root-token-a40c55",
          "hoarder": "hoarder-token-3f8e0a", "capped": "capped-token-9d1b44"}
REDIS_URL = os.environ.get("ATOLL_TEST_REDIS_LIMITS", "redis://127.0.0.1:6379/14")
#: ann's rate: RATE requests in any PERIOD seconds
RATE, PERIOD = 10, 6


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def auth(name: str) -> dict:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


CALLERS = {"ann": {"tokens": [sha(TOKENS["ann"])], "scopes": ["run", "read"],
                   "rate_limit": f"{RATE} per {PERIOD} seconds"},
           "bob": {"tokens": [sha(TOKENS["bob"])], "scopes": ["run", "read"]},
           "root": {"tokens": [sha(TOKENS["root"])], "scopes": ["admin"], "rate_limit": "1000/second"},
           "hoarder": {"tokens": [sha(TOKENS["hoarder"])], "scopes": ["run", "read"],
                       "max_stored_bytes": 100},
           "capped": {"tokens": [sha(TOKENS["capped"])], "scopes": ["run", "read"], "max_jobs": 3}}


def serve(folder, web_processes: int = 2, **overrides):
    path, _ = job_config(folder, callers=CALLERS, caller_rate_limit="200/second", **overrides)
    return serve_target("async_service:service", path, workers=web_processes, threads=4,
                        log=folder / "serve.log",
                        ready=lambda url: requests.get(f"{url}/health", headers=auth("root"), timeout=2)
                        .json()["checks"]["workers"]["ok"], timeout=90)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The base URL of ``atoll serve async_service:service`` with one web process, whose rate limits
    count in its memory (``memory://``, the default)."""
    folder = tmp_path_factory.mktemp("limits")
    with serve(folder, web_processes=1) as (url, _):
        yield url


def burst(urls: list[str], who: str, count: int, threads: int = 8, pipeline: str = "double",
          **body) -> list[requests.Response]:
    """POST ``count`` asynchronous runs of ``pipeline`` as ``who`` from ``threads`` threads, spread over
    ``urls``; return the answers."""
    def one(i: int) -> requests.Response:
        return requests.post(f"{urls[i % len(urls)]}/pipelines/{pipeline}",
                             json={"data": [i], "async": True, **body}, headers=auth(who), timeout=30)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def rejected(url: str) -> dict[tuple[str, str], float]:
    """Return ``atoll_rejected_total`` of the service at ``url`` by (caller, reason)."""
    text = requests.get(f"{url}/metrics", headers=auth("root"), timeout=10).text
    return {(caller, reason): float(value) for caller, reason, value in re.findall(
        r'^atoll_rejected_total\{caller="([^"]*)",reason="([^"]*)"\} (\S+)$', text, flags=re.M)}


def jobs_of(url: str, caller: str) -> set[str]:
    answer = requests.get(f"{url}/jobs?limit=500&caller={caller}", headers=auth("root"), timeout=10)
    assert answer.status_code == 200, answer.text
    return {job["job_id"] for job in answer.json()["jobs"]}


def check_burst(answers: list[requests.Response], seconds: float) -> list[requests.Response]:
    """Assert a burst over ann's rate was cut to it; return the refusals."""
    codes = sorted({a.status_code for a in answers})
    assert codes == [202, 429], [a.text for a in answers if a.status_code not in (202, 429)][:3]
    accepted = sum(a.status_code == 202 for a in answers)
    windows = 1 + int(seconds // PERIOD)  # a slow burst may span a second window
    assert RATE <= accepted <= RATE * windows, (accepted, seconds)
    refused = [a for a in answers if a.status_code == 429]
    for answer in refused:
        assert 1 <= int(answer.headers["Retry-After"]) <= PERIOD
        error = answer.json()["error"]
        assert error["name"] == "RateLimited" and error["caller"] == "ann"
        assert error["limit"] == "rate_limit" and error["rate"] == f"{RATE} per {PERIOD} seconds"
    return refused


def test_a_burst_over_the_rate_limit_gets_429s_with_retry_after_and_recovers(served):
    url = served
    before = rejected(url).get(("ann", "rate_limit"), 0)
    started = time.monotonic()
    answers = burst([url], "ann", 4 * RATE)
    refused = check_burst(answers, time.monotonic() - started)
    assert requests.get(f"{url}/jobs", headers=auth("ann"), timeout=10).status_code == 429  # any route
    # nothing of a refused request was submitted: ann has exactly the accepted jobs
    accepted = {a.json()["job_id"] for a in answers if a.status_code == 202}
    assert jobs_of(url, "ann") == accepted
    # another caller's rate is its own; the probes, /health and /metrics are never limited
    assert requests.post(f"{url}/pipelines/double", json={"data": [1]}, headers=auth("bob"),
                         timeout=30).json() == {"results": [2]}
    for path in ("/livez", "/readyz", "/metrics", "/health") * 4:
        assert requests.get(url + path, headers=auth("ann"), timeout=10).status_code != 429, path
    # after Retry-After, ann is served again
    time.sleep(max(int(a.headers["Retry-After"]) for a in refused) + 0.5)
    again = requests.post(f"{url}/pipelines/double", json={"data": [3]}, headers=auth("ann"), timeout=30)
    assert again.status_code == 200 and again.json() == {"results": [6]}
    # every refusal was counted once, whichever web process refused it (+1: the GET /jobs above)
    counted = eventually(lambda: rejected(url).get(("ann", "rate_limit")), 10, what="the counter")
    assert counted - before == len(refused) + 1


def test_a_caller_over_its_stored_bytes_is_refused_until_it_deletes_a_dataset(served):
    url = served
    body = b"".join(b"%d\n" % i for i in range(20))  # 50 bytes
    headers = {**auth("hoarder"), "Content-Type": "application/x-ndjson"}
    first = requests.post(f"{url}/datasets", data=body, headers=headers, timeout=30)
    assert first.status_code == 201 and first.json()["bytes"] == len(body) == 50
    assert requests.post(f"{url}/datasets", data=body, headers=headers, timeout=30).status_code == 201
    refused = requests.post(f"{url}/datasets", data=body, headers=headers, timeout=30)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    error = refused.json()["error"]
    assert error["name"] == "QuotaExceeded" and error["limit"] == "max_stored_bytes"
    assert error["caller"] == "hoarder" and error["stored_bytes"] == 100 and "max_stored_bytes = 100" in \
        error["message"]
    # a submission stores its request, results and logs: refused too, and nothing queued
    submitted = requests.post(f"{url}/pipelines/double", json={"data": [1], "async": True},
                              headers=auth("hoarder"), timeout=30)
    assert submitted.status_code == 429 and submitted.json()["error"]["limit"] == "max_stored_bytes"
    assert jobs_of(url, "hoarder") == set()
    listed = requests.get(f"{url}/datasets", headers=auth("hoarder"), timeout=10).json()["datasets"]
    assert len(listed) == 2  # nothing of the refused upload was kept
    # other callers have no such limit (caller_max_stored_bytes is unset)
    assert requests.post(f"{url}/datasets", data=body * 4, headers={**headers, **auth("bob")},
                         timeout=30).status_code == 201
    deleted = requests.delete(f"{url}/datasets/{first.json()['dataset_id']}", headers=auth("hoarder"),
                              timeout=30)
    assert deleted.status_code in (200, 204), deleted.text
    assert requests.post(f"{url}/datasets", data=body, headers=headers, timeout=30).status_code == 201
    counts = rejected(url)
    assert counts[("hoarder", "stored_bytes")] == 2
    assert all(caller in (*CALLERS, "anonymous") for caller, _ in counts)


@pytest.fixture
def redis_url():
    yield from empty_redis(REDIS_URL)


def test_the_rate_limit_holds_across_web_processes_and_services_sharing_redis(tmp_path, redis_url):
    """Two services (as on two hosts), two web processes each: one caller's burst spread over both is
    cut to its one rate, not four times it as four separate counts would allow."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shared = {"rate_limit_storage_url": redis_url, "worker_queue": f"atoll-test-{uuid.uuid4().hex[:12]}"}
    with serve(tmp_path / "a", **shared) as (first, _), serve(tmp_path / "b", **shared) as (second, _):
        started = time.monotonic()
        answers = burst([first, second], "ann", 6 * RATE, threads=12)
        check_burst(answers, time.monotonic() - started)
        served_by = {url: sum(a.status_code == 202 and a.json()["status_url"].startswith(url)
                              for a in answers) for url in (first, second)}
        assert sum(served_by.values()) == sum(a.status_code == 202 for a in answers)
        counted = sum(eventually(lambda u=u: rejected(u).get(("ann", "rate_limit")), 10, what="the counter")
                      for u in (first, second))
        assert counted == sum(a.status_code == 429 for a in answers)


def test_without_callers_each_client_address_has_the_rate_and_counts_as_anonymous(tmp_path):
    from atoll import Atoll, Pipeline
    from atoll.config import load_config
    from atoll.service.metrics import REJECTED

    service = Atoll(load_config(state_dir=str(tmp_path / "state"), embedded_worker=False,
                                caller_rate_limit="3 per 10 seconds"))
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    client = service.create_app().test_client()
    before = REJECTED.labels("anonymous", "rate_limit")._value.get()

    def run(address: str):
        return client.post("/pipelines/double", json={"data": [1]}, environ_base={"REMOTE_ADDR": address})

    assert [run("10.0.0.1").status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    refused = run("10.0.0.1")
    assert refused.json["error"]["caller"] == "anonymous" and "10.0.0.1" in refused.json["error"]["message"]
    assert [run("10.0.0.2").status_code for _ in range(3)] == [200] * 3  # another address, another count
    assert client.get("/livez", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert REJECTED.labels("anonymous", "rate_limit")._value.get() - before == 3


def test_a_jobs_results_dataset_belongs_to_its_caller_and_counts_in_its_stored_bytes(served):
    url = served
    answer = requests.post(f"{url}/pipelines/double", json={"data": [1, 2, 3], "async": True,
                                                            "results_to": "dataset"},
                           headers=auth("bob"), timeout=30)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]

    def done():
        record = requests.get(f"{url}/jobs/{job_id}", headers=auth("bob"), timeout=10).json()
        return record if record["status"] in ("succeeded", "failed") else None

    record = eventually(done, 60, what="the job to finish")
    assert record["status"] == "succeeded", record
    dataset = requests.get(f"{url}/datasets/{record['results_dataset']}", headers=auth("bob"), timeout=10)
    assert dataset.status_code == 200 and dataset.json()["owner"] == "bob"
    assert requests.get(f"{url}/datasets/{record['results_dataset']}", headers=auth("hoarder"),
                        timeout=10).status_code == 404
    # the hoarder, over its bytes, cannot have a synchronous run's results stored either
    refused = requests.post(f"{url}/pipelines/double", json={"data": [1], "results_to": "dataset"},
                            headers=auth("hoarder"), timeout=30)
    assert refused.status_code == 429 and refused.json()["error"]["limit"] == "max_stored_bytes"


def test_the_job_quota_holds_under_a_burst_across_web_processes(tmp_path):
    """Twelve submissions at once from twelve threads, over two web processes, by a caller whose
    max_jobs is 3: exactly three jobs are queued (the count and the new record are one step under the
    caller's lock in the shared job store), the nine others get 429, and nothing of them is kept."""
    with serve(tmp_path, web_processes=2) as (url, _):
        answers = burst([url], "capped", 12, threads=12, pipeline="nap", kwargs={"seconds": 3})
        codes = sorted(a.status_code for a in answers)
        assert codes == [202] * 3 + [429] * 9, [a.text for a in answers if a.status_code != 429]
        accepted = {a.json()["job_id"] for a in answers if a.status_code == 202}
        assert jobs_of(url, "capped") == accepted
        assert all(a.json()["error"]["limit"] == "max_jobs" for a in answers if a.status_code == 429)
