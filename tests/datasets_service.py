"""The service that the dataset tests serve and their workers load (``datasets_service:service``).

Its config comes from ``$ATOLL_CONF``; tests build the same service in-process with :func:`build_service`.
"""

from __future__ import annotations

import glob
import os
from operator import add

from atoll import Pipeline
from atoll.config import Config, load_config
from atoll.service import Atoll


def words(line: str) -> list[str]:
    return line.split()


def results_seen(n: int, store: str) -> dict:
    """Return record ``n`` (about 1 kB) with ``seen``: the bytes of dataset data in ``store`` when it
    was made, wherever it runs (a worker process, a Spark executor on this machine)."""
    seen = sum(os.path.getsize(path) for path in glob.glob(os.path.join(store, "*", "data")))
    return {"n": n, "seen": seen, "pad": "x" * 1000}


def build_service(config: Config) -> Atoll:
    """Return the service: ``wordcount`` over text lines, ``total`` of records' ``n``, ``ids`` of records."""
    service = Atoll(config)
    service.register_pipeline("/wordcount", Pipeline(name="wordcount").flatMap(words)
                              .map(lambda w: (w, 1)).reduceByKey(add))
    service.register_pipeline("/wordcount2", Pipeline(name="wordcount2").flatMap(words)
                              .map(lambda w: (w, 1)).reduceByKey(add), n_jobs=2)
    service.register_pipeline("/total", Pipeline(name="total").map(lambda r: r["n"]).reduce(add))
    service.register_pipeline("/double", Pipeline(name="double").map(lambda r: {"n": 2 * r["n"]}))
    return service


service = build_service(load_config(os.environ.get("ATOLL_CONF")))
app = service.create_app() if os.environ.get("ATOLL_DATASETS_APP") else None
