"""Fresh virtualenvs holding atoll installed the way a user installs it: from a wheel of this tree with
``pip install 'atoll-<version>.whl[EXTRA]'``, dependencies from the package index (pip's cache makes
repeated runs quick). Nothing of the test environment leaks in: no ``--system-site-packages``, no
``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment for a process of a fresh venv: no PYTHONPATH, no ATOLL_* settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("ATOLL_")}
    env.update(extra)
    return env


def build_wheel(folder: Path) -> Path:
    """Build this tree's wheel into ``folder``; return its path."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(folder), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=300)
    return next(folder.glob("atoll-*.whl"))


def make_venv(folder: Path, requirement: str) -> Path:
    """Create a virtualenv in ``folder`` and pip-install ``requirement`` into it; return its python.

    Skips the test when the package index cannot be reached (the message says so).
    """
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = folder / ("Scripts" if os.name == "nt" else "bin") / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           requirement], capture_output=True, text=True, env=clean_env(), timeout=900)
    if done.returncode != 0:
        if "Could not find a version" in done.stderr or "NewConnectionError" in done.stderr \
                or "Temporary failure in name resolution" in done.stderr:
            pytest.skip(f"the package index is unreachable, cannot install {requirement}: "
                        f"{done.stderr.strip().splitlines()[-1]}")
        raise AssertionError(f"pip install {requirement} failed:\n{done.stdout}\n{done.stderr}")
    return python
