"""Reading a large JSON-lines file: atoll's ``read_text`` against hand-written code over the same file.

A word count over the ``text`` field of every line (``json.loads`` then ``str.split``), on a file
generated into /tmp (about 1 GB; ``--quick``: 8 MB):

- local: plain Python (one loop, one process); hand-chunked joblib (n_jobs=2, each task reads its own
  line-aligned byte range and counts, the Counters merged); atoll ``read_text(path)`` with n_jobs=2 (each
  worker reads its own byte ranges of ``dataset_partition_bytes``);
- Spark ``local[2]``: atoll ``read_text(path)`` on the Spark executor against raw PySpark
  ``sc.textFile(path).flatMap(...).map(...).reduceByKey(add)``, on the same SparkContext.

Sides alternate; the table shows medians, the ratio to the baseline of each group, and the peak RSS of
each process taking part (sampled every 50 ms: the calling process, its joblib/loky workers, Spark's
Python workers; Spark's JVM separately, since its heap is Java's).

    .venv/bin/python benchmarks/bench_datasets_read.py [--quick] [--mb 1024] [--repeat N] [--no-spark]
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter

import psutil
from joblib import Parallel, delayed

from atoll import LocalExecutor, Pipeline, read_text

add = operator.add


def words_of(line: str) -> list[str]:
    """Return the words of a JSON line's ``text`` field."""
    return json.loads(line)["text"].split() if line.strip() else []


def pair_one(word: str) -> tuple[str, int]:
    return (word, 1)


WORD_COUNT = Pipeline(name="wordcount").flatMap(words_of).map(pair_one).reduceByKey(add)


def generate(path: str, megabytes: int, seed: int = 7) -> None:
    """Write about ``megabytes`` MB of JSON lines (10-14 words each from a 5,000-word vocabulary)."""
    if os.path.exists(path) and os.path.getsize(path) >= megabytes * 1_000_000:
        return
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    pool = [json.dumps({"id": i, "user": f"u{i % 97}",
                        "text": " ".join(rng.choices(vocab, weights, k=rng.randint(10, 14)))}) + "\n"
            for i in range(20_000)]
    block = "".join(pool).encode()
    with open(path + ".part", "wb") as out:
        written = 0
        while written < megabytes * 1_000_000:
            rng.shuffle(pool)
            block = "".join(pool).encode()
            out.write(block)
            written += len(block)
    os.replace(path + ".part", path)


def plain_python(path: str) -> dict:
    counts: Counter = Counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            counts.update(words_of(line))
    return dict(counts)


def count_range(path: str, start: int, end: int) -> Counter:
    """Count the words of the lines starting in bytes [start, end) of ``path`` (joblib task)."""
    counts: Counter = Counter()
    with open(path, "rb") as handle:
        if start:
            handle.seek(start - 1)
            handle.readline()
        while handle.tell() < end:
            line = handle.readline()
            if not line:
                break
            counts.update(words_of(line.decode("utf-8")))
    return counts


def joblib_chunks(path: str, n_jobs: int = 2, size: int = 64 * 1024 * 1024) -> dict:
    length = os.path.getsize(path)
    parts = Parallel(n_jobs=n_jobs)(delayed(count_range)(path, at, min(at + size, length))
                                    for at in range(0, length, size))
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


class PeakRSS:
    """Samples the RSS of this process and its descendants every 50 ms; keeps each one's peak."""

    def __init__(self):
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                rss, name = proc.memory_info().rss, proc.name()
            except psutil.Error:
                continue
            kind = "java" if "java" in name else "python"
            if rss > self.peaks.get(proc.pid, ("", 0))[1]:
                self.peaks[proc.pid] = (kind, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak(self, kind: str = "python") -> float:
        """Return the largest peak RSS of one process of ``kind``, in MB (0 when none ran)."""
        return max((rss for k, rss in self.peaks.values() if k == kind), default=0) / 1e6


def measure(fn, repeat: int, check) -> tuple[float, PeakRSS]:
    times = []
    with PeakRSS() as rss:
        for _ in range(repeat):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
            check(result)
    return statistics.median(times), rss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="an 8 MB file, one run each (a smoke run)")
    ap.add_argument("--mb", type=int, default=None, help="size of the generated file (default 1024)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per side (default 3, quick 1)")
    ap.add_argument("--no-spark", action="store_true", help="leave out the Spark rows")
    ap.add_argument("--partition-mb", type=int, default=None,
                    help="byte range per partition, MB (default: dataset_partition_bytes, 64 MiB)")
    args = ap.parse_args(argv)
    megabytes = args.mb or (8 if args.quick else 1024)
    repeat = args.repeat or (1 if args.quick else 3)
    partition = args.partition_mb * 1024 * 1024 if args.partition_mb else (
        1024 * 1024 if args.quick else None)
    path = f"/tmp/atoll-bench-datasets-read-{megabytes}mb.jsonl"
    generate(path, megabytes)
    size = os.path.getsize(path)

    expected = plain_python(path)

    def check(result):
        if dict(result) != expected:
            raise SystemExit("a side's word count differs from plain Python's")

    source = read_text(path, partition_bytes=partition)
    local = LocalExecutor(2)
    chunk = partition or 64 * 1024 * 1024
    rows = []
    sides = [("plain Python, 1 process", lambda: plain_python(path)),
             ("hand-chunked joblib n_jobs=2", lambda: joblib_chunks(path, 2, chunk)),
             ("atoll read_text n_jobs=2", lambda: WORD_COUNT.run(source, executor=local))]
    WORD_COUNT.run(source, executor=local)  # warm-up: the worker pool starts
    results = {label: measure(fn, repeat, check) for label, fn in sides}
    base = results["plain Python, 1 process"][0]
    for label, (seconds, rss) in results.items():
        rows.append((label, seconds, base / seconds, rss.peak(), None))

    if not args.no_spark:
        from atoll.executors.spark import SparkExecutor, stop_spark_context

        spark = SparkExecutor(master="local[2]", log_level="ERROR")
        sc = spark.context

        def raw_spark():
            return dict(sc.textFile(path, max(1, -(-size // chunk))).flatMap(words_of).map(pair_one)
                        .reduceByKey(add).collect())

        def atoll_spark():
            return WORD_COUNT.run(source, executor=spark)

        raw_spark()  # warm-up: Python workers start
        spark_results = {"raw PySpark textFile local[2]": [], "atoll read_text Spark local[2]": []}
        peaks = {}
        for i in range(repeat):
            order = [("raw PySpark textFile local[2]", raw_spark),
                     ("atoll read_text Spark local[2]", atoll_spark)]
            for label, fn in (order if i % 2 == 0 else order[::-1]):
                seconds, rss = measure(fn, 1, check)
                spark_results[label].append(seconds)
                peaks[label] = max(peaks.get(label, (0, 0)), (rss.peak(), rss.peak("java")))
        raw = statistics.median(spark_results["raw PySpark textFile local[2]"])
        for label, times in spark_results.items():
            seconds = statistics.median(times)
            rows.append((label, seconds, raw / seconds, peaks[label][0], peaks[label][1]))
        stop_spark_context()

    print(f"Word count over a {size / 1e6:,.0f} MB JSON-lines file ({path}), {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}; medians of {repeat} run(s)\n")
    print("| side | seconds | speed vs its baseline | peak RSS per Python process | Spark JVM RSS |")
    print("|---|---:|---:|---:|---:|")
    for label, seconds, ratio, python_mb, java_mb in rows:
        java = "" if java_mb is None else f"{java_mb:,.0f} MB"
        print(f"| {label} | {seconds:.2f} | {ratio:.2f}x | {python_mb:,.0f} MB | {java} |")
    print("\nbaselines: plain Python for the local rows, raw PySpark textFile for the Spark rows; speed = "
          "baseline time / this side's time (goals: atoll Spark >= 0.83x of textFile, i.e. <= 1.2x its "
          "time; peak RSS < 300 MB per Python process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
