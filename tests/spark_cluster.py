"""Spark fixtures (a pytest plugin): Spark in local mode and a standalone cluster on loopback.

The cluster is a master and two workers started from the installed pyspark package (``spark-class``) as
child processes of the test run, once per session, on free ports of 127.0.0.1, and stopped by SIGTERM at
the end. Where Java or pyspark is missing the tests skip with the reason (or fail under
``ATOLL_REQUIRE=spark``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.requirements import unavailable
from tests.support import eventually, free_port

WORKERS = 2
CLUSTER_CONF = {"spark.executor.memory": "512m", "spark.cores.max": str(WORKERS)}
START_TIMEOUT = 120.0


def spark_missing() -> str | None:
    """Return why Spark cannot run here (no pyspark, no Java), or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'atoll[spark]')"
    home = os.environ.get("JAVA_HOME")
    if not (home and os.access(os.path.join(home, "bin", "java"), os.X_OK)) and not shutil.which("java"):
        return "Java is not installed (Spark needs Java 17 or 21 on PATH or JAVA_HOME)"
    return None


def require_spark() -> None:
    """Skip (or fail under ATOLL_REQUIRE=spark) when Spark cannot run here."""
    reason = spark_missing()
    if reason:
        unavailable("spark", reason)


@dataclass
class SparkCluster:
    """A running standalone cluster: its master URL, web UI and the processes the test run owns."""

    master_url: str
    web_url: str
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def status(self) -> dict:
        """Return the master's ``/json/`` status (workers, cores, applications)."""
        with urllib.request.urlopen(self.web_url + "/json/", timeout=5) as response:
            return json.load(response)

    def logs(self) -> str:
        """Return the tail of every process's log, for a failure message."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace")
                                                         .splitlines()[-25:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every process group the cluster started (workers take their executors with them)."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM if the test run dies without stopping the cluster (Linux)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(cluster: SparkCluster, name: str, args: list[str], env: dict) -> None:
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    log = open(cluster.log_dir / f"{name}.log", "wb")
    proc = subprocess.Popen([str(spark_class), *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
    log.close()
    cluster.processes.append(proc)


def start_cluster(base: Path, workers: int = WORKERS) -> SparkCluster:
    """Start a master and ``workers`` workers on 127.0.0.1; return once every worker is alive."""
    import pyspark

    port, web_port = free_port(), free_port()
    env = dict(os.environ, SPARK_HOME=str(Path(pyspark.__file__).parent), SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=sys.executable, SPARK_LOG_DIR=str(base), SPARK_NO_DAEMONIZE="1")
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web_port}", base)
    try:
        _spawn(cluster, "master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(port), "--webui-port", str(web_port)], env)
        for i in range(workers):
            work_dir = base / f"worker{i}"
            work_dir.mkdir()
            _spawn(cluster, f"worker{i}", [
                "org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1",
                "--cores", "1", "--memory", "1g", "--webui-port", "0", "--work-dir", str(work_dir)], env)

        def alive() -> bool:
            dead = [p.args[1] for p in cluster.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"Spark process exited at start-up: {dead}\n{cluster.logs()}")
            return cluster.status().get("aliveworkers", 0) >= workers

        try:
            eventually(alive, START_TIMEOUT, 0.5, what=f"{workers} live Spark workers", ignoring=(OSError,))
        except AssertionError as error:
            raise RuntimeError(f"Spark cluster not ready: {error}\n{cluster.logs()}") from None
        return cluster
    except BaseException:
        cluster.stop()
        raise


def wait_for_executors(sc, count: int, timeout: float = 90.0) -> None:
    """Wait until ``count`` executors (besides the driver) have registered with ``sc``."""
    eventually(lambda: sc._jsc.sc().getExecutorMemoryStatus().size() >= count + 1, timeout, 0.2,
               what=f"{count} Spark executors to register")


@pytest.fixture(scope="session")
def spark_local_executor():
    """A SparkExecutor on ``local[2]`` (its SparkContext started)."""
    require_spark()
    from atoll.executors.spark import SparkExecutor

    executor = SparkExecutor(master="local[2]")
    executor.context  # noqa: B018 - start it here so a test's timing does not include start-up
    return executor


@pytest.fixture(scope="session")
def spark_local_context(spark_local_executor):
    """The SparkContext on ``local[2]`` (the process's one context while local tests run)."""
    return spark_local_executor.context


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A standalone Spark cluster (master + 2 workers, 1 core and 1 GiB each) on 127.0.0.1."""
    require_spark()
    cluster = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
    yield cluster
    from atoll.executors import spark

    if spark._context is not None and spark._context.master == cluster.master_url:
        spark.stop_spark_context()
    cluster.stop()


@pytest.fixture(scope="session")
def spark_cluster_executor(spark_cluster):
    """A SparkExecutor on the standalone cluster, with both executors registered."""
    from atoll.executors.spark import SparkExecutor

    executor = SparkExecutor(master=spark_cluster.master_url, conf=CLUSTER_CONF)
    wait_for_executors(executor.context, WORKERS)
    return executor
