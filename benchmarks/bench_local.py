"""Benchmark the serial and local executors against plain Python and raw joblib (W1, W2, W3).

    .venv/bin/python benchmarks/bench_local.py            # full run, medians of 7
    .venv/bin/python benchmarks/bench_local.py --quick    # smoke run: small inputs, 2 repeats

W1 tiny chain: range(1_000_000) -> map(x+1) -> filter(even) -> map(x*2) -> reduce(add).
W2 CPU-bound: 400 items of ~10 ms pure-Python work -> map -> reduce(add).
W3 word count: 200,000 generated lines -> flatMap(split) -> map((w, 1)) -> reduceByKey(add).
W1 and W3 also run on list inputs (what a user passes), against a plain loop calling the same
workload functions and against raw joblib hand-chunked into one list slice per worker.

Every variant of a workload runs once per round, rounds repeated, the order rotating each round, so
that a slow moment of the machine (a 2-vCPU VM shares its cores) falls on every variant alike; the
tables show medians. Raw joblib rows are the same work written by hand the way a careful user would
(fused per chunk, one chunk per worker), the baseline the local executor's scheduling is measured against.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from operator import add

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from joblib import Parallel, delayed  # noqa: E402
from workloads import double, inc, is_even, pair_one  # noqa: E402

from atoll import LocalExecutor, Pipeline, SerialExecutor  # noqa: E402


def interleaved(fns: list, repeats: int) -> list[tuple[float, object]]:
    """Return (median wall time, last result) of each of ``fns``, run in rotating order each round."""
    times: list[list[float]] = [[] for _ in fns]
    results: list[object] = [None] * len(fns)
    for round_ in range(repeats):
        for k in range(len(fns)):
            i = (k + round_) % len(fns)
            gc.collect()
            start = time.perf_counter()
            results[i] = fns[i]()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), r) for t, r in zip(times, results)]


def peak_bytes(fn) -> int:
    """Return the peak memory traced while ``fn()`` runs in this process."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def table(title: str, rows: list[tuple[str, float, str]], floor: float) -> list[str]:
    """Print and return a table of (what, seconds, note) with ratios to ``floor``."""
    lines = [f"### {title}", "", "| what | median s | x floor | note |", "|---|---:|---:|---|"]
    for what, seconds, note in rows:
        lines.append(f"| {what} | {seconds:.3f} | {seconds / floor:.2f} | {note} |")
    print("\n".join(lines) + "\n")
    return lines + [""]


# -- W1 ---------------------------------------------------------------------------------------------

def shared(plan: dict) -> str:
    """How the last local pass was shared: chunks to the worker (the largest), chunks run here."""
    return (f"{plan['chunks']} chunks to the worker (up to {plan['chunk_size']:,}), "
            f"{plan['here']} run by the caller")


def w1_loop(n: int) -> int:
    total = 0
    for x in range(n):
        y = x + 1
        if y % 2 == 0:
            total += y * 2
    return total


W1 = Pipeline("W1").map(inc).filter(is_even).map(double).reduce(add)


def _stage_map(f, chunk):
    return [f(x) for x in chunk]


def _stage_filter(f, chunk):
    return [x for x in chunk if f(x)]


def _stage_reduce(f, chunk):
    acc = chunk[0]
    for x in chunk[1:]:
        acc = f(acc, x)
    return [acc]


def per_stage_joblib(data: list, n_jobs: int) -> int:
    """What the original atoll did with n_jobs: one Parallel call per stage, data shipped each time
    (here hand-chunked into n_jobs pieces, which is kinder than the original's one task per element)."""
    stages = [(_stage_map, inc), (_stage_filter, is_even), (_stage_map, double), (_stage_reduce, add)]
    parallel = Parallel(n_jobs=n_jobs, backend="loky")
    for kind, f in stages:
        size = max(1, -(-len(data) // n_jobs))
        parts = parallel(delayed(kind)(f, data[i:i + size]) for i in range(0, len(data), size))
        data = [x for part in parts for x in part]
    return add(*data) if len(data) == 2 else data[0]


def _w1_chunk(chunk: range) -> int:
    return functools.reduce(add, map(double, filter(is_even, map(inc, chunk))), 0)


def raw_chain(n: int) -> int:
    """The same three functions chained with the C builtins map/filter/reduce, no atoll."""
    return _w1_chunk(range(n))


def raw_joblib(n: int, n_jobs: int, parallel: Parallel) -> int:
    """Hand-chunked joblib: one fused chunk per worker, partial sums added here."""
    size = -(-n // n_jobs)
    return sum(parallel(delayed(_w1_chunk)(range(i, min(i + size, n))) for i in range(0, n, size)))


def bench_w1(n: int, repeats: int) -> list[str]:
    expected = w1_loop(n)

    joblib_n = n
    start = time.perf_counter()
    assert per_stage_joblib(list(range(min(n, 100_000))), 2) == w1_loop(min(n, 100_000))
    if (time.perf_counter() - start) * n / min(n, 100_000) > 30:
        joblib_n = 100_000

    serial = SerialExecutor()
    local = LocalExecutor(2)
    start = time.perf_counter()
    assert W1.run(range(n), executor=local) == expected
    cold = time.perf_counter() - start
    parallel = Parallel(n_jobs=2, backend="loky")
    assert raw_joblib(n, 2, parallel) == expected
    runs = interleaved([lambda: w1_loop(n), lambda: raw_chain(n),
                        lambda: raw_joblib(n, 2, parallel),
                        lambda: per_stage_joblib(list(range(joblib_n)), 2),
                        lambda: W1.run(range(n), executor=serial),
                        lambda: W1.run(range(n), executor=local)], repeats)
    (floor, got), (t_chain, chained), (t_raw, raw), (t_stage, staged), (t_serial, ser), (t, loc) = runs
    assert got == chained == raw == ser == loc == expected and staged == w1_loop(joblib_n)
    plan = local.last_plan
    note = "" if joblib_n == n else f"input capped at {joblib_n:,}; time scaled x{n / joblib_n:.0f}"
    rows = [("plain Python fused loop (floor)", floor, ""),
            ("raw C chain: reduce(add, map(double, filter(is_even, map(inc, ...))))", t_chain,
             "the same three functions, no atoll"),
            ("raw joblib n_jobs=2, hand-chunked and fused", t_raw, "one chunk per worker"),
            ("per-stage joblib, n_jobs=2 (original atoll's shape)", t_stage * n / joblib_n, note),
            ("atoll serial", t_serial, ""),
            ("atoll local n_jobs=2 (warm pool)", t,
             f"{shared(plan)}; "
             f"{'never slower' if t <= t_serial else 'SLOWER'} than serial"),
            ("atoll local n_jobs=2, first call (cold pool)", cold, "includes starting workers")]
    lines = table(f"W1 tiny chain, {n:,} items", rows, floor)

    held = peak_bytes(lambda: list(range(n)))
    mem_rows = [("holding the input list", held)]
    mem_rows.append(("atoll serial, range input", peak_bytes(lambda: W1.run(range(n), executor=serial))))
    mem_rows.append(("atoll local n_jobs=2, range input",
                     peak_bytes(lambda: W1.run(range(n), executor=local))))
    mem_rows.append(("atoll serial, generator input",
                     peak_bytes(lambda: W1.run((x for x in range(n)), executor=serial))))
    mem_rows.append(("atoll local n_jobs=2, generator input",
                     peak_bytes(lambda: W1.run((x for x in range(n)), executor=local))))
    mem = [f"### W1 peak memory, {n:,} items (tracemalloc, calling process; workers not included)", "",
           "| what | peak MiB | x input list |", "|---|---:|---:|"]
    for what, b in mem_rows:
        mem.append(f"| {what} | {b / 2**20:.1f} | {b / held:.2f} |")
    print("\n".join(mem) + "\n")
    return lines + mem + [""]


def w1_loop_calls(data: list) -> int:
    """The fused loop a user writes by hand, calling the same workload functions."""
    total = 0
    for x in data:
        y = inc(x)
        if is_even(y):
            total += double(y)
    return total


def raw_joblib_list(data: list, n_jobs: int, parallel: Parallel) -> int:
    """Hand-chunked joblib over a list: one slice per worker, each fused, partial sums added here."""
    size = -(-len(data) // n_jobs)
    return sum(parallel(delayed(_w1_chunk)(data[i:i + size]) for i in range(0, len(data), size)))


def bench_w1_list(n: int, repeats: int) -> list[str]:
    data = list(range(n))
    expected = w1_loop_calls(data)
    serial = SerialExecutor()
    local = LocalExecutor(2)
    parallel = Parallel(n_jobs=2, backend="loky")
    assert W1.run(data, executor=local) == raw_joblib_list(data, 2, parallel) == expected
    runs = interleaved([lambda: w1_loop_calls(data), lambda: w1_loop(n),
                        lambda: raw_joblib_list(data, 2, parallel),
                        lambda: W1.run(data, executor=serial),
                        lambda: W1.run(data, executor=local)], repeats)
    (floor, got), (t_inline, inline), (t_raw, raw), (t_serial, ser), (t, loc) = runs
    assert got == inline == raw == ser == loc == expected
    plan = local.last_plan
    rows = [("plain Python fused loop calling inc/is_even/double (floor)", floor, ""),
            ("plain Python loop, arithmetic inline (no calls)", t_inline, "range input"),
            ("raw joblib n_jobs=2, hand-chunked list slices, fused", t_raw, "one slice per worker"),
            ("atoll serial", t_serial, "target <= 1.3x floor"),
            ("atoll local n_jobs=2 (warm pool)", t,
             f"{shared(plan)}; {t / t_raw:.2f}x raw joblib "
             f"(target <= 1.0x)")]
    return table(f"W1 tiny chain, list of {n:,} ints", rows, floor)


# -- W2 ---------------------------------------------------------------------------------------------

def busy(x: int, loops: int) -> int:
    acc = 0
    for i in range(loops):
        acc = (acc + i * x) % 1_000_003
    return acc


def calibrate(target: float = 0.010) -> int:
    loops = 10_000
    start = time.perf_counter()
    busy(3, loops)
    per = (time.perf_counter() - start) / loops
    return max(1, int(target / per))


def bench_w2(items: int, repeats: int) -> list[str]:
    loops = calibrate()
    p = Pipeline("W2").map(busy, loops).reduce(add)
    data = list(range(items))
    local = LocalExecutor(2)
    p.run(data[:50], executor=local)  # warm the pool
    parallel = Parallel(n_jobs=2, backend="loky")
    runs = interleaved([lambda: p.run(data, executor=SerialExecutor()),
                        lambda: sum(parallel(delayed(busy)(x, loops) for x in data)),
                        lambda: p.run(data, executor=local)], repeats)
    (t_serial, expected), (t_raw, raw), (t_local, got) = runs
    assert got == raw == expected
    rows = [("atoll serial (baseline)", t_serial, f"{items} items, ~{t_serial / items * 1e3:.1f} ms each"),
            ("raw joblib Parallel(n_jobs=2), one task per item", t_raw,
             f"speed-up {t_serial / t_raw:.2f}x: what these 2 cores give"),
            ("atoll local n_jobs=2", t_local,
             f"speed-up {t_serial / t_local:.2f}x; {shared(local.last_plan)}")]
    return table(f"W2 CPU-bound, {items} items", rows, t_serial)


# -- W3 ---------------------------------------------------------------------------------------------

def make_lines(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                  for _ in range(5_000)]
    return [" ".join(rng.choices(vocabulary, k=rng.randint(4, 14))) for _ in range(n)]


W3 = Pipeline("W3").flatMap(str.split).map(pair_one).reduceByKey(add)


def _count_words(lines: list[str]) -> Counter:
    return Counter(w for line in lines for w in line.split())


def dict_loop(lines: list[str]) -> dict:
    """The word count a user writes by hand: a dict and two loops, calling the same ``pair_one``."""
    counts: dict = {}
    for line in lines:
        for word in line.split():
            w, n = pair_one(word)
            counts[w] = counts.get(w, 0) + n
    return counts


def raw_joblib_dicts(lines: list[str], parallel: Parallel, n_jobs: int = 2) -> dict:
    """Hand-chunked joblib calling the same functions as atoll: the dict loop per slice, merged here."""
    size = -(-len(lines) // n_jobs)
    total: dict = {}
    for part in parallel(delayed(dict_loop)(lines[i:i + size]) for i in range(0, len(lines), size)):
        for w, n in part.items():
            total[w] = total.get(w, 0) + n
    return total


def raw_joblib_counter(lines: list[str], parallel: Parallel, n_jobs: int = 2) -> Counter:
    """Hand-chunked joblib: a Counter per chunk of lines in each worker, merged here."""
    size = -(-len(lines) // n_jobs)
    total: Counter = Counter()
    for part in parallel(delayed(_count_words)(lines[i:i + size]) for i in range(0, len(lines), size)):
        total.update(part)
    return total


def bench_w3(n: int, repeats: int) -> list[str]:
    lines = make_lines(n)
    local = LocalExecutor(2)
    W3.run(lines[:1000], executor=local)
    parallel = Parallel(n_jobs=2, backend="loky")
    raw_joblib_counter(lines[:1000], parallel)
    runs = interleaved([lambda: _count_words(lines), lambda: dict_loop(lines),
                        lambda: raw_joblib_dicts(lines, parallel),
                        lambda: raw_joblib_counter(lines, parallel),
                        lambda: W3.run(lines, executor=SerialExecutor()),
                        lambda: W3.run(lines, executor=local)], repeats)
    ((floor, expected), (t_dict, by_hand), (t_raw, raw), (t_counter, counted), (t_serial, ser),
     (t_local, got)) = runs
    assert raw == counted == expected == by_hand and dict(ser) == expected and dict(got) == expected
    rows = [("collections.Counter (floor)", floor, f"{sum(expected.values()):,} words"),
            ("hand-written dict loop calling pair_one", t_dict, "counts[w] = counts.get(w, 0) + n"),
            ("raw joblib n_jobs=2, the dict loop per chunk", t_raw,
             "one list slice per worker, merged; the same functions as atoll"),
            ("raw joblib n_jobs=2, a Counter per chunk", t_counter,
             "one list slice per worker, merged; counts in C, no pair_one"),
            ("atoll serial", t_serial, f"{t_serial / t_dict:.2f}x the dict loop (target <= 1.0x)"),
            ("atoll local n_jobs=2", t_local, f"{shared(local.last_plan)}; "
             f"{t_local / t_raw:.2f}x raw joblib with the dict loop (target <= 1.0x), "
             f"{t_local / t_counter:.2f}x with Counter")]
    return table(f"W3 word count, {n:,} lines", rows, floor)


# -- streaming -------------------------------------------------------------------------------------

def generated_lines(n: int, seed: int = 11):
    """Yield ``n`` lines of words, made on the fly from a 5,000-word vocabulary (never held whole)."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                  for _ in range(5_000)]
    choices = rng.choices
    for _ in range(n):
        yield " ".join(choices(vocabulary, k=10))


class PeakRSS:
    """Samples the resident memory of this process and of each child process every 50 ms."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.peaks: dict[int, int] = {}
        self.running = False

    def _sample(self) -> None:
        import psutil

        while self.running:
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
            time.sleep(0.05)

    def __enter__(self):
        import threading

        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def bench_stream(n: int) -> list[str]:
    """Word count of a generator of ``n`` lines with n_jobs=2: time and peak RSS of every process."""
    import psutil

    local = LocalExecutor(2)
    W3.run(list(generated_lines(2_000)), executor=local)  # the pool started before sampling
    start = time.perf_counter()
    with PeakRSS() as rss:
        counts = W3.run(generated_lines(n), executor=local)
    seconds = time.perf_counter() - start
    tenth = n // 10
    (gen_only, _), (serial, by_serial), (parallel, by_local) = interleaved(
        [lambda: sum(1 for _ in generated_lines(tenth)),
         lambda: W3.run(generated_lines(tenth), executor=SerialExecutor()),
         lambda: W3.run(generated_lines(tenth), executor=local)], 3)
    assert sum(v for _, v in counts) == 10 * n and dict(by_serial) == dict(by_local)
    me = os.getpid()
    workers = sorted(pid for pid in rss.peaks if pid != me and "popen_loky" in " ".join(
        psutil.Process(pid).cmdline()))
    lines = [f"### Streaming word count: a generator of {n:,} lines (10 words each), n_jobs=2", "",
             "| what | value |", "|---|---:|",
             f"| wall time | {seconds:.1f} s |",
             f"| on a tenth ({tenth:,} lines), medians of 3 interleaved: making the lines alone | "
             f"{gen_only:.1f} s |",
             f"| on a tenth: atoll serial | {serial:.1f} s |",
             f"| on a tenth: atoll n_jobs=2 | {parallel:.1f} s ({serial / parallel:.2f}x serial's "
             f"speed) |",
             f"| chunks | {local.last_plan['chunks'] or 'read as they come'}, "
             f"{local.last_plan['chunk_size']:,} lines each |",
             f"| peak RSS, calling process | {rss.peaks[me] / 2**20:.0f} MiB |"]
    for i, pid in enumerate(workers):
        lines.append(f"| peak RSS, worker {i + 1} | {rss.peaks[pid] / 2**20:.0f} MiB |")
    print("\n".join(lines) + "\n")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 2 repeats (smoke run)")
    parser.add_argument("--only", choices=["w1", "w1list", "w2", "w3", "stream"],
                        help="run one workload (stream: a 10M-line generator, run only when asked)")
    parser.add_argument("--repeats", type=int, help="rounds of each workload (default 7, --quick 2)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 7)
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, repeats: {repeats}, "
          f"load average at start: {os.getloadavg()[0]:.1f}\n")
    out = []
    if args.only in (None, "w1"):
        out += bench_w1(100_000 if args.quick else 1_000_000, repeats)
    if args.only in (None, "w1list"):
        out += bench_w1_list(100_000 if args.quick else 1_000_000, repeats)
    if args.only in (None, "w2"):
        out += bench_w2(40 if args.quick else 400, repeats)
    if args.only in (None, "w3"):
        out += bench_w3(20_000 if args.quick else 200_000, repeats)
    if args.only == "stream":
        out += bench_stream(200_000 if args.quick else 10_000_000)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
