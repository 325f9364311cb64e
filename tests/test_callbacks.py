"""Callback signing, verification, the SSRF guard and single delivery attempts against a real loopback
HTTP receiver (no worker needed)."""

from __future__ import annotations

import json
import time

import pytest

from atoll import verify_callback
from atoll.config import load_config
from atoll.service.jobs import delivery as callbacks
from atoll.service.jobs.delivery import (
    CallbackURLError,
    DeliveryError,
    Target,
    backoff_delay,
    check_callback_url,
    post_callback,
    sign,
    signature_headers,
)
from tests.async_service import build_service
from tests.support import SECRET, job_config

# the published Standard Webhooks test vector
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_standard_webhooks_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_verify_accepts_fresh_and_refuses_stale_or_tampered():
    now = int(time.time())
    body = b'{"job_id":"j","results":[1]}'
    headers = signature_headers(SECRET, "job-1", body, timestamp=now)
    assert verify_callback(SECRET, headers, body)
    assert verify_callback(SECRET, {k.upper(): v for k, v in headers.items()}, body.decode())
    assert not verify_callback(SECRET, headers, body + b" ")
    assert not verify_callback(SECRET, {**headers, "webhook-id": "job-2"}, body)
    assert not verify_callback("whsec_" + "B" * 40, headers, body)
    assert not verify_callback(SECRET, {k: v for k, v in headers.items() if k != "webhook-signature"},
                               body)
    stale = signature_headers(SECRET, "job-1", body, timestamp=now - 301)
    assert not verify_callback(SECRET, stale, body)
    assert verify_callback(SECRET, stale, body, tolerance=600)
    future = signature_headers(SECRET, "job-1", body, timestamp=now + 400)
    assert not verify_callback(SECRET, future, body)
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert verify_callback(SECRET, rotated, body)
    assert not verify_callback(SECRET, {**headers, "webhook-timestamp": "soon"}, body)


def test_no_signature_header_without_a_secret():
    headers = signature_headers(None, "job-1", b"{}")
    assert set(headers) == {"webhook-id", "webhook-timestamp"}


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://[fd00::1]/", "unique-local"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://100.64.0.1/", "non-public"),
])
def test_ssrf_guard_refuses_internal_addresses(url, why):
    with pytest.raises(CallbackURLError, match=why):
        check_callback_url(url, load_config())


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "http:///nohost",
                                 "http://user:pw@93.184.216.34/", "not a url", 42])
def test_malformed_callback_urls_are_refused(url):
    with pytest.raises(CallbackURLError):
        check_callback_url(url, load_config())


def test_public_literal_address_passes_without_connecting():
    target = check_callback_url("https://93.184.216.34:8443/hook?a=1", load_config())
    assert target == Target("https", "93.184.216.34", 8443, "/hook?a=1", "93.184.216.34")


def test_allowances_open_the_guard():
    assert check_callback_url("http://127.0.0.1:9/x", load_config(callback_allow_private=True))
    allowed = load_config(callback_allowed_hosts=["localhost"])
    assert check_callback_url("http://localhost:9/x", allowed).address in ("127.0.0.1", "::1")
    with pytest.raises(CallbackURLError):
        check_callback_url("http://127.0.0.2:9/x", allowed)
    by_address = load_config(callback_allowed_hosts=["10.0.0.7"])
    assert check_callback_url("http://10.0.0.7/x", by_address).address == "10.0.0.7"


def test_submit_refuses_internal_callbacks_with_400(tmp_path):
    _, config = job_config(tmp_path, callback_allow_private=False)
    client = build_service(config).create_app().test_client()
    for url in ("http://127.0.0.1:5000/hook", "http://169.254.169.254/", "http://[fd12::5]/x"):
        answer = client.post("/pipelines/double", json={"data": [1], "callback": url})
        assert answer.status_code == 400
        assert answer.get_json()["error"]["name"] == "CallbackRefused"
    assert not list((tmp_path / "state" / "broker" / "queue").glob("*.msg"))


def test_delivery_checks_again_at_connect_time(callback_receiver):
    # accepted at submit under one config, the worker's config refuses it: nothing is sent
    config = load_config(callback_allow_private=False)
    with pytest.raises(CallbackURLError):
        post_callback(callback_receiver.url, b"{}", "job-1", config)
    assert callback_receiver.calls == []


def test_connection_goes_to_the_pinned_address(callback_receiver):
    # the URL's host never resolves; the connection goes to the checked address, Host names the URL's
    target = Target("http", "callback.invalid", callback_receiver.port, "/pinned", "127.0.0.1")
    conn = callbacks._PinnedHTTPConnection(target, timeout=5)
    conn.request("POST", target.path, body=b"{}", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()
    assert callback_receiver.calls[0].path == "/pinned"
    assert callback_receiver.calls[0].headers["host"] == f"callback.invalid:{callback_receiver.port}"


def test_one_delivery_posts_signed_json(callback_receiver):
    config = load_config(callback_allow_private=True, callback_secret=SECRET)
    body = json.dumps({"job_id": "job-9", "status": "succeeded"}).encode()
    assert post_callback(callback_receiver.url + "/in", body, "job-9", config) == 200
    assert post_callback(callback_receiver.url + "/in", body, "job-9", config) == 200  # kept alive
    first, second = callback_receiver.calls
    assert first.body == body and first.headers["webhook-id"] == "job-9"
    assert verify_callback(SECRET, first.headers, first.body)
    assert verify_callback(SECRET, second.headers, second.body)


@pytest.mark.parametrize("status", [500, 404, 302])
def test_non_2xx_is_a_failed_delivery_and_redirects_are_not_followed(callback_receiver, status):
    config = load_config(callback_allow_private=True)
    callback_receiver.fail_with(status)
    with pytest.raises(DeliveryError, match=str(status)):
        post_callback(callback_receiver.url + "/in", b"{}", "job-1", config)
    assert [c.path for c in callback_receiver.calls] == ["/in"]


def test_receiver_down_is_a_failed_delivery(callback_receiver):
    config = load_config(callback_allow_private=True, callback_timeout=2.0)
    assert post_callback(callback_receiver.url, b"{}", "job-1", config) == 200
    callback_receiver.down()
    with pytest.raises(DeliveryError):
        post_callback(callback_receiver.url, b"{}", "job-1", config)
    callback_receiver.up()
    assert post_callback(callback_receiver.url, b"{}", "job-1", config) == 200


def test_backoff_doubles_with_jitter_and_a_cap():
    config = load_config(callback_backoff=1.0, callback_backoff_max=10.0)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        delays = [backoff_delay(retry, config) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
