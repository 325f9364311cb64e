"""Callback secrets checked at config load, ``atoll secret``, the signature round trip against the
reference ``standardwebhooks`` package over a real loopback receiver, and the SSRF guard on IPv4
addresses carried inside IPv6 ones."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from atoll import verify_callback
from atoll.config import load_config
from atoll.errors import ConfigError
from atoll.service.jobs.delivery import CallbackURLError, check_callback_url, post_callback

ROOT = Path(__file__).resolve().parent.parent


def new_secret() -> str:
    result = subprocess.run([sys.executable, "-m", "atoll", "secret"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_atoll_secret_prints_a_fresh_whsec_secret_of_32_random_bytes():
    first, second = new_secret(), new_secret()
    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[len("whsec_"):], validate=True)) == 32
        assert load_config(callback_secret=secret).callback_secret == secret


@pytest.mark.parametrize("secret, says", [
    ("whsec_abc", "padded base64"),        # the reference library pads it; delivery used to raise
    ("whsec_YWJj$$$$", "padded base64"),
    ("whsec_", "no key"),
    ("", "empty"),
])
def test_a_bad_secret_is_refused_at_config_load(tmp_path, secret, says):
    path = tmp_path / "atoll.yaml"
    path.write_text(json.dumps({"callback_secret": secret}))
    with pytest.raises(ConfigError, match=says) as caught:
        load_config(str(path))
    assert "callback_secret" in str(caught.value) and str(path) in str(caught.value)


@pytest.fixture
def delivered(callback_receiver):
    """Deliver one signed callback to a real loopback receiver; return (secret, headers, body)."""

    def deliver(secret: str):
        config = load_config(callback_allow_private=True, callback_secret=secret)
        body = json.dumps({"job_id": "job-42", "status": "succeeded", "results": [1, "é"]}).encode()
        callback_receiver.reset()
        assert post_callback(callback_receiver.url + "/hook", body, "job-42", config) == 200
        call = callback_receiver.calls[-1]
        return dict(call.headers), call.body

    return deliver


def test_a_whsec_secret_verifies_with_the_reference_library(delivered):
    secret = new_secret()
    headers, body = delivered(secret)
    assert Webhook(secret).verify(body, headers) == {"job_id": "job-42", "status": "succeeded",
                                                     "results": [1, "é"]}
    assert verify_callback(secret, headers, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"42", b"43"), headers)


def test_a_plain_secret_verifies_with_the_reference_library_only_as_bytes(delivered):
    secret = "a plain shared secret"
    headers, body = delivered(secret)
    assert Webhook(secret.encode("utf-8")).verify(body, headers)["job_id"] == "job-42"
    with pytest.raises(WebhookVerificationError):  # as a str it is taken for base64: what the docs say
        Webhook(secret).verify(body, headers)
    assert verify_callback(secret, headers, body)


def test_what_the_reference_library_signs_verifies_here():
    secret = new_secret()
    body = '{"job_id":"j"}'
    import time
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
    signature = Webhook(secret).sign("j", stamp, body)
    headers = {"webhook-id": "j", "webhook-timestamp": str(int(stamp.timestamp())),
               "webhook-signature": signature}
    assert verify_callback(secret, headers, body)


# -- SSRF: IPv4 inside IPv6 -----------------------------------------------------------------------


@pytest.mark.parametrize("url, why", [
    ("http://[2002:a9fe:a9fe::]/", "link-local (IPv4 169.254.169.254 in 6to4)"),
    ("http://[2002:7f00:1::]/", "loopback (IPv4 127.0.0.1 in 6to4)"),
    ("http://[2002:c0a8:0001::1]/", "private (IPv4 192.168.0.1 in 6to4)"),
    # Teredo: the client address is stored inverted (169.254.169.254 -> 5601:5601)
    ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", "link-local (IPv4 169.254.169.254 in Teredo)"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local (IPv4 169.254.169.254 in NAT64)"),
    ("http://[64:ff9b::10.0.0.1]/", "private (IPv4 10.0.0.1 in NAT64)"),
    ("http://[::ffff:169.254.169.254]/", "link-local (IPv4 169.254.169.254 in IPv4-mapped)"),
    ("http://[::169.254.169.254]/", "link-local (IPv4 169.254.169.254 in IPv4-compatible)"),
    ("http://[::127.0.0.1]/", "loopback (IPv4 127.0.0.1 in IPv4-compatible)"),
])
def test_ssrf_guard_looks_inside_ipv6(url, why):
    with pytest.raises(CallbackURLError) as caught:
        check_callback_url(url, load_config())
    assert why in str(caught.value)


def test_6to4_of_a_public_address_passes():
    assert check_callback_url("http://[2002:808:808::1]/", load_config()).address == "2002:808:808::1"
