"""Benchmark a synchronous response of ~5 MB of JSON results: orjson (the ``fast`` extra) against the
json module, through the same Flask app (``app.test_client()``, no network), in one interleaved run.

    .venv/bin/python benchmarks/bench_encoding.py            # 7 rounds, medians
    .venv/bin/python benchmarks/bench_encoding.py --quick    # smoke run: 2 rounds

The pipeline answers a small request (a row count) with rows made before the run (so the response
is the work measured, not the pipeline): ints, floats, strings, nested lists and a tuple per row,
about 5 MB of JSON in all.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from atoll import Atoll, Pipeline, encoding  # noqa: E402


def row(i: int) -> dict:
    """Return one result row of mixed JSON values."""
    return {"id": i, "name": f"item-{i}", "score": i / 7, "tags": ["a", "b", str(i % 13)],
            "point": (i % 100, -i), "ok": i % 2 == 0, "note": None}


ROWS = [row(i) for i in range(44_000)]  # ~5 MB of JSON


def first_rows(n: int) -> list:
    """Return the first ``n`` prepared rows."""
    return ROWS[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds (smoke run)")
    args = parser.parse_args()
    rounds = 2 if args.quick else 7
    service = Atoll()
    service.register_pipeline("/rows", Pipeline(name="rows").to(first_rows))
    client = service.create_app().test_client()
    n = len(ROWS)
    fast_module = encoding.orjson
    if fast_module is None:
        sys.exit("orjson is not installed: pip install 'atoll[fast]'")

    def call(module) -> tuple[float, bytes]:
        encoding.orjson = module
        gc.collect()
        start = time.perf_counter()
        response = client.post("/pipelines/rows", json={"data": n})
        seconds = time.perf_counter() - start
        assert response.status_code == 200, response.get_data(as_text=True)[:200]
        return seconds, response.get_data()

    times: dict[str, list[float]] = {"json module": [], "orjson": []}
    bodies = {}
    try:
        for i in range(rounds):
            order = [("json module", None), ("orjson", fast_module)]
            for name, module in order if i % 2 == 0 else order[::-1]:
                seconds, bodies[name] = call(module)
                times[name].append(seconds)
        just_encoding = {}
        results = json.loads(bodies["orjson"])["results"]
        for name, module in [("json module", None), ("orjson", fast_module)]:
            encoding.orjson = module
            just = []
            for _ in range(rounds):
                start = time.perf_counter()
                encoding.to_json({"results": results})
                just.append(time.perf_counter() - start)
            just_encoding[name] = statistics.median(just)
    finally:
        encoding.orjson = fast_module
    assert json.loads(bodies["orjson"]) == json.loads(bodies["json module"])
    size = len(bodies["orjson"]) / 2**20
    base = statistics.median(times["json module"])
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {rounds} rounds, response {size:.1f} MiB\n")
    print("| encoder | median s, whole request | x json module | median s, to_json alone |")
    print("|---|---:|---:|---:|")
    for name in times:
        t = statistics.median(times[name])
        print(f"| {name} | {t:.3f} | {t / base:.2f} | {just_encoding[name]:.3f} |")


if __name__ == "__main__":
    main()
