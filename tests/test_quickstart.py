"""docs/quickstart.rst, followed as a new user would: in a fresh virtualenv in a folder outside the
repository that holds this tree's wheel (as the page asks), the page's own commands run as written and
its files, everything else from the package index; free ports stand in for 8000 and 9000.

Checked: ``atoll serve`` answers the page's curl line with the page's output; client.py prints what the
page shows (a synchronous call, then an asynchronous job); the receiver verifies the signed callback with
the ``standardwebhooks`` reference library and prints what the page shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.docblocks import blocks, by_caption, exports
from tests.support import eventually, free_port, stop
from tests.venvs import build_wheel, clean_env

pytestmark = pytest.mark.slow

PAGE = "quickstart"


def bash(script: str, cwd: Path, env: dict, **popen) -> subprocess.Popen:
    """Start ``script`` in bash (``set -e``) and return the process."""
    return subprocess.Popen(["bash", "-c", "set -e\n" + script], cwd=cwd, env=env, text=True, **popen)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_pip_quickstart_works_in_a_fresh_virtualenv(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    wheel = build_wheel(tmp_path / "wheel")
    install, serve, curl, receive = [b for b in blocks(PAGE) if b.language == "console"]
    web, hook = free_port(), free_port()

    def ported(text: str) -> str:  # the page's ports are 8000 and 9000; here any free ones
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{web}").replace("9000", str(hook))

    shims = tmp_path / "bin"  # `python` on PATH is this interpreter, as it would be for the reader
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    env = clean_env(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")

    # Install: the page's lines as written, with the wheel where the page says to put it
    script = "\n".join(install.commands())
    assert f"'./{wheel.name}[service]'" in script, f"the page does not install this version's {wheel.name}"
    shutil.copy(wheel, work / wheel.name)
    done = bash(script, work, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = done.communicate(timeout=900)
    if done.returncode != 0 and ("NewConnectionError" in err or "No matching distribution" in err):
        pytest.skip(f"the package index is unreachable: {err.strip().splitlines()[-1]}")
    assert done.returncode == 0, out + err
    activate = ". .venv/bin/activate\n"

    for caption in ("wordcount.py", "receiver.py", "client.py"):
        (work / caption).write_text(ported(by_caption(PAGE, caption).text), encoding="utf-8")

    serve_commands = serve.commands()
    assert serve_commands[-1] == "atoll serve wordcount:service"
    server = bash(activate + "\n".join(serve_commands[:-1]) + "\n"
                  f"exec {serve_commands[-1]} --bind 127.0.0.1:{web}", work, env,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    receiver = bash(activate + "\n".join(receive.commands()[:-1]) + "\nexec " + receive.commands()[-1],
                    work, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        eventually(lambda: answers(f"http://127.0.0.1:{web}/pipelines") or server.poll() is not None, 90,
                   0.2, what="atoll serve answering")
        assert server.poll() is None, server.stdout.read()

        (command,) = curl.commands()
        shown = curl.output().strip()
        said = subprocess.run(["bash", "-c", ported(command)], cwd=work, env=env, capture_output=True,
                              text=True, timeout=60)
        assert said.stdout.strip() == shown, said.stderr

        client = subprocess.run(["bash", "-c", activate + "python client.py"], cwd=work, env=env,
                                capture_output=True, text=True, timeout=180)
        assert client.returncode == 0, client.stderr
        assert client.stdout == by_caption(PAGE, "output of client.py").text

        expected = by_caption(PAGE, "output of receiver.py").text
        line = receiver.stdout.readline()  # the receiver prints once it has verified a delivery
        assert line == expected, line
        assert env.get("ATOLL_CALLBACK_SECRET") is None  # the secret came from the page's exports only
        assert exports(serve)["ATOLL_CALLBACK_SECRET"] == exports(receive)["ATOLL_CALLBACK_SECRET"]
    finally:
        for process in (receiver, server):
            stop(process)
