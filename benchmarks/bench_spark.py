"""Spark executor vs the same computation hand-written against the PySpark RDD API, on ``local[2]``.

W1: range(1_000_000) -> map(x+1) -> filter(even) -> map(x*2) -> reduce(add)
W3: 200,000 generated lines -> flatMap(split) -> map((w, 1)) -> reduceByKey(add)

Both sides run in the same process on the same SparkContext, alternating, after one warm-up run each;
the table shows medians. SparkContext start-up is measured separately (stop and start again).

    .venv/bin/python benchmarks/bench_spark.py [--quick] [--repeat N] [--master local[2]]
"""

from __future__ import annotations

import argparse
import operator
import os
import random
import statistics
import subprocess
import sys
import time

from workloads import double, inc, is_even, pair_one

from atoll import Pipeline
from atoll.executors import spark as atoll_spark
from atoll.executors.spark import SparkExecutor

add = operator.add


def lines_of_words(n: int, seed: int = 7) -> list[str]:
    """Return ``n`` lines of 8-12 words drawn from a 2,000-word vocabulary (Zipf-like frequencies)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(2000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    return [" ".join(rng.choices(vocab, weights, k=rng.randint(8, 12))) for _ in range(n)]


def workloads(quick: bool):
    n1 = 200_000 if quick else 1_000_000
    n3 = 40_000 if quick else 200_000
    lines = lines_of_words(n3)

    w1 = Pipeline(name="W1").map(inc).filter(is_even).map(double).reduce(add)
    wc = Pipeline(name="W3").flatMap(str.split).map(pair_one).reduceByKey(add)

    def w1_atoll(ex):
        return w1.run(range(n1), executor=ex)

    def w1_rdd(sc):
        return (sc.parallelize(range(n1)).map(inc).filter(is_even).map(double).reduce(add))

    def w3_atoll(ex):
        return dict(wc.run(lines, executor=ex))

    def w3_rdd(sc):
        return dict(sc.parallelize(lines).flatMap(str.split).map(pair_one).reduceByKey(add)
                    .collect())

    return [(f"W1 tiny chain, {n1:,} items", w1_atoll, w1_rdd),
            (f"W3 word count, {n3:,} lines", w3_atoll, w3_rdd)]


def cold_start(master: str) -> float:
    """Return the seconds a fresh Python process takes to start atoll's SparkContext."""
    code = ("import time; from atoll.executors.spark import SparkExecutor; t = time.perf_counter(); "
            f"SparkExecutor(master={master!r}, log_level='ERROR').context; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def timed(fn, arg) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(arg)
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats (a smoke run)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per side (default 7, quick 2)")
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 7)

    cold = [cold_start(args.master) for _ in range(1 if args.quick else 3)]
    executor = SparkExecutor(master=args.master, log_level="ERROR")
    executor.context  # noqa: B018 - launches this process's JVM; restarts below reuse it
    warm = []
    for _ in range(1 if args.quick else 3):
        atoll_spark.stop_spark_context()
        elapsed, sc = timed(lambda ex: ex.context, executor)
        warm.append(elapsed)
    print(f"Spark executor vs hand-written PySpark RDD code on {args.master}, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}, pyspark {sc.version}")
    print(f"SparkContext start-up: in a fresh process (JVM launch included) median "
          f"{statistics.median(cold):.2f} s of {len(cold)}; again in a running process "
          f"{statistics.median(warm):.2f} s\n")

    rows = []
    for label, atoll_fn, rdd_fn in workloads(args.quick):
        _, expected = timed(rdd_fn, sc)  # warm-up: Python workers start, JIT warms
        _, got = timed(atoll_fn, executor)
        if got != expected:
            raise SystemExit(f"{label}: atoll's result differs from the hand-written one")
        atoll_times, rdd_times = [], []
        for i in range(repeat):
            order = [(rdd_fn, sc, rdd_times), (atoll_fn, executor, atoll_times)]
            for fn, arg, times in (order if i % 2 == 0 else order[::-1]):
                times.append(timed(fn, arg)[0])
        rdd_med, atoll_med = statistics.median(rdd_times), statistics.median(atoll_times)
        rows.append((label, rdd_med, atoll_med, rdd_med / atoll_med, min(rdd_times) / min(atoll_times)))

    print(f"{'workload':32} {'hand-written RDD':>17} {'atoll Spark':>12} {'atoll speed':>12} "
          f"{'(best runs)':>12}")
    for label, rdd_med, atoll_med, ratio, best in rows:
        print(f"{label:32} {rdd_med:>15.3f} s {atoll_med:>10.3f} s {ratio:>11.2f}x {best:>11.2f}x")
    print(f"\nmedians of {repeat} alternating runs; atoll speed = hand-written time / atoll time "
          f"(target >= 0.9x); best runs = the same ratio of the fastest run of each side")
    atoll_spark.stop_spark_context()
    return 0


if __name__ == "__main__":
    sys.exit(main())
