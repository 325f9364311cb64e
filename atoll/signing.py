"""Callback signatures (Standard Webhooks): how the service signs a delivery and how a receiver checks it.

Needs nothing beyond the standard library, so a webhook receiver can ``from atoll import verify_callback``
without installing the service's extras.

A delivery carries ``webhook-id`` (the job id, the same on every retry), ``webhook-timestamp`` (Unix
seconds) and, when ``callback_secret`` is set, ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``. A secret of the form ``whsec_<base64>`` is used as the decoded key bytes, any other
secret as its UTF-8 bytes.

>>> headers = signature_headers("s3cret", "job-1", b'{"status":"succeeded"}')
>>> verify_callback("s3cret", headers, b'{"status":"succeeded"}')
True
>>> verify_callback("s3cret", headers, b'{"status":"failed"}')
False
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = ["sign", "signature_headers", "verify_callback"]


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """Return the Standard Webhooks signature ``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def signature_headers(secret: str | None, msg_id: str, body: bytes,
                      timestamp: int | None = None) -> dict[str, str]:
    """Return the ``webhook-*`` headers of one delivery (no signature when ``secret`` is None)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts)}
    if secret:
        headers["webhook-signature"] = sign(secret, msg_id, ts, body)
    return headers


def verify_callback(secret: str, headers: Mapping[str, str], body: bytes | str,
                    tolerance: float = 300) -> bool:
    """Return True when a callback's ``webhook-signature`` matches and its timestamp is fresh.

    ``headers`` may be any mapping (names compared case-insensitively), ``body`` the raw request body.
    Comparison is constant-time; a timestamp more than ``tolerance`` seconds away from now is refused.
    """
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp and signatures and secret):
        return False
    try:
        ts = int(stamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    expected = sign(secret, msg_id, ts, raw)
    return any(hmac.compare_digest(candidate.encode(), expected.encode())
               for candidate in signatures.split() if candidate.startswith("v1,"))
