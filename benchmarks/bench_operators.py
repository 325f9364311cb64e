"""Benchmark the aggregate, set, group and order operators against hand-written Python, raw joblib and
raw PySpark, in one run.

    .venv/bin/python benchmarks/bench_operators.py            # full run, medians of 5
    .venv/bin/python benchmarks/bench_operators.py --quick    # smoke run: small inputs, 2 repeats
    .venv/bin/python benchmarks/bench_operators.py --no-spark # serial and local only

W3 as ``flatMap(str.split).countByValue()`` over 200,000 generated lines: serial against a
``collections.Counter`` loop, ``n_jobs=2`` against hand-chunked joblib with a Counter per slice, on Spark
(``local[2]``) against raw PySpark's ``flatMap(str.split).countByValue()``.

``distinct``, ``sortBy``, ``groupByKey`` and ``top(10)`` over 1,000,000 elements: serial against the
hand-written Python (``set``, ``sorted``, ``defaultdict(list)``, ``heapq.nlargest``), on Spark against
raw PySpark's ``distinct``, ``sortBy``, ``groupByKey`` and ``top``.

Variants of one workload run in rotating order each round (a slow moment of the shared machine falls on
all alike); the tables show medians.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_local import interleaved, make_lines, table  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from atoll import LocalExecutor, Pipeline, SerialExecutor  # noqa: E402

W3 = Pipeline("W3").flatMap(str.split).countByValue()


def counter_loop(lines: list[str]) -> Counter:
    """The hand-written word count: a Counter updated with each line's words."""
    counts: Counter = Counter()
    for line in lines:
        counts.update(line.split())
    return counts


def raw_joblib_counter(lines: list[str], parallel: Parallel, n_jobs: int = 2) -> Counter:
    """Hand-chunked joblib: the Counter loop per slice of lines in each worker, merged here."""
    size = -(-len(lines) // n_jobs)
    total: Counter = Counter()
    for part in parallel(delayed(counter_loop)(lines[i:i + size]) for i in range(0, len(lines), size)):
        total.update(part)
    return total


def bench_w3(n: int, repeats: int) -> list[str]:
    lines = make_lines(n)
    local = LocalExecutor(2)
    parallel = Parallel(n_jobs=2, backend="loky")
    W3.run(lines[:1000], executor=local)
    raw_joblib_counter(lines[:1000], parallel)
    runs = interleaved([lambda: counter_loop(lines), lambda: Counter(w for x in lines for w in x.split()),
                        lambda: raw_joblib_counter(lines, parallel),
                        lambda: W3.run(lines, executor=SerialExecutor()),
                        lambda: W3.run(lines, executor=local)], repeats)
    ((t_loop, expected), (t_gen, counted), (t_raw, raw), (t_serial, ser), (t_local, got)) = runs
    assert expected == counted == raw == ser == got
    rows = [("Counter loop: counts.update(line.split())", t_loop, f"{sum(expected.values()):,} words"),
            ("Counter(w for line in lines for w in line.split())", t_gen, ""),
            ("raw joblib n_jobs=2, a Counter loop per slice", t_raw, "one list slice per worker, merged"),
            ("atoll serial flatMap(str.split).countByValue()", t_serial,
             f"{t_serial / t_loop:.2f}x the Counter loop (target <= 1.0x)"),
            ("atoll local n_jobs=2", t_local,
             f"{t_local / t_raw:.2f}x raw joblib with a Counter per slice (target <= 1.0x)")]
    return table(f"W3 as countByValue, {n:,} lines", rows, t_loop)


def groups_by_hand(pairs: list) -> dict:
    """The hand-written groupByKey: a defaultdict of lists."""
    groups = defaultdict(list)
    for k, v in pairs:
        groups[k].append(v)
    return groups


def one_million(n: int) -> tuple[list[int], list[tuple[int, int]]]:
    rng = random.Random(3)
    ints = [rng.randrange(n // 10) for _ in range(n)]
    pairs = [(x % 1000, x) for x in ints]
    return ints, pairs


def bench_serial_sets(n: int, repeats: int) -> list[str]:
    ints, pairs = one_million(n)
    serial = SerialExecutor()
    out: list[str] = []
    for what, hand, atoll_pipeline, data, same in [
            ("distinct", lambda: list(set(ints)), Pipeline().distinct(), ints, lambda a, b: set(a) == set(b)),
            ("sortBy", lambda: sorted(ints), Pipeline().sortBy(), ints, list.__eq__),
            ("groupByKey", lambda: groups_by_hand(pairs), Pipeline().groupByKey(), pairs,
             lambda a, b: dict(a) == dict(b)),
            ("top(10)", lambda: heapq.nlargest(10, ints), Pipeline().top(10), ints, list.__eq__)]:
        (t_hand, expected), (t_atoll, got) = interleaved(
            [hand, lambda p=atoll_pipeline, d=data: p.run(d, executor=serial)], repeats)
        assert same(expected, got), what
        out.append((what, t_hand, t_atoll))
    rows = []
    for what, t_hand, t_atoll in out:
        rows.append((f"{what}: hand-written", t_hand, ""))
        rows.append((f"{what}: atoll serial", t_atoll,
                     f"{t_atoll / t_hand:.2f}x hand-written (target <= 1.2x)"))
    return table(f"sets, groups and order, serial, {n:,} elements", rows, min(r[1] for r in rows))


def bench_spark(n_lines: int, n: int, repeats: int) -> list[str]:
    from atoll.executors import spark as atoll_spark
    from atoll.executors.spark import SparkExecutor

    executor = SparkExecutor(master="local[2]", log_level="ERROR")
    sc = executor.context
    lines = make_lines(n_lines)
    ints, pairs = one_million(n)
    cases = [
        ("W3 countByValue", lambda: W3.run(lines, executor=executor),
         lambda: sc.parallelize(lines).flatMap(str.split).countByValue(), lambda a, b: dict(a) == dict(b)),
        ("distinct", lambda: Pipeline().distinct().run(ints, executor=executor),
         lambda: sc.parallelize(ints).distinct().collect(), lambda a, b: set(a) == set(b)),
        ("sortBy", lambda: Pipeline().sortBy().run(ints, executor=executor),
         lambda: sc.parallelize(ints).sortBy(lambda x: x).collect(), list.__eq__),
        ("groupByKey", lambda: Pipeline().groupByKey().run(pairs, executor=executor),
         lambda: sc.parallelize(pairs).groupByKey().mapValues(list).collect(),
         lambda a, b: dict(a) == dict(b)),
        ("top(10)", lambda: Pipeline().top(10).run(ints, executor=executor),
         lambda: sc.parallelize(ints).top(10), list.__eq__)]
    rows = []
    for what, atoll_fn, raw_fn, same in cases:
        atoll_fn(), raw_fn()  # warm-up: Python workers start
        (t_raw, expected), (t_atoll, got) = interleaved([raw_fn, atoll_fn], repeats)
        assert same(expected, got), what
        target = ">= 1.5x" if what.startswith("W3") else ">= 1.0x"
        rows.append((f"{what}: raw PySpark", t_raw, ""))
        rows.append((f"{what}: atoll Spark", t_atoll, f"{t_raw / t_atoll:.2f}x faster than raw PySpark "
                                                      f"(target {target})"))
    atoll_spark.stop_spark_context()
    return table(f"Spark local[2]: W3 {n_lines:,} lines; the others {n:,} elements", rows,
                 min(r[1] for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 2 repeats (smoke run)")
    parser.add_argument("--no-spark", action="store_true", help="leave out the Spark table")
    parser.add_argument("--repeats", type=int, help="rounds of each workload (default 5, --quick 2)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    n_lines = 20_000 if args.quick else 200_000
    n = 100_000 if args.quick else 1_000_000
    bench_w3(n_lines, repeats)
    bench_serial_sets(n, repeats)
    if not args.no_spark:
        bench_spark(n_lines, n, repeats)


if __name__ == "__main__":
    main()
