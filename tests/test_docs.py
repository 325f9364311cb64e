"""The Sphinx docs build with warnings as errors and every cross-reference resolved (``-n -W``: a
reference to an undocumented atoll name fails), and every example in them runs (doctest builder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ["quickstart", "getting-started", "pipelines", "operators", "executors", "service", "jobs",
         "reliability", "operating", "configuration", "deployment", "security", "limits", "http-semantics",
         "choosing", "migrating", "api"]


def sphinx(builder: str, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run sphinx-build -n -W (nitpicky, warnings are errors) with ``builder`` into ``out``."""
    return subprocess.run([sys.executable, "-m", "sphinx", "-n", "-W", "--keep-going", "-q", "-E",
                           "-b", builder, "-d", str(out / "doctrees"), str(DOCS), str(out / builder)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    result = sphinx("html", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "html"


def test_html_builds_without_warnings(html):
    for page in ["index", *PAGES]:
        assert (html / f"{page}.html").exists(), page


def test_every_config_key_is_documented(html):
    from atoll.config import SCHEMA

    text = (html / "configuration.html").read_text(encoding="utf-8")
    for key in SCHEMA:
        assert f">{key}<" in text, f"configuration key {key!r} missing from the docs"


def test_api_reference_documents_the_public_names(html):
    text = (html / "api.html").read_text(encoding="utf-8")
    for name in ("atoll.Pipeline", "atoll.LocalExecutor", "atoll.SerialExecutor", "atoll.PipelineError",
                 "atoll.StageFailure", "atoll.config.load_config"):
        assert f'id="{name}"' in text, name


def test_every_operator_has_a_checked_example():
    from atoll.pipeline import AGGREGATE, BRANCHING, NARROW, TWO_INPUTS, WHOLE_NO_FUNCTION

    lines = [ln for page in ("pipelines.rst", "operators.rst")
             for ln in (DOCS / page).read_text(encoding="utf-8").splitlines()]
    examples = [ln for ln in lines if ln.strip().startswith((">>> ", "... "))]
    for op in (*NARROW, *AGGREGATE, *BRANCHING, *TWO_INPUTS, *WHOLE_NO_FUNCTION, "to"):
        assert any(f".{op}(" in ln for ln in examples), f"no doctest example uses {op}"


def test_doctests_pass(tmp_path):
    result = sphinx("doctest", tmp_path)
    report = (tmp_path / "doctest" / "output.txt").read_text(encoding="utf-8") \
        if (tmp_path / "doctest" / "output.txt").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + report
    summary = report.split("Doctest summary", 1)[1]
    tests = int(summary.split(" tests")[0].split()[-1])
    assert tests >= 50, report
    assert " 0 failures in tests" in summary


def test_benchmark_tables_render(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\nMeasured on 2 cores while other work ran.\n\n## local executor\n\n"
                       "| workload | serial s | local s | speed-up |\n|---|---:|---:|---:|\n"
                       "| `W1` tiny items | 0.91 | 0.95 | 0.96x |\n| W2 heavy items | 8.0 | 4.2 | 1.9x |\n"
                       "| ragged | 1 |\n| surplus | 1 | 2 | 3 | 4 | 5 |\n\n| header only |\n|---|\n")
    result = sphinx("html", tmp_path / "out", env={"ATOLL_BENCH_RESULTS": str(results)})
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "out" / "html" / "executors.html").read_text(encoding="utf-8")
    assert "W2 heavy items" in page and "1.9x" in page and "<table" in page
    assert "Measured on 2 cores" in page
