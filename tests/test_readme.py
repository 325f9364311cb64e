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
    import atoll

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(text.splitlines()[:30])
    assert "$ ./run dist" in first_screen
    assert f"$ pip install 'dist/atoll-{atoll.__version__}-py3-none-any.whl[service]'" in first_screen
    assert "$ ./run serve" in first_screen and "$ ./run test" in first_screen
    # atoll is not on the package index: no line may send a reader there for it
    assert "pip install 'atoll[" not in text and "pip install atoll" not in text
    assert "MIT" in text and "(LICENSE)" in text and (ROOT / "LICENSE").exists()


def test_the_install_lines_work_as_written_in_a_clone(tmp_path):
    # A new user's clone (this tree's files, no virtualenv yet): the README's two install lines, run as
    # written in bash, with `python3` being this interpreter; the second in a fresh virtualenv of theirs.
    import shutil

    import atoll
    from tests.docblocks import Block
    from tests.venvs import clean_env

    clone = tmp_path / "atoll"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```console\n(\$ \./run dist.*?)^```", readme, flags=re.M | re.S).group(1)
    build, install = Block("console", "", block).commands()
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").symlink_to(sys.executable)
    env = clean_env(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    built = subprocess.run(["bash", "-c", build], cwd=clone, env=env, capture_output=True, text=True,
                           timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "project-venv")], check=True, timeout=300)
    installed = subprocess.run(["bash", "-c", f". {tmp_path}/project-venv/bin/activate && {install}"],
                               cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    if installed.returncode != 0 and "NewConnectionError" in installed.stderr:
        pytest.skip("the package index is unreachable")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    said = subprocess.run([str(tmp_path / "project-venv" / "bin" / "atoll"), "--version"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert said.stdout.strip() == f"atoll {atoll.__version__}", said.stderr
    imports = subprocess.run([str(tmp_path / "project-venv" / "bin" / "python"), "-c",
                              "import flask, celery, gunicorn, atoll.service"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert imports.returncode == 0, imports.stderr


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
