"""What the tests share to run things for real: a free loopback port, a poll until something holds,
a config file, and ``atoll serve`` on a port of its own.

Harness only: the services the tests serve stay beside the tests (``served.py``, ``async_service.py``,
``ui_service.py``, ...), importable by ``atoll serve MODULE:service``.
"""

from tests.support.config import SECRET, job_config, write_config
from tests.support.ports import free_port
from tests.support.serving import TESTS, Served, answers, serve, stop, workers_ready
from tests.support.waiting import eventually
from tests.support.workers import Worker, delete_queue, race_saves, running_stack, wait_for_job

__all__ = ["SECRET", "TESTS", "Served", "Worker", "answers", "delete_queue", "eventually", "free_port",
           "job_config", "race_saves", "running_stack", "serve", "stop", "wait_for_job", "workers_ready",
           "write_config"]
