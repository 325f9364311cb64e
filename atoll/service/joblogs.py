"""A job's log: what its pipeline printed and logged, as ``GET /jobs/<id>/logs`` shows it.

The Celery task runs the pipeline inside :func:`capture`, with ``job_log_max_bytes`` as the bound::

    with joblogs.capture(config.job_log_max_bytes) as job_log:
        results = service.run_pipeline(name, data, kwargs)
    ...  # job_log.text(): JSON lines, at most job_log_max_bytes bytes (the newest output kept)

What is recorded (lines printed to stdout and stderr, log records at INFO and above except Celery's,
kombu's and amqp's), from which threads (the one running the job, not threads it starts), from the
local executor's worker processes (yes: each chunk's output comes back with its result), the entries'
shape and the bound are described in :mod:`atoll.output`, where the capture lives: the executors use
it too, and they import nothing of the service.
"""

from __future__ import annotations

from atoll.output import EXCLUDED_LOGGERS, MIN_MAX_BYTES, JobLog, capture

__all__ = ["capture", "JobLog", "DEFAULT_MAX_BYTES", "MIN_MAX_BYTES", "EXCLUDED_LOGGERS"]

#: ``job_log_max_bytes`` when the configuration does not set it: 1 MiB
DEFAULT_MAX_BYTES = 1 << 20
