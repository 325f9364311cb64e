"""The service's import structure: a worker process loads no Flask, and the import-linter contracts of
pyproject.toml (layers, forbidden imports, no circles) hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: what `atoll worker MODULE:SERVICE` imports and builds, in a fresh interpreter
WORKER = """
import sys

import atoll.cli
from atoll import Atoll, Pipeline
from atoll.config import load_config
from atoll.service import log_format, metrics, transport
from atoll.service.jobs import delivery, errors, model, queue, store, system

service = Atoll(load_config(state_dir=sys.argv[1]))
service.register_pipeline("/double", Pipeline().map(lambda x: 2 * x))
jobs = service.job_system()
assert queue.PIPELINE_TASK in jobs.celery.tasks and service.celery is jobs.celery
healthy, report = service.health()
print(sorted(name for name in sys.modules if name.split(".")[0] in ("flask", "werkzeug")))
"""


def test_a_worker_process_does_not_import_flask(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOLL_")}
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "state")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_the_import_contracts_of_the_service_hold():
    pytest.importorskip("importlinter", reason="import-linter is part of the test extra")
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "service: the job model imports neither Flask nor Celery KEPT" in done.stdout
