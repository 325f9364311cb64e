"""``GET /jobs`` on the embedded job store with many records: how long a page takes.

Writes N job records (default 10,000: a mix of pipelines and statuses, as a busy day leaves them) into
a fresh embedded store, then times ``GET /jobs`` through the Flask app in this process (the test client:
routing, listing, JSON) for the queries a dashboard and an operator make:

* the first page (newest 50), and a page deep inside the listing (through a cursor);
* a filter that matches often (``status=succeeded``), and one that matches 1% of the jobs
  (``pipeline=rare``), which must read every record to fill its page;
* one job (``GET /jobs/<id>``) for comparison.

    .venv/bin/python benchmarks/bench_jobs_list.py [--records 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from atoll import Atoll, Pipeline  # noqa: E402
from atoll.config import load_config  # noqa: E402
from atoll.service.jobs.model import ErrorBody, Job, Progress, new_job_id  # noqa: E402


def fill(service: Atoll, records: int) -> list[str]:
    """Store ``records`` jobs (every 100th of pipeline 'rare'); return their ids, oldest first."""
    store = service.job_system().store
    ids = []
    for i in range(records):
        job = Job(new_job_id(), "rare" if i % 100 == 0 else ("double" if i % 2 else "wordcount"),
                  submitted_at="2026-12-02T10:00:00.000+00:00", status_url="http://localhost/jobs/x")
        if i % 10:  # one job in ten is still queued
            job.start()
            job.progress = Progress(4, 4)
            if i % 7 == 0:
                job.fail(ErrorBody("KeyError", "no entry", "Traceback ...", None, i))
            else:
                job.succeed([["word", i]])
        store.save(job)
        ids.append(job.job_id)
    return ids


def timed(client, path: str, repeat: int) -> tuple[float, int]:
    """Return (median seconds, jobs answered) of ``repeat`` GETs of ``path``."""
    times, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        count = len(body["jobs"]) if "jobs" in body else 1
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        service = Atoll(load_config(state_dir=folder, embedded_worker=False))
        service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
        started = time.perf_counter()
        ids = fill(service, args.records)
        print(f"wrote {args.records} records in {time.perf_counter() - started:.1f} s")
        client = service.create_app().test_client()
        page = client.get("/jobs?limit=50").get_json()
        for _ in range(args.records // 100):  # a cursor about half way down
            page = client.get(f"/jobs?limit=50&cursor={page['next']}").get_json()
        deep = page["next"]
        queries = [
            ("first page, limit=50", "/jobs?limit=50"),
            ("first page, limit=500", "/jobs?limit=500"),
            ("deep page (cursor), limit=50", f"/jobs?limit=50&cursor={deep}"),
            ("status=succeeded, limit=50", "/jobs?status=succeeded&limit=50"),
            ("pipeline=rare (1%), limit=50", "/jobs?pipeline=rare&limit=50"),
            ("one job: GET /jobs/<id>", f"/jobs/{ids[len(ids) // 2]}"),
        ]
        print(f"\nGET /jobs on the embedded store with {args.records} records (median of {args.repeat})\n")
        print("| query | jobs answered | time |\n|---|---|---|")
        for label, path in queries:
            seconds, count = timed(client, path, args.repeat)
            print(f"| {label} | {count} | {seconds * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
