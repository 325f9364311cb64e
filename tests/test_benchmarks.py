"""The benchmark scripts still run: each one that needs no outside service, in its smoke mode.

Figures are not checked here (performance goals live in the benchmarks, not in timed tests); what is
checked is that a script runs to the end against today's code and prints its tables. A script whose
imports or internals drifted from the code (``bench_encoding.py`` swapped ``atoll.service.encoding``'s
orjson after the encoder had moved to ``atoll.encoding``) fails here rather than on the next
recording day.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_VALGRIND = ("valgrind is not installed (Debian: apt-get install valgrind): bench_instructions.py "
               "counts instructions under its callgrind")


def run_script(*args: str) -> str:
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", args[0]), *args[1:]],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.parametrize("args, expected", [
    (("bench_local.py", "--quick"), ["### W1 tiny chain, list of", "### W2 CPU-bound", "### W3 word count",
                                     "atoll local n_jobs=2", "run by the caller"]),
    (("bench_encoding.py", "--quick"), ["| json module |", "| orjson |"]),
    (("bench_joins.py", "--quick"), ["### fork(...).join() of two", "| hand-written dict join |",
                                     "| atoll serial join |", "| atoll local n_jobs=2 join |"]),
    (("bench_datasets_read.py", "--quick", "--no-spark"),
     ["| plain Python, 1 process |", "| hand-chunked joblib n_jobs=2 |", "| atoll read_text n_jobs=2 |"]),
    (("bench_operators.py", "--quick"), ["### W3 as countByValue", "| atoll local n_jobs=2 |",
                                         "| top(10): atoll serial |", "| W3 countByValue: atoll Spark |"]),
    (("bench_jobs_list.py", "--records", "300", "--repeat", "2"), ["one job: GET /jobs/<id>"]),
    (("bench_errors.py", "--quick", "--no-spark"), ["nothing failing: on_error collect against fail",
                                                    "| local n_jobs=2: collect |",
                                                    "| hand-written loop with try, 1 process |"]),
    (("bench_datasets.py", "--quick"), ["### upload of 20 MB", "| atoll serve POST /datasets |",
                                        "| atoll job on"]),
    pytest.param(("bench_instructions.py", "--quick"),
                 ["### W1 tiny chain", "### W3 word count", "| atoll serial |"],
                 marks=pytest.mark.skipif(shutil.which("valgrind") is None, reason=NO_VALGRIND)),
])
def test_a_benchmark_script_runs_to_the_end(args, expected):
    out = run_script(*args)
    for text in expected:
        assert text in out, out
