"""The README's tour runs as pasted: its server part served by ``atoll serve tour:service`` (the
embedded broker and worker, as a new user gets them), its client part run as a script whose printed
lines are the ones its comments show."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import answers, serve, write_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> list[str]:
    """Return the README's ```python blocks in order."""
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"),
                      flags=re.M | re.S)


def test_the_install_line_and_the_licence_are_on_the_readme():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(text.splitlines()[:30])
    assert "$ pip install 'atoll[service]'" in first_screen
    assert "$ ./run serve" in first_screen and "$ ./run test" in first_screen
    assert "MIT" in text and "(LICENSE)" in text and (ROOT / "LICENSE").exists()


def test_the_tour_runs_as_pasted(tmp_path):
    server, client = python_blocks()
    assert "atoll serve tour:service" in (ROOT / "README.md").read_text(encoding="utf-8")
    (tmp_path / "tour.py").write_text(server, encoding="utf-8")
    conf = write_config(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    with serve("tour:service", conf, workers=1, env=env, ready=answers("/pipelines")) as (url, _):
        script = client.replace("http://127.0.0.1:8000", url)
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    shown = [line.split("#", 1)[1].strip() for line in client.splitlines() if line.startswith("print(")]
    assert done.stdout.splitlines() == shown
