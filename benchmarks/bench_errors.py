"""Benchmark the per-element error policy: what ``on_error="collect"`` costs when nothing fails, and what a
run with failing elements costs, against ``on_error="fail"`` and a hand-written loop, in one run.

    .venv/bin/python benchmarks/bench_errors.py            # full run, medians of 7
    .venv/bin/python benchmarks/bench_errors.py --quick    # smoke run: small inputs, 2 repeats
    .venv/bin/python benchmarks/bench_errors.py --no-spark # serial and local only

W1 (1,000,000 tiny items: map, filter, map, reduce) and W3 (200,000 lines: flatMap, map to pairs,
reduceByKey) as in ``bench_local.py``, serial and ``n_jobs=2`` (and Spark ``local[2]``): ``fail`` (no
policy) against ``collect`` with nothing failing — the goal is at most 5% more. Then W3 with one line in a
thousand unparseable (its words fail a stage): ``collect`` against a hand-written loop with a ``try``
around each line, which is what a user writes without a policy.

Variants of one workload run in rotating order each round (a slow moment of the shared machine falls on
all alike); the tables show medians.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from operator import add

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_local import W1, W3, interleaved, make_lines, table  # noqa: E402

from atoll import LocalExecutor, Pipeline, SerialExecutor  # noqa: E402


def strict_pair(word: str) -> tuple[str, int]:
    """A word as ``(word, 1)``; a word of digits is a bad record and raises."""
    if word.isdigit():
        raise ValueError(f"not a word: {word!r}")
    return word, 1


W3_STRICT = Pipeline("W3 strict").flatMap(str.split).map(strict_pair).reduceByKey(add)


def dirty_lines(n: int, every: int = 1000) -> list[str]:
    """Lines of W3 with one line in ``every`` holding a bad word (digits)."""
    lines = make_lines(n)
    for i in range(every // 2, n, every):
        lines[i] += " 12345"
    return lines


def loop_with_try(lines: list[str]) -> tuple[Counter, list]:
    """The hand-written dirty word count: each word in a ``try``, failures kept."""
    counts: Counter = Counter()
    bad = []
    for line in lines:
        for word in line.split():
            try:
                w, one = strict_pair(word)
            except ValueError as exc:
                bad.append((word, exc))
                continue
            counts[w] += one
    return counts, bad


def overhead(name: str, pipeline: Pipeline, data, executors: list, repeats: int) -> list[str]:
    """The ``fail`` and ``collect`` runs of ``pipeline`` on each executor, nothing failing."""
    rows = []
    for label, executor in executors:
        fns = [lambda e=executor: pipeline.run(data, executor=e),
               lambda e=executor: pipeline.run(data, executor=e, on_error="collect")]
        for fn in fns:  # warm: the worker pool and Spark's Python workers started, passes compiled
            fn()
        (fail, plain), (collect, outcome) = interleaved(fns, repeats)
        same = dict(outcome.results) == dict(plain) if isinstance(plain, list) else outcome.results == plain
        assert outcome.skipped == 0 and same, label
        rows += [(f"{label}: fail", fail, ""), (f"{label}: collect", collect,
                                                f"{collect / fail:.3f}x of fail")]
    floor = min(seconds for _, seconds, _ in rows)
    return table(f"{name}, nothing failing: on_error collect against fail", rows, floor)


def dirty(n: int, executors: list, repeats: int) -> list[str]:
    lines = dirty_lines(n)
    fns = [lambda: loop_with_try(lines)] + [
        lambda e=executor: W3_STRICT.run(lines, executor=e, on_error="collect") for _, executor in executors]
    measured = interleaved(fns, repeats)
    (loop, (counts, bad)), runs = measured[0], measured[1:]
    rows = [("hand-written loop with try, 1 process", loop, f"{len(bad)} bad words")]
    for (label, _), (seconds, outcome) in zip(executors, runs):
        assert dict(outcome.results) == dict(counts) and outcome.skipped == len(bad), label
        rows.append((f"atoll {label} collect", seconds, f"{outcome.skipped} dead letters"))
    return table(f"W3 with one line in 1000 bad, {n:,} lines: collect against a loop with try", rows, loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 2 repeats (a smoke run)")
    parser.add_argument("--no-spark", action="store_true", help="serial and local executors only")
    args = parser.parse_args()
    repeats = 2 if args.quick else 7
    n1, n3 = (20_000, 4_000) if args.quick else (1_000_000, 200_000)
    executors = [("serial", SerialExecutor()), ("local n_jobs=2", LocalExecutor(2))]
    if not args.no_spark:
        try:
            from atoll.executors.spark import SparkExecutor

            spark = SparkExecutor("local[2]")
            spark.context.defaultParallelism  # noqa: B018 (started before the clock runs)
            executors.append(("Spark local[2]", spark))
        except Exception as exc:  # pyspark or Java missing: say so, measure the rest
            print(f"(Spark skipped: {exc})\n")
    data1 = list(range(n1))
    lines = make_lines(n3)
    overhead(f"W1 tiny chain, list of {n1:,}", W1, data1, executors, repeats)
    overhead(f"W3 word count, {n3:,} lines", W3, lines, executors, repeats)
    dirty(n3, executors, repeats)


if __name__ == "__main__":
    main()
