"""Benchmark datasets: a JSON-lines upload to ``atoll serve`` against a bare Flask endpoint under the
same gunicorn settings that streams the body to a file; then a word count over the dataset as a job
(``n_jobs=2``) against the same pipeline over the local file from Python (``read_text``).

    .venv/bin/python benchmarks/bench_datasets.py             # 1 GB of JSON lines, 2 rounds
    .venv/bin/python benchmarks/bench_datasets.py --quick     # smoke run: 20 MB, 1 round

Both servers run 1 worker x 4 threads on loopback; the client streams the file from disk. The peak
RSS of each server's processes is sampled every 50 ms while it works.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from operator import add
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import requests  # noqa: E402
from flask import Flask, request  # noqa: E402

from atoll import Atoll, Pipeline, read_text  # noqa: E402


def words(line: str) -> list[str]:
    """Return the words of a line."""
    return line.split()


wordcount = Pipeline(name="wordcount").flatMap(words).map(lambda w: (w, 1)).reduceByKey(add)

# what the servers import -------------------------------------------------------------------------

service = Atoll()
service.register_pipeline("/wordcount", wordcount, n_jobs=2)

bare_app = Flask("bare")


@bare_app.post("/upload")
def bare_upload():
    """Stream the body to a file, nothing else: the baseline."""
    stream = request.stream
    with tempfile.NamedTemporaryFile(dir=os.environ.get("BENCH_DIR"), delete=True) as out:
        size = 0
        while chunk := stream.read(256 * 1024):
            out.write(chunk)
            size += len(chunk)
    return {"bytes": size}, 201


# the harness -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_file(path: Path, size: int) -> int:
    """Write about ``size`` bytes of JSON lines (comments of 5-40 words); return the line count."""
    vocabulary = [f"word{i}" for i in range(500)]
    lines = 0
    with open(path, "w", encoding="utf-8") as out:
        written = 0
        block = []
        while written < size:
            n = 5 + lines % 36
            text = " ".join(vocabulary[(lines * 7 + k * 13) % 500] for k in range(n))
            line = json.dumps({"id": lines, "user": f"u{lines % 97}", "text": text}) + "\n"
            block.append(line)
            written += len(line)
            lines += 1
            if len(block) == 10000:
                out.write("".join(block))
                block = []
        out.write("".join(block))
    return lines


def start(kind: str, port: int, conf: str, bench_dir: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]), "ATOLL_CONF": conf,
           "BENCH_DIR": bench_dir}
    if kind == "atoll":
        cmd = [sys.executable, "-m", "atoll", "serve", "bench_datasets:service", "--bind",
               f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "bench_datasets:bare_app", "--bind", f"127.0.0.1:{port}",
               "--worker-class", "gthread", "--workers", "1", "--threads", "4", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/livez" if kind == "atoll" else
                            f"http://127.0.0.1:{port}/upload", timeout=2).status_code < 500:
                return proc
        except requests.RequestException:
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


class PeakRSS:
    """Samples the RSS of a process tree every 50 ms: the peak per process, in MB."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for proc in [self.root, *self.root.children(recursive=True)]:
                    rss = proc.memory_info().rss / 1e6
                    self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0.0), rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def worst(self) -> float:
        return max(self.peaks.values(), default=0.0)


def upload(port: int, path: Path, url_path: str) -> float:
    started = time.perf_counter()
    with open(path, "rb") as body:
        answer = requests.post(f"http://127.0.0.1:{port}{url_path}", data=body, timeout=3600,
                               headers={"Content-Type": "application/x-ndjson"})
    elapsed = time.perf_counter() - started
    if answer.status_code != 201:
        raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:300]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 MB, one round (smoke run)")
    parser.add_argument("--mb", type=int, default=None, help="size of the JSON-lines file in MB")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--count-mb", type=int, default=None,
                        help="MB of the comments' text the word count reads (default: all of it)")
    args = parser.parse_args()
    size = (args.mb or (20 if args.quick else 1000)) * 1000 * 1000
    rounds = args.rounds or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "comments.jsonl"
        lines = make_file(data, size)
        text_file = Path(tmp) / "comments.txt"  # the word count's input: the comments' lines as text
        conf = Path(tmp) / "atoll.yaml"
        # one job at a time: the embedded worker's single pool process keeps its local processes warm
        conf.write_text(f"state_dir: {tmp}/state\nlog_level: WARNING\ndataset_max_bytes: {4 * size}\n"
                        f"sync_time_limit: null\nworker_concurrency: 1\n")
        uploads: dict[str, list[float]] = {"bare Flask, gunicorn gthread": [],
                                           "atoll serve POST /datasets": []}
        rss: dict[str, float] = {}
        for index in range(rounds):
            order = list(uploads) if index % 2 == 0 else list(uploads)[::-1]
            for label in order:
                kind = "atoll" if label.startswith("atoll") else "bare"
                port = free_port()
                proc = start(kind, port, str(conf), tmp)
                try:
                    with PeakRSS(proc.pid) as peak:
                        target = "/datasets" if kind == "atoll" else "/upload"
                        uploads[label].append(upload(port, data, target))
                    workers = {pid: mb for pid, mb in peak.peaks.items() if pid != proc.pid}
                    rss[label] = max(rss.get(label, 0.0), max(workers.values(), default=peak.worst()))
                finally:
                    stop(proc)
        # the word count: a job over a text dataset, and the same pipeline over the local file
        count_bytes = (args.count_mb or size) * (1000 * 1000 if args.count_mb else 1)
        with open(data, encoding="utf-8") as source, open(text_file, "w", encoding="utf-8") as out:
            written = 0
            for line in source:
                text = json.loads(line)["text"] + "\n"
                out.write(text)
                written += len(text)
                if written >= count_bytes:
                    break
        port = free_port()
        proc = start("atoll", port, str(conf), tmp)
        try:
            with open(text_file, "rb") as body:
                dataset_id = requests.post(f"http://127.0.0.1:{port}/datasets", data=body, timeout=3600,
                                           headers={"Content-Type": "text/plain"}).json()["dataset_id"]
            job_times, local_times = [], []
            job_rss = 0.0
            for warm in (True,) + (False,) * rounds:  # a warm-up of each first: pools started, code loaded
                with PeakRSS(proc.pid) as peak:
                    started = time.perf_counter()
                    job = requests.post(f"http://127.0.0.1:{port}/pipelines/wordcount", timeout=60,
                                        json={"data": {"dataset": dataset_id}, "async": True}).json()
                    while True:
                        record = requests.get(f"http://127.0.0.1:{port}/jobs/{job['job_id']}",
                                              timeout=60).json()
                        if record["status"] in ("succeeded", "failed", "cancelled"):
                            break
                        time.sleep(0.05)
                    if not warm:
                        job_times.append(time.perf_counter() - started)
                job_rss = max(job_rss, peak.worst())
                if record["status"] != "succeeded":
                    raise RuntimeError(f"the word count job {record['status']}: {record.get('error')}")
                started = time.perf_counter()
                local = wordcount(read_text(text_file), n_jobs=2)
                if not warm:
                    local_times.append(time.perf_counter() - started)
                if dict(map(tuple, record["results"])) != dict(local):
                    raise RuntimeError("the job's word count differs from the local one")
        finally:
            stop(proc)
    mb = size / 1e6
    text_file_mb = written / 1e6
    print(f"### upload of {mb:.0f} MB of JSON lines ({lines} lines), 1 worker x 4 threads, loopback, "
          f"{rounds} round(s), {os.cpu_count()} cores")
    print("| server | seconds | MB/s | peak RSS of a server process, MB | vs bare |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(uploads["bare Flask, gunicorn gthread"])
    for label, times in uploads.items():
        t = statistics.median(times)
        print(f"| {label} | {t:.2f} | {mb / t:.0f} | {rss[label]:.0f} | {base / t:.2f}x |")
    print()
    print(f"### word count over {text_file_mb:.0f} MB of the comments' text lines as a dataset, n_jobs=2")
    print("| run | seconds | vs Python over the local file |")
    print("|---|---:|---:|")
    local = statistics.median(local_times)
    print(f"| Python: wordcount(read_text(file), n_jobs=2) | {local:.2f} | 1.00x |")
    print(f"| atoll job on {{\"dataset\": id}} (peak RSS per process {job_rss:.0f} MB) | "
          f"{statistics.median(job_times):.2f} | {statistics.median(job_times) / local:.2f}x |")


if __name__ == "__main__":
    main()
