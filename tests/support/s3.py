"""An S3-compatible server for the tests (a pytest plugin): moto's standalone server on loopback.

It stands in for a real object store (AWS S3, MinIO, Ceph...): s3fs talks to it over HTTP exactly as it
talks to S3, as s3fs's own test suite does. One server per test session, a child process of the test run
on a free port of 127.0.0.1, stopped by its pid at the end; each test that asks for ``s3`` gets a bucket of
its own. Where moto or s3fs is missing the tests skip with the reason, or fail under ``ATOLL_REQUIRE=s3``.

    def test_reads(s3):
        url = s3.put("data/a.jsonl", b'{"n": 1}\\n')        # -> "s3://<bucket>/data/a.jsonl"
        assert list(read_jsonl(url, storage_options=s3.storage_options)) == [{"n": 1}]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.requirements import unavailable
from tests.support.ports import free_port
from tests.support.waiting import eventually

#: dummy credentials: moto accepts any, and s3fs must not look for real ones
KEY, SECRET = "atoll-test-key", "atoll-test-secret"
START_TIMEOUT = 60.0


def s3_missing() -> str | None:
    """Return why the S3 stand-in cannot run here (no moto server, no s3fs), or None."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"moto's server is not installed (pip install 'moto[server]', in atoll[test]): {exc}"
    try:
        import s3fs  # noqa: F401
    except ImportError:
        return "s3fs is not installed (pip install 'atoll[s3]')"
    return None


@dataclass
class S3Server:
    """A running moto server: its endpoint and the s3fs ``storage_options`` that reach it."""

    endpoint_url: str
    process: subprocess.Popen | None = None
    log: Any = None
    buckets: list[str] = field(default_factory=list)

    @property
    def storage_options(self) -> dict:
        """Return the fsspec/s3fs options for this server (endpoint, dummy key and secret)."""
        return {"key": KEY, "secret": SECRET, "endpoint_url": self.endpoint_url}

    def filesystem(self):
        """Return a fresh ``s3fs.S3FileSystem`` on this server (no cached listings)."""
        import s3fs
        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **self.storage_options)

    def new_bucket(self) -> str:
        """Create a bucket with a unique name; return the name."""
        name = f"atoll-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        self.buckets.append(name)
        return name

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.log:
            self.log.close()


@dataclass
class Bucket:
    """One test's bucket on the S3 stand-in: ``put`` objects, get their ``s3://`` URLs."""

    server: S3Server
    name: str

    @property
    def storage_options(self) -> dict:
        """Return the fsspec/s3fs options that reach the server."""
        return self.server.storage_options

    def url(self, key: str = "") -> str:
        """Return ``s3://<bucket>/<key>``."""
        return f"s3://{self.name}/{key}"

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` as the object ``key``; return its ``s3://`` URL."""
        self.server.filesystem().pipe_file(f"{self.name}/{key}", data)
        return self.url(key)

    def get(self, key: str) -> bytes:
        """Return the bytes of the object ``key``."""
        return self.server.filesystem().cat_file(f"{self.name}/{key}")


def start_s3_server() -> S3Server:
    """Start moto's standalone server on a free loopback port; return it once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by S3Server.stop
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    server = S3Server(url, process, log)

    def answers() -> bool:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n{log.read()}")
        with urllib.request.urlopen(url + "/moto-api/", timeout=2) as response:
            return response.status == 200

    try:
        eventually(answers, START_TIMEOUT, 0.2, what=f"moto_server on {url}", ignoring=(OSError,))
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's S3 stand-in (moto's standalone server on loopback), or a skip saying what is missing."""
    reason = s3_missing()
    if reason:
        unavailable("s3", reason)
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server) -> Bucket:
    """A new, empty bucket on the session's S3 stand-in."""
    return Bucket(s3_server, s3_server.new_bucket())
