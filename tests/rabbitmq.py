"""pytest plugin: a RabbitMQ broker for the tests.

``rabbitmq_url`` (session) is the broker on 127.0.0.1:5672 when one answers an AMQP handshake there
(guest/guest); otherwise a private node this plugin starts and owns: state in a temporary folder, its own
AMQP, distribution and epmd ports, loopback only, run as a child process (not ``-detached``), ready when
it completes an AMQP handshake (60 s at most), stopped by pid at the end of the session. Set
``ATOLL_TEST_PRIVATE_RABBITMQ=1`` to start the private node even when 5672 answers.

Without a usable broker the test is skipped loudly, or fails when ``ATOLL_REQUIRE`` names ``rabbitmq``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.requirements import unavailable
from tests.support import eventually, free_port

SHARED_URL = "amqp://guest:guest@127.0.0.1:5672//"
_SERVER_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")


def amqp_answers(url: str, timeout: float = 3.0) -> bool:
    """Return True when the broker at ``url`` completes an AMQP handshake (login included)."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
        return True
    except Exception:
        return False


class PrivateNode:
    """A RabbitMQ node owned by the test session (see the module docstring)."""

    def __init__(self) -> None:
        script = next((s for s in _SERVER_SCRIPTS if os.path.exists(s)), None) or \
            shutil.which("rabbitmq-server")
        if script is None:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.root = Path(tempfile.mkdtemp(prefix="atoll-rabbitmq-"))
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        name = f"atoll{os.getpid()}@localhost"
        env = {**os.environ, "HOME": str(self.root), "RABBITMQ_NODENAME": name,
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_PORT": str(self.epmd_port),
               "ERL_EPMD_ADDRESS": "127.0.0.1", "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.root / "log"), "RABBITMQ_LOGS": "-",
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
               "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
               "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text("loopback_users = none\n")
        self.log = open(self.root / "server.log", "wb")
        self.env = env
        self.process = subprocess.Popen([script], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the node completes an AMQP handshake; raise RuntimeError with its log if not."""
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"private RabbitMQ node exited: {self.log_tail()}")
            return amqp_answers(self.url, timeout=1.0)

        try:
            eventually(ready, timeout, 0.5, what="the private RabbitMQ node's AMQP handshake")
        except AssertionError as error:
            raise RuntimeError(f"private RabbitMQ node did not become ready ({error}): {self.log_tail()}") \
                from None

    def log_tail(self) -> str:
        """Return the end of the node's log."""
        return (self.root / "server.log").read_text(errors="replace")[-2000:]

    def ctl(self, *args: str) -> str:
        """Return the output of ``rabbitmqctl ARGS`` run against this node."""
        # the node made its cookie in its own HOME; rabbitmqctl runs as the rabbitmq user
        cookie = (self.root / ".erlang.cookie").read_text().strip()
        return _rabbitmqctl(("--erlang-cookie", cookie, *args), self.env)

    def stop(self) -> None:
        """Stop the node's process group (started by this object) and remove its state."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._stop_epmd()
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_epmd(self) -> None:
        # epmd daemonises out of the process group; ours is the one listening on our own epmd port
        import psutil

        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == self.epmd_port and conn.pid \
                    and conn.status == psutil.CONN_LISTEN:
                try:
                    proc = psutil.Process(conn.pid)
                    if "epmd" in proc.name():
                        proc.kill()
                except psutil.Error:
                    pass


def _rabbitmqctl(args: tuple[str, ...], env: dict | None = None) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], env=env, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} exited with {done.returncode}: {done.stderr}")
    return done.stdout


#: the node this session started, if any (see :func:`rabbitmqctl`)
_private: list[PrivateNode] = []


@pytest.fixture(scope="session")
def rabbitmqctl(rabbitmq_url):
    """A function running ``rabbitmqctl ARGS`` against the broker of ``rabbitmq_url``; returns its output."""
    if rabbitmq_url == SHARED_URL:
        return lambda *args: _rabbitmqctl(args)
    return _private[0].ctl


@pytest.fixture(scope="session")
def rabbitmq_url():
    """AMQP URL of a running RabbitMQ: the shared one on 127.0.0.1:5672 or a private node."""
    if not os.environ.get("ATOLL_TEST_PRIVATE_RABBITMQ") and amqp_answers(SHARED_URL):
        yield SHARED_URL
        return
    try:
        node = PrivateNode()
    except RuntimeError as exc:
        unavailable("rabbitmq", str(exc))
    try:
        node.wait_ready()
    except RuntimeError as exc:
        node.stop()
        unavailable("rabbitmq", str(exc))
    _private.append(node)
    try:
        yield node.url
    finally:
        _private.remove(node)
        node.stop()
