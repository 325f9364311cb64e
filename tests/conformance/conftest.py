"""Executors the conformance table runs on.

``EXECUTOR_FIXTURES`` is the one list: each name is a fixture (defined here or in a plugin module listed
in ``tests/conftest.py``) returning a ready :class:`atoll.executors.Executor`. A new executor joins the
table by appending its fixture's name here.
"""

from __future__ import annotations

import pytest

from atoll.executors import LocalExecutor, SerialExecutor

EXECUTOR_FIXTURES = ["serial_executor", "local_executor", "local_alongside_executor", "spark_local_executor",
                     "spark_cluster_executor"]


def forced_local_executor(n_jobs: int = 2, **options) -> LocalExecutor:
    """Return a LocalExecutor that sends every element to worker processes, however tiny the input:
    no in-process probe, no "too small to parallelise" shortcut."""
    return LocalExecutor(n_jobs, min_parallel_seconds=0, probe_seconds=0, **options)


@pytest.fixture(scope="session")
def serial_executor() -> SerialExecutor:
    """The serial executor."""
    return SerialExecutor()


@pytest.fixture(scope="session")
def local_executor() -> LocalExecutor:
    """Two worker processes, every pass sent to them (chunks of at most 2 elements, so even short
    inputs are split across both workers and partial aggregates are really merged)."""
    return forced_local_executor(2, max_chunk=2)


@pytest.fixture(scope="session")
def local_alongside_executor() -> LocalExecutor:
    """One worker process and this one sharing every pass (no probe): the worker takes chunks of one
    element from the front of the input while this process takes them from the back (an input of
    more than two elements meets both)."""
    return LocalExecutor(2, probe_seconds=0, max_chunk=1)


@pytest.fixture(scope="session", params=EXECUTOR_FIXTURES)
def executor(request):
    """Each executor of ``EXECUTOR_FIXTURES`` in turn."""
    return request.getfixturevalue(request.param)
