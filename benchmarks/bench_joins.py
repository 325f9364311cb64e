"""Benchmark ``fork(...).join()`` of two keyed branches against a hand-written dict join.

    .venv/bin/python benchmarks/bench_joins.py            # 1,000,000 pairs a branch, medians of 5
    .venv/bin/python benchmarks/bench_joins.py --quick    # smoke run: 50,000 pairs, 2 repeats
    .venv/bin/python benchmarks/bench_joins.py --spark    # also Spark local[2] against raw PySpark

The workload: ``range(n)`` forked into two branches, ``map(left_pair)`` (``(x % k, x)``) and
``map(right_pair)`` (``(x % k, -x)``), then ``join()``: ``k = n`` so each key matches once (an
output of n pairs). The hand-written baseline builds both lists with comprehensions over the same
functions and joins them with a ``defaultdict(list)`` index of the right side, the way a careful user
would. ``leftOuterJoin`` and ``cogroup`` are timed on the same input. Raw PySpark is
``rdd.map(left_pair).join(rdd.map(right_pair)).collect()`` on a cached ``parallelize``d range.

Variants run in rotating order each round; the table shows medians and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from atoll import LocalExecutor, Pipeline, SerialExecutor  # noqa: E402

KEYS = 1_000_000


def left_pair(x: int) -> tuple[int, int]:
    return (x % KEYS, x)


def right_pair(x: int) -> tuple[int, int]:
    return (x % KEYS, -x)


def hand_join(n: int) -> list:
    """The hand-written baseline: both sides by comprehension, the right side indexed in a dict."""
    left = [left_pair(x) for x in range(n)]
    right = [right_pair(x) for x in range(n)]
    index: defaultdict = defaultdict(list)
    for k, w in right:
        index[k].append(w)
    out = []
    append = out.append
    for k, v in left:
        if k in index:
            for w in index[k]:
                append((k, (v, w)))
    return out


def interleaved(fns: list, repeats: int) -> list[tuple[float, object]]:
    """Return (median wall time, last result) of each of ``fns``, run in rotating order each round."""
    times: list[list[float]] = [[] for _ in fns]
    results: list[object] = [None] * len(fns)
    for round_ in range(repeats):
        for k in range(len(fns)):
            i = (k + round_) % len(fns)
            results[i] = None
            gc.collect()
            start = time.perf_counter()
            results[i] = fns[i]()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), r) for t, r in zip(times, results)]


def table(title: str, rows: list[tuple[str, float]], base: float) -> list[str]:
    lines = [f"### {title}", "", "| variant | median s | x baseline |", "|---|---:|---:|"]
    lines += [f"| {name} | {t:.3f} | {t / base:.2f}x |" for name, t in rows]
    print("\n".join(lines) + "\n")
    return lines


def bench_local(n: int, repeats: int) -> None:
    branches = (Pipeline().map(left_pair), Pipeline().map(right_pair))
    join = Pipeline("join").fork(*branches).join()
    outer = Pipeline("leftOuterJoin").fork(*branches).leftOuterJoin()
    cogroup = Pipeline("cogroup").fork(*branches).cogroup()
    serial, local = SerialExecutor(), LocalExecutor(2)
    data = range(n)
    variants = [
        ("hand-written dict join", lambda: hand_join(n)),
        ("atoll serial join", lambda: join.run(data, executor=serial)),
        ("atoll local n_jobs=2 join", lambda: join.run(data, executor=local)),
        ("atoll serial leftOuterJoin", lambda: outer.run(data, executor=serial)),
        ("atoll serial cogroup", lambda: cogroup.run(data, executor=serial)),
    ]
    found = interleaved([fn for _, fn in variants], repeats)
    expected = found[0][1]
    for (name, _), (_, result) in zip(variants[1:3], found[1:3]):
        assert result == expected, f"{name} differs from the hand-written join"
    assert len(found[4][1]) == len(set(k for k, _ in expected))
    table(f"fork(...).join() of two {n:,}-pair branches (serial and local)",
          [(name, t) for (name, _), (t, _) in zip(variants, found)], found[0][0])


def bench_spark(n: int, repeats: int) -> None:
    from atoll.executors.spark import SparkExecutor

    executor = SparkExecutor(master="local[2]")
    sc = executor.context
    join = Pipeline("join").fork(Pipeline().map(left_pair), Pipeline().map(right_pair)).join()
    data = range(n)

    def raw() -> list:
        rdd = sc.parallelize(data, sc.defaultParallelism).cache()
        try:
            return rdd.map(left_pair).join(rdd.map(right_pair)).collect()
        finally:
            rdd.unpersist()

    variants = [("raw PySpark join", raw),
                ("atoll Spark local[2] join", lambda: join.run(data, executor=executor))]
    found = interleaved([fn for _, fn in variants], repeats)
    assert sorted(found[0][1]) == sorted(found[1][1])
    table(f"fork(...).join() of two {n:,}-pair branches on Spark local[2]",
          [(name, t) for (name, _), (t, _) in zip(variants, found)], found[0][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 pairs, 2 repeats (smoke run)")
    parser.add_argument("--spark", action="store_true", help="also Spark local[2] against raw PySpark")
    parser.add_argument("--repeats", type=int, help="rounds of each variant (default 5, --quick 2)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    n = 50_000 if args.quick else 1_000_000
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, repeats: {repeats}\n")
    bench_local(n, repeats)
    if args.spark:
        bench_spark(n, max(1, repeats // 2) if not args.quick else 1)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
