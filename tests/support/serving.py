"""``atoll serve`` on a free loopback port, stopped by its pid afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import requests

from tests.support.ports import free_port
from tests.support.waiting import eventually

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent


class Served(NamedTuple):
    """A running ``atoll serve``: its base URL and its process."""

    url: str
    process: subprocess.Popen


def answers(path: str) -> Callable[[str], bool]:
    """Return a readiness check: ``path`` answers below 500."""
    return lambda url: requests.get(url + path, timeout=2).status_code < 500


def workers_ready(url: str) -> bool:
    """Return True when the service at ``url`` reports a live worker in ``/health``."""
    return requests.get(f"{url}/health", timeout=2).json()["checks"]["workers"]["ok"]


@contextlib.contextmanager
def serve(target: str, config: str | Path | None = None, *, workers: int | None = 2, threads: int | None = 4,
          args: Sequence[str] = (), env: dict | None = None, ready: Callable[[str], object] | None = None,
          log: Path | None = None, session: bool = False, timeout: float = 60) -> Iterator[Served]:
    """Run ``atoll serve target`` with the config file ``config`` on a free loopback port; yield its
    :class:`Served` once ``ready(url)`` is true (by default: ``/health`` answers below 500); stop it by
    pid with SIGTERM (SIGKILL after 40 s).

    ``workers`` or ``threads`` None leaves that option to ``atoll serve``; ``args`` are more options
    (``--dev``); ``env`` adds to the environment; ``session`` starts it in a session of its own and
    stops the whole process group (``--dev`` re-executes itself as a child). Its output goes to the file
    ``log``, read it after the block, or to a temporary file: never to a pipe, which nobody reads while
    it serves and which would fill up.
    """
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), **(env or {})}
    full_env.pop("ATOLL_CONF", None)
    if config:
        full_env["ATOLL_CONF"] = str(config)
    cmd = [sys.executable, "-m", "atoll", "serve", target, "--bind", f"127.0.0.1:{port}",
           *([] if workers is None else ["--workers", str(workers)]),
           *([] if threads is None else ["--threads", str(threads)]), *args]
    output = open(log, "w+") if log else tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT,
                               text=True, start_new_session=session)
    served = Served(f"http://127.0.0.1:{port}", process)
    check = ready or answers("/health")

    def is_ready() -> object:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"atoll serve exited with {process.returncode}:\n{output.read()}")
        return check(served.url)

    try:
        try:
            eventually(is_ready, timeout, what=f"atoll serve {target} to be ready",
                       ignoring=(requests.RequestException, ValueError, KeyError))
        except AssertionError as error:
            output.seek(0)
            raise RuntimeError(f"{error}:\n{output.read()}") from None
        yield served
    finally:
        stop(process, 40, group=session)
        output.close()


def stop(process: subprocess.Popen, timeout: float = 30, group: bool = False) -> None:
    """Stop ``process`` (its process group when ``group``) with SIGTERM, and SIGKILL when it has not
    exited ``timeout`` s later."""
    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    if process.poll() is not None and not group:  # a group may outlive its leader
        return
    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()
