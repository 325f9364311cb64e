"""Benchmark the synchronous HTTP path: ``atoll serve`` against a bare Flask endpoint calling the same
function under gunicorn with the same settings (2 workers x 4 threads), loaded by ``wrk`` with 8
connections on loopback in the same run (a Python load generator when wrk is missing). The bare
endpoint runs twice: under gunicorn's ``gthread`` worker (the baseline) and under atoll's worker
(``atoll.service.server.BufferingWorker``, what ``atoll serve`` runs), which shows what reading whole
requests in the main loop costs by itself.

    .venv/bin/python benchmarks/bench_service.py            # 3 rounds of 10 s each, medians
    .venv/bin/python benchmarks/bench_service.py --quick    # smoke run: 1 round of 3 s

The request body is 10 comments; the pipeline maps a text-metrics function over them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from flask import Flask, request  # noqa: E402

from atoll import Atoll, Pipeline  # noqa: E402
from atoll.cli import ACCESS_LOG_FORMAT  # noqa: E402

COMMENTS = [{"user": f"u{i % 3}", "text": "The quick brown fox jumps over the lazy dog. " * (1 + i % 4)}
            for i in range(10)]
BODY = json.dumps({"data": COMMENTS})


def metrics(comment: dict) -> dict:
    """Return word and sentence counts and mean word length of one comment."""
    text = comment["text"]
    words = text.split()
    return {"user": comment["user"], "words": len(words), "sentences": text.count(".") or 1,
            "mean_word_length": round(sum(map(len, words)) / max(len(words), 1), 3)}


# what the two servers import -------------------------------------------------------------------

service = Atoll()
service.register_pipeline("/metrics", Pipeline(name="metrics").map(metrics))

bare_app = Flask("bare")


@bare_app.post("/pipelines/metrics")
def bare_metrics():
    """The same work without atoll: parse, call the function per item, answer JSON."""
    body = request.get_json()
    return {"results": [metrics(c) for c in body["data"]]}


# the harness -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(kind: str, port: int, conf: str, access_log: bool = True) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]), "ATOLL_CONF": conf}
    common = ["--workers", "2", "--threads", "4"]
    if kind == "atoll":
        cmd = [sys.executable, "-m", "atoll", "serve", "bench_service:service",
               "--bind", f"127.0.0.1:{port}", *common, *([] if access_log else ["--no-access-log"])]
    else:
        # with the access log atoll serve writes by default, both pay for the same gunicorn settings
        log = ["--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT] if access_log else []
        worker = "atoll.service.server.BufferingWorker" if kind == "bare-atoll-worker" else "gthread"
        cmd = [sys.executable, "-m", "gunicorn", "bench_service:bare_app", "--bind", f"127.0.0.1:{port}",
               "--worker-class", worker, *common, "--log-level", "warning", *log]
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("POST", "/pipelines/metrics", BODY, {"Content-Type": "application/json"})
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{kind} server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"cannot read wrk's latency {text!r}")
    number, unit = found.groups()
    return float(number) * _UNITS[unit]


def load_wrk(port: int, seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                              "-s", script.name, f"http://127.0.0.1:{port}/pipelines/metrics"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Requests/sec" not in out or "50%" not in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),
            "p99": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),
            "errors": int(errors.group(1)) if errors else 0}


def load_python(port: int, seconds: int, connections: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            conn.request("POST", "/pipelines/metrics", BODY, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            latencies.append((time.perf_counter() - start) * 1e3)
            errors[0] += response.status != 200

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"rps": len(latencies) / seconds, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "errors": errors[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--no-access-log", action="store_true",
                        help="both servers without gunicorn's access log (atoll serve --no-access-log)")
    args = parser.parse_args()
    seconds = args.seconds or (3 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 3)
    load = load_wrk if shutil.which("wrk") else load_python
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "atoll.yaml"  # no embedded Celery worker: it would compete for the 2 cores
        conf.write_text(f"state_dir: {tmp}/state\nembedded_worker: false\nlog_level: WARNING\n")
        order = [("bare Flask", "bare"), ("bare, atoll worker", "bare-atoll-worker"),
                 ("atoll serve", "atoll")]
        results: dict[str, list[dict]] = {label: [] for label, _ in order}
        for index in range(rounds):  # interleaved, alternating who goes first, so both see the same load
            for label, kind in (order if index % 2 == 0 else order[::-1]):
                port = free_port()
                proc = start(kind, port, str(conf), access_log=not args.no_access_log)
                try:
                    load(port, 1, args.connections)  # warm-up
                    results[label].append(load(port, seconds, args.connections))
                finally:
                    stop(proc)
    print(f"sync POST, 10 items, gunicorn 2 workers x 4 threads, {args.connections} connections, "
          f"{rounds} x {seconds} s, load: {load.__name__.removeprefix('load_')}, {os.cpu_count()} cores")
    print(f"{'server':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    summary = {}
    for label, runs in results.items():
        row = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
        row["errors"] = sum(r["errors"] for r in runs)
        summary[label] = row
        print(f"{label:<20}{row['rps']:>10.0f}{row['p50']:>10.2f}{row['p99']:>10.2f}{row['errors']:>8}")
    ratios = [a["rps"] / b["rps"] for a, b in zip(results["atoll serve"], results["bare Flask"])]
    print("per-round atoll/bare throughput: " + ", ".join(f"{r:.2f}" for r in ratios))
    ratio = summary["atoll serve"]["rps"] / summary["bare Flask"]["rps"]
    print(f"atoll / bare throughput: {ratio:.2f}x (target >= 0.80); atoll p99 "
          f"{summary['atoll serve']['p99']:.1f} ms (target < 20)")


if __name__ == "__main__":
    main()
