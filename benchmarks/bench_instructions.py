"""Count the instructions atoll's serial executor runs against the hand-written loops (W1, W3), and
with ``on_error="collect"`` when nothing fails.

    .venv/bin/python benchmarks/bench_instructions.py          # W1 over 100,000 ints, W3 over 20,000 lines
    .venv/bin/python benchmarks/bench_instructions.py --quick  # smoke run: small inputs

Wall-clock ratios near 1.0 (W3 serial against the dict loop: 0.85-1.06x from run to run on a 2-vCPU
VM) cannot tell a 2 % difference from the machine's noise. This script runs each variant in a Python
process under valgrind's callgrind, which counts the instructions the CPU executes: the same count
for the same work whatever else the machine is doing. Each variant runs once to warm up (a pass is
compiled, a fold by key learns how to fold), then ``runs`` times; the count of a process that runs
it once more than another, less the other's, is the count of one run, with the interpreter's start
and the input's making cancelled out. A dictionary's layout, and so its lookups' collisions, depends
on the seed of ``str`` hashes: each count is taken with ``PYTHONHASHSEED`` set to 0, 1, ... and the
table shows the mean and the range over the seeds.

Instructions are not time: a cache miss or a mispredicted branch costs more than an add. The count
says which variant does less work; bench_local.py says what that is worth in seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

#: (workload, variant) -> what the table calls it
VARIANTS = {
    ("w1", "loop"): "plain Python fused loop calling inc/is_even/double (floor)",
    ("w1", "atoll"): "atoll serial",
    ("w1", "collect"): "atoll serial, on_error collect (nothing failing)",
    ("w3", "loop"): "hand-written dict loop calling pair_one (floor)",
    ("w3", "atoll"): "atoll serial",
    ("w3", "collect"): "atoll serial, on_error collect (nothing failing)",
}


def child(workload: str, variant: str, size: int, runs: int) -> None:
    """Make the input, run the variant once to warm up, then ``runs`` times (under callgrind)."""
    from bench_local import W1, W3, dict_loop, make_lines, w1_loop_calls

    from atoll import SerialExecutor

    if workload == "w1":
        data = list(range(size))
        work = {"loop": lambda: w1_loop_calls(data), "atoll": lambda: W1.run(data, executor=SerialExecutor()),
                "collect": lambda: W1.run(data, executor=SerialExecutor(), on_error="collect").results}
    else:
        data = make_lines(size)
        work = {"loop": lambda: dict_loop(data), "atoll": lambda: W3.run(data, executor=SerialExecutor()),
                "collect": lambda: W3.run(data, executor=SerialExecutor(), on_error="collect").results}
    run = work[variant]
    expected = run()
    for _ in range(runs):
        assert run() == expected


def instructions(workload: str, variant: str, size: int, runs: int, seed: int) -> int:
    """Return the instructions a process running the variant ``runs`` times (after its warm-up) executes."""
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         os.path.abspath(__file__), "--child", workload, variant, str(size), str(runs)],
        capture_output=True, text=True, env=env, cwd=HERE, check=False)
    found = re.search(r"I\s+refs:\s*([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {workload} {variant} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one seed: a smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="hash seeds to count with (default 3)")
    parser.add_argument("--child", nargs=4, metavar=("WORKLOAD", "VARIANT", "SIZE", "RUNS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, variant, size, runs = args.child
        child(workload, variant, int(size), int(runs))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    sizes = {"w1": 10_000, "w3": 2_000} if args.quick else {"w1": 100_000, "w3": 20_000}
    extra = 1 if args.quick else 3
    seeds = range(1 if args.quick else args.seeds)
    titles = {"w1": f"W1 tiny chain, list of {sizes['w1']:,} ints",
              "w3": f"W3 word count, {sizes['w3']:,} lines"}
    print(f"python {sys.version.split()[0]}, valgrind callgrind, instructions of one run (a process of "
          f"{1 + extra} runs less one of 1), PYTHONHASHSEED {', '.join(map(str, seeds))}\n")
    # one process per variant and count of runs; callgrind runs a process on one core at a time, so
    # they are counted side by side (the counts do not depend on what else runs)
    jobs = [(w, variant, runs, seed) for w, variant in VARIANTS for runs in (1, 1 + extra) for seed in seeds]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        counted = dict(zip(jobs, pool.map(lambda job: instructions(job[0], job[1], sizes[job[0]], *job[2:]),
                                          jobs)))
    # per variant, per seed: one run's instructions; and each seed's ratio to the floor of that seed
    counts = {(w, variant): [(counted[(w, variant, 1 + extra, seed)] - counted[(w, variant, 1, seed)]) / extra
                             for seed in seeds] for w, variant in VARIANTS}
    for workload in ("w1", "w3"):
        floor = counts[(workload, "loop")]
        print(f"### {titles[workload]}\n\n| what | instructions per run (mean) | x floor (mean) "
              f"| x floor (range over seeds) |\n|---|---:|---:|---:|")
        for (w, variant), name in VARIANTS.items():
            if w == workload:
                ratios = [n / f for n, f in zip(counts[(w, variant)], floor)]
                print(f"| {name} | {statistics.mean(counts[(w, variant)]):,.0f} | "
                      f"{statistics.mean(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |")
        print()


if __name__ == "__main__":
    main()
