"""Asynchronous jobs end to end: atoll vs a hand-written Celery task, on RabbitMQ and on disk.

For each broker, both implementations run the same small pipeline (word count of a short sentence) and
POST the results to a loopback HTTP receiver, with the same worker settings (prefork, 2 processes,
late acknowledgement, prefetch 1, JSON, publisher confirms on RabbitMQ):

* **atoll**: ``POST /pipelines/wordcount {"data", "callback"}`` through the Flask app in this process
  (test client: request parsing, job record, publish), a worker started with ``atoll worker``.
* **hand-written**: a minimal Flask endpoint (``request.get_json()``, ``task.apply_async((data, url))``,
  202) in this process, and a plain Celery task that calls the pipeline and POSTs the results with a
  kept-alive ``requests`` session — no job records, no validation, no signatures, no SSRF check.

Throughput: a burst of N jobs POSTed by 4 producer threads, from the first POST to the last callback
received (publisher confirms make one producer wait a disk flush per message on RabbitMQ). Latency: jobs one
at a time, submit to callback received (p50/p99). On disk the hand-written task uses kombu's stock
``filesystem://`` transport, atoll its own atomic one (see atoll/service/transport.py).

    .venv/bin/python benchmarks/bench_async.py [--quick] [--jobs 2000] [--rounds 3]
        [--broker rabbitmq|embedded|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from operator import add
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from atoll import Pipeline  # noqa: E402

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
SENTENCE = ["the quick brown fox jumps over the lazy dog the end"]
PIPELINE = Pipeline(name="wordcount").flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)


# -- what the worker processes import -----------------------------------------------------------


def build_service():
    """Return the atoll service of the benchmark (config from $ATOLL_CONF)."""
    from atoll import Atoll

    service = Atoll()
    service.register_pipeline("/wordcount", PIPELINE)
    return service


def build_baseline(broker: str, queue: str, transport_options: dict):
    """Return the hand-written Celery app: one task running the pipeline and POSTing its results."""
    import requests
    from celery import Celery
    from kombu import Queue

    app = Celery("baseline", broker=broker, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_acks_late=True,
                    task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                    task_default_queue=queue, task_queues=[Queue(queue, durable=True)],
                    task_ignore_result=True, broker_transport_options=transport_options,
                    broker_heartbeat=30 if broker.startswith("amqp") else 0)
    session = requests.Session()

    @app.task(name="baseline.run", acks_late=True, shared=False)
    def run(data, callback, job_id):
        results = PIPELINE(data)
        session.post(callback, data=json.dumps({"job_id": job_id, "results": results}),
                     headers={"Content-Type": "application/json"}, timeout=10).raise_for_status()

    return app


if os.environ.get("BENCH_BASELINE"):
    _settings = json.loads(os.environ["BENCH_BASELINE"])
    baseline = build_baseline(_settings["broker"], _settings["queue"], _settings["options"])
elif os.environ.get("ATOLL_CONF"):
    service = build_service()


# -- the benchmark ------------------------------------------------------------------------------


def _start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    process = subprocess.Popen(argv, env={**os.environ, **env, "PYTHONPATH": f"{HERE}:{ROOT}"},
                               cwd=str(HERE), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Impl:
    """One implementation on one broker: start its worker, submit jobs, stop."""

    def __init__(self, name: str, broker: str, folder: Path, receiver_url: str):
        self.name, self.broker, self.folder, self.url = name, broker, folder, receiver_url
        self.queue = f"bench-{name}-{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        from atoll.config import load_config
        from atoll.service.transport import embedded_options

        log = self.log = self.folder / f"{self.name}-{self.broker}.log"
        state = self.folder / f"state-{self.name}-{self.broker}"
        if self.name == "atoll":
            values = {"state_dir": str(state), "worker_queue": self.queue, "worker_concurrency": 2,
                      "callback_allow_private": True, "log_level": "WARNING"}
            if self.broker == "rabbitmq":
                values["worker_broker"] = RABBITMQ
            conf = self.folder / f"{self.queue}.yaml"
            conf.write_text(json.dumps(values))
            self.process = _start([sys.executable, "-m", "atoll.cli", "worker", "bench_async:service",
                                   "--loglevel=INFO"], {"ATOLL_CONF": str(conf)}, log)
            from atoll import Atoll

            svc = Atoll(load_config(str(conf)))
            svc.register_pipeline("/wordcount", PIPELINE)
            self.client = svc.create_app().test_client()
            self._cleanup = lambda: None
        else:
            if self.broker == "rabbitmq":
                broker, options = RABBITMQ, {"confirm_publish": True}
            else:
                options = {k: v for k, v in embedded_options(state).items() if k != "claim_folder"}
                broker = "filesystem://localhost/"
            settings = {"broker": broker, "queue": self.queue, "options": options}
            self.process = _start([sys.executable, "-m", "celery", "-A", "bench_async:baseline", "worker",
                                   "-c", "2", "--loglevel=INFO", "-Q", self.queue],
                                  {"BENCH_BASELINE": json.dumps(settings)}, log)
            self.app = build_baseline(broker, self.queue, options)
            task = self.app.tasks["baseline.run"]
            from flask import Flask, request

            web = Flask("baseline")

            @web.post("/run")
            def run():
                body = request.get_json()
                job_id = str(uuid.uuid4())
                task.apply_async((body["data"], body["callback"], job_id), task_id=job_id)
                return {"job_id": job_id}, 202

            self.client = web.test_client()

    def submit(self) -> str:
        path = "/pipelines/wordcount" if self.name == "atoll" else "/run"
        answer = self.client.post(path, json={"data": SENTENCE, "callback": self.url})
        if answer.status_code != 202:
            raise RuntimeError(answer.get_data(as_text=True))
        return answer.get_json()["job_id"]

    def submit_many(self, count: int, threads: int = 4) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            return [job_id for part in pool.map(lambda n: [self.submit() for _ in range(n)],
                                                [count // threads + (i < count % threads)
                                                 for i in range(threads)]) for job_id in part]

    def stop(self) -> None:
        _stop(self.process)
        if self.broker == "rabbitmq":
            from kombu import Connection, Queue

            with Connection(RABBITMQ) as conn:
                Queue(self.queue, channel=conn.channel()).delete()


def measure(impl: Impl, receiver, jobs: int, latency_jobs: int) -> dict:
    """Return throughput and latency figures of ``impl`` (its worker is running)."""
    receiver.reset()
    warm = [impl.submit() for _ in range(20)]
    if receiver.wait_for_jobs(warm, timeout=60):
        raise RuntimeError(f"{impl.name}/{impl.broker}: warm-up callbacks missing")
    receiver.reset()
    started = time.monotonic()
    ids = impl.submit_many(jobs)
    submitted = time.monotonic()
    wanted = set(ids)
    deadline = time.monotonic() + 600
    while not wanted <= receiver.job_ids() and time.monotonic() < deadline:
        if impl.process.poll() is not None:
            tail = impl.log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"{impl.name}/{impl.broker}: the worker died mid-burst: {tail}")
        receiver.wait_for(lambda r: wanted <= r.job_ids(), timeout=1.0)
    missing = wanted - receiver.job_ids()
    if missing:
        raise RuntimeError(f"{impl.name}/{impl.broker}: {len(missing)} callbacks missing")
    last = max(c.at for c in receiver.accepted())
    latencies = []
    for _ in range(latency_jobs):
        receiver.reset()
        t0 = time.monotonic()
        job_id = impl.submit()
        if receiver.wait_for_jobs([job_id], timeout=60):
            raise RuntimeError(f"{impl.name}/{impl.broker}: callback of job {job_id} missing after 60 s")
        latencies.append(receiver.accepted()[0].at - t0)
    latencies.sort()
    return {"jobs/s": jobs / (last - started), "submit/s": jobs / (submitted - started),
            "p50 ms": 1000 * statistics.median(latencies),
            "p99 ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 jobs, 30 latency samples")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--broker", choices=("rabbitmq", "embedded", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per broker, each running both implementations (order alternating)")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.latency_jobs, args.rounds = 200, 30, 1
    from tests.callback_receiver import CallbackReceiver

    receiver = CallbackReceiver()
    brokers = ["rabbitmq", "embedded"] if args.broker == "both" else [args.broker]
    names = ("hand-written", "atoll")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-async-") as tmp:
        for broker in brokers:
            runs: dict[str, list[dict]] = {name: [] for name in names}
            ratios = []
            for round_ in range(args.rounds):
                figures = {}
                for name in (names if round_ % 2 == 0 else names[::-1]):
                    impl = Impl(name, broker, Path(tmp), receiver.url)
                    impl.start()
                    try:
                        figures[name] = measure(impl, receiver, args.jobs, args.latency_jobs)
                    except RuntimeError as exc:
                        figures[name] = {"error": str(exc)[:200]}
                    finally:
                        impl.stop()
                    print(f"{broker} round {round_ + 1} {name}: {figures[name]}", file=sys.stderr,
                          flush=True)
                    runs[name].append(figures[name])
                if all("jobs/s" in figures[name] for name in names):
                    ratios.append(figures["atoll"]["jobs/s"] / figures["hand-written"]["jobs/s"])
            for name in names:
                good = [f for f in runs[name] if "error" not in f]
                if len(good) < len(runs[name]):
                    rows.append((broker, name, {"error": next(f["error"] for f in runs[name]
                                                              if "error" in f)}, "-"))
                    continue
                median = {key: statistics.median(f[key] for f in good) for key in good[0]}
                ratio = ("1.00x" if name == "hand-written" else
                         f"{statistics.median(ratios):.2f}x" if ratios else "-")
                rows.append((broker, name, median, ratio))
            if ratios:
                print(f"{broker}: per-round atoll/hand-written throughput: "
                      f"{', '.join(f'{r:.2f}' for r in ratios)}", file=sys.stderr, flush=True)
    receiver.close()
    print(f"\nasync end to end: {args.jobs} jobs burst, {args.latency_jobs} sequential for latency, "
          f"prefork -c 2, {os.cpu_count()} cores, medians of {args.rounds} rounds")
    print(f"{'broker':<10} {'impl':<13} {'jobs/s':>8} {'submit/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'vs hw':>7}")
    for broker, name, f, ratio in rows:
        if "error" in f:
            print(f"{broker:<10} {name:<13} FAILED: {f['error']}")
            continue
        print(f"{broker:<10} {name:<13} {f['jobs/s']:8.0f} {f['submit/s']:9.0f} {f['p50 ms']:8.1f} "
              f"{f['p99 ms']:8.1f} {ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
