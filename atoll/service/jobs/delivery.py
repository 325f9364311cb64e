"""Callback delivery: the POST of a job's outcome to the caller's URL, signed, guarded and retried.

* **Signing** follows Standard Webhooks: headers ``webhook-id`` (the job id, the same on every retry,
  so receivers can de-duplicate), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
  (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``) when ``callback_secret`` is set. A secret of the
  form ``whsec_<base64>`` is used as the decoded key bytes, any other secret as its UTF-8 bytes.
  Receivers check a delivery with :func:`verify_callback` (defined in :mod:`atoll.signing`, which
  needs no service extras).
* **SSRF guard**: a callback URL must be http(s) and its host must resolve only to public addresses —
  loopback, private, link-local (169.254.169.254), unique-local and other non-global addresses are
  refused, IPv4 addresses inside IPv6 ones too (IPv4-mapped and -compatible, 6to4, Teredo, NAT64),
  unless ``callback_allow_private`` is true or the host (or address) is listed in
  ``callback_allowed_hosts``. The check runs when a job is submitted and again at delivery, where the
  connection goes to the very address that was checked (no second DNS answer can swap it).
* **Retries**: a connection error, a timeout or any non-2xx answer (redirects are not followed) is
  retried with exponential backoff and jitter — ``callback_backoff`` doubling up to
  ``callback_backoff_max`` — at most ``callback_max_retries`` times, each retry a Celery task of its
  own so that a failing receiver never re-runs the pipeline.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import random
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from atoll.errors import AtollError
from atoll.service.jobs.model import CallbackState
from atoll.service.jobs.store import JobStore
from atoll.signing import sign, signature_headers, verify_callback

__all__ = ["CallbackURLError", "DeliveryError", "check_callback_url", "sign", "signature_headers",
           "verify_callback", "post_callback", "backoff_delay", "make_delivery_task", "record_callback",
           "schedule_retry"]

log = logging.getLogger("atoll.callbacks")

_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class CallbackURLError(AtollError, ValueError):
    """A callback URL is malformed or points at an address the SSRF guard refuses."""


class DeliveryError(AtollError):
    """One delivery attempt failed: connection error, timeout or a non-2xx answer."""


@dataclass(frozen=True)
class Target:
    """A checked callback URL: where to connect (``address`` is pinned) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """Return (how, IPv4 address) when IPv6 ``ip`` carries an IPv4 destination, else None.

    Routers and the host's own stack translate these forms into IPv4 traffic, so
    ``http://[2002:a9fe:a9fe::]/`` (6to4) reaches 169.254.169.254 like the IPv4 address would.
    """
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are IPv6's own
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return why ``ip`` is not a public address, or None when it is.

    >>> _refusal(ipaddress.ip_address("2002:a9fe:a9fe::"))
    'link-local (IPv4 169.254.169.254 in 6to4)'
    """
    if ip.version == 6:
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            how, ipv4 = embedded
            why = _refusal(ipv4)
            if why is not None:
                return f"{why} (IPv4 {ipv4} in {how})"
            if how == "IPv4-mapped":
                return None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.version == 6 and ip in _UNIQUE_LOCAL:
        return "unique-local"
    if ip.is_private:
        return "private"
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "non-public"
    return None


def check_callback_url(url: Any, config: Mapping[str, Any]) -> Target:
    """Return the checked :class:`Target` of ``url``; raise CallbackURLError saying why it is refused."""
    if not isinstance(url, str) or not url:
        raise CallbackURLError(f"callback must be an http(s) URL string; got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise CallbackURLError(f"callback URL {url!r}: scheme must be http or https")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise CallbackURLError(f"callback URL {url!r}: {exc}") from None
    if not host:
        raise CallbackURLError(f"callback URL {url!r} has no host")
    if parts.username or parts.password:
        raise CallbackURLError(f"callback URL {url!r}: credentials in the URL are not accepted")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CallbackURLError(f"callback URL {url!r}: cannot resolve host {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    allowed = {h.lower().strip("[]") for h in config["callback_allowed_hosts"]}
    if not config["callback_allow_private"] and host.lower() not in allowed:
        for address in addresses:
            why = _refusal(ipaddress.ip_address(address.split("%")[0]))
            if why and address not in allowed:
                raise CallbackURLError(
                    f"callback URL {url!r}: host {host!r} resolves to {why} address {address}; "
                    f"set callback_allow_private: true or list the host in callback_allowed_hosts "
                    f"to allow it")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path, addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP connection to a pre-checked address; the Host header still names the URL's host."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS connection to a pre-checked address, verifying the certificate for the URL's host."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_pool = threading.local()


def _connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    """Return this thread's kept-alive connection to ``target`` (a new one when there is none)."""
    conns = _pool.__dict__.setdefault("conns", {})
    key = (target.scheme, target.host, target.port, target.address)
    conn = conns.get(key)
    if conn is None:
        cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        conn = conns[key] = cls(target, timeout)
    conn.timeout = timeout
    return conn


def _drop(target: Target) -> None:
    conns = _pool.__dict__.get("conns", {})
    conn = conns.pop((target.scheme, target.host, target.port, target.address), None)
    if conn is not None:
        conn.close()


#: the callback header naming the caller that submitted the job (never its token)
CALLER_HEADER = "X-Atoll-Caller"


def post_callback(url: str, body: bytes, msg_id: str, config: Mapping[str, Any],
                  request_id: str | None = None, caller: str | None = None) -> int:
    """POST ``body`` to ``url`` once; return the 2xx status or raise DeliveryError / CallbackURLError.

    ``request_id``, the id of the request that submitted the job, is sent as ``X-Request-ID``;
    ``caller``, the name of the caller that submitted it, as ``X-Atoll-Caller``.
    """
    target = check_callback_url(url, config)
    headers = {"Content-Type": "application/json", "User-Agent": "atoll-callback",
               **signature_headers(config["callback_secret"], msg_id, body)}
    if request_id:
        headers["X-Request-ID"] = request_id
    if caller:
        headers[CALLER_HEADER] = caller
    for reuse in (True, False):
        conn = _connection(target, float(config["callback_timeout"]))
        fresh = conn.sock is None
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            _drop(target)
            if reuse and not fresh:  # the kept-alive connection was closed by the receiver: reconnect
                continue
            raise DeliveryError(f"callback to {url}: {type(exc).__name__}: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            _drop(target)
            raise DeliveryError(f"callback to {url}: {type(exc).__name__}: {exc}") from None
        if response.will_close:
            _drop(target)
        if not 200 <= response.status < 300:
            raise DeliveryError(f"callback to {url} answered {response.status} {response.reason}")
        return response.status
    raise DeliveryError(f"callback to {url}: the connection closed twice")


def record_callback(store: Any, job_id: str, state: Any) -> None:
    """Store callback delivery ``state`` (a :class:`~atoll.service.jobs.model.CallbackState`) of job
    ``job_id`` in job ``store`` and count it in the metrics.

    The job's own record is final once stored, so a delivery's outcome is kept under a key of its own
    and merged in when read (:meth:`atoll.service.jobs.store.JobStore.load`).
    """
    _count_delivery(state.state)
    try:
        store.record_callback(job_id, state)
    except Exception as exc:  # the job store may be down: the log line is then the only trace
        log.warning("job %s: could not record the callback's state %r: %s", job_id, state.state, exc)


def _count_delivery(outcome: str) -> None:
    """Count a delivery attempt's outcome in the metrics (prometheus_client is in the service extra)."""
    try:
        from atoll.service.metrics import CALLBACKS
    except ImportError:
        return
    CALLBACKS.labels(outcome).inc()


def backoff_delay(retry: int, config: Mapping[str, Any]) -> float:
    """Return seconds before retry number ``retry`` (0-based): doubling backoff, capped, with jitter."""
    delay = min(float(config["callback_backoff_max"]), float(config["callback_backoff"]) * 2 ** retry)
    return random.uniform(delay / 2, delay)


def make_delivery_task(app: Any, get_config: Any, **options: Any) -> Any:
    """Register and return the ``atoll.deliver_callback`` task of Celery ``app``.

    ``get_config()`` returns the service's config; ``options`` are more Celery task options. The
    task's arguments are the job id, the URL, the JSON body text and how many attempts were made
    before it (the first one runs inside the job).
    """
    store = JobStore(app)

    @app.task(name="atoll.deliver_callback", bind=True, acks_late=True, reject_on_worker_lost=True,
              ignore_result=True, max_retries=None, shared=False, **options)
    def deliver_callback(self: Any, job_id: str, url: str, body: str, attempts_before: int = 1,
                         request_id: str | None = None, caller: str | None = None) -> None:
        """Deliver one job's callback, retrying with backoff until callback_max_retries is used up."""
        config = get_config()
        attempt = attempts_before + self.request.retries
        try:
            post_callback(url, body.encode("utf-8"), job_id, config, request_id=request_id, caller=caller)
        except CallbackURLError as exc:
            log.error("job %s: callback refused at delivery: %s", job_id, exc)
            record_callback(store, job_id, CallbackState(url, "failed", attempt + 1, str(exc)))
            return
        except DeliveryError as exc:
            if attempt >= config["callback_max_retries"]:
                log.error("job %s: callback not delivered after %d attempts, giving up: %s",
                          job_id, attempt + 1, exc)
                record_callback(store, job_id, CallbackState(url, "abandoned", attempt + 1, str(exc)))
                return
            delay = backoff_delay(attempt, config)
            log.warning("job %s: %s; retry %d of %d in %.2fs", job_id, exc, attempt + 1,
                        config["callback_max_retries"], delay)
            record_callback(store, job_id, CallbackState(url, "pending", attempt + 1, str(exc)))
            raise self.retry(countdown=delay, exc=exc) from None
        log.info("job %s: callback delivered to %s (attempt %d)", job_id, url, attempt + 1)
        record_callback(store, job_id, CallbackState(url, "delivered", attempt + 1))

    return deliver_callback


def schedule_retry(task: Any, job_id: str, url: str, body: str, config: Mapping[str, Any],
                   error: Exception, queue: str | None = None, request_id: str | None = None,
                   caller: str | None = None) -> bool:
    """Queue the first retry of a callback whose in-job attempt failed; return False if none are allowed."""
    if config["callback_max_retries"] < 1:
        log.error("job %s: callback failed and callback_max_retries is 0: %s", job_id, error)
        return False
    delay = backoff_delay(0, config)
    log.warning("job %s: %s; retry 1 of %d in %.2fs", job_id, error, config["callback_max_retries"], delay)
    extra = {"caller": caller} if caller else {}  # workers of earlier versions take no such keyword
    task.apply_async((job_id, url, body, 1), {"request_id": request_id, **extra}, countdown=delay,
                     queue=queue)
    return True
