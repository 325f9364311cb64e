"""A service of small pipelines for the service, socket, client and OpenAPI tests (served on a socket
by :func:`tests.support.serve`).

``python -m atoll serve served:service`` imports this module with ``ATOLL_CONF`` deciding the config.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np

from atoll import Atoll, Pipeline
from atoll.config import Config


def scale(x, factor):
    """Return x * factor."""
    return x * factor


def lookup(key):
    """Return the value of ``key`` in a fixed table (KeyError for anything else)."""
    return {"a": 1, "b": 2}[key]


def odd_values(_):
    """Return values JSON has no native form for."""
    return {
        "tuple": (1, (2, 3)),
        "int64": np.int64(7),
        "float32": np.float32(0.5),
        "bool": np.bool_(True),
        "array": np.arange(6).reshape(2, 3),
        "set": {3, 1, 2},
        "date": dt.date(2024, 2, 29),
        "datetime": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc),
        "decimal": Decimal("1.10"),
        "nan": float("nan"),
        "int_keys": {1: "one", 2: "two"},
    }


class Opaque:
    """A value with no JSON form."""


def opaque_at(x):
    """Return a record whose score is not JSON for x == 3."""
    return {"x": x, "score": Opaque() if x == 3 else x}


def build_service(config: Config | None = None) -> Atoll:
    """Return a service with one pipeline for each behaviour the tests check."""
    service = Atoll(config)
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    service.register_pipeline("/scaled", Pipeline(name="scaled").map(scale, kwargs=["factor"]))
    service.register_pipeline("/echo", Pipeline(name="echo").to(None))
    service.register_pipeline("/lookup", Pipeline(name="lookup").map(lookup))
    service.register_pipeline("/odd", Pipeline(name="odd").to(odd_values))
    service.register_pipeline("/opaque", Pipeline(name="opaque").map(opaque_at))
    service.register_pipeline("/wordcount_local", Pipeline(name="wc").flatMap(str.split)
                              .map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b), n_jobs=2)
    return service


service = build_service()
app = service.create_app()
