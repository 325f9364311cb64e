"""Skip a test loudly when a service it needs is missing — or fail it when ``ATOLL_REQUIRE`` names it.

``.ci/run`` sets ``ATOLL_REQUIRE=rabbitmq,spark,chromium,s3`` so that CI never passes by skipping (chromium:
the dashboard's browser tests, Debian's ``chromium`` driven by Playwright; s3: moto's standalone S3 server
and s3fs, both from the ``test`` extra, see ``tests/support/s3.py``).
"""

from __future__ import annotations

import os

import pytest


def required(service: str) -> bool:
    """Return True when ``$ATOLL_REQUIRE`` (comma-separated) names ``service``."""
    wanted = {s.strip().lower() for s in os.environ.get("ATOLL_REQUIRE", "").split(",")}
    return service.lower() in wanted


def unavailable(service: str, reason: str) -> None:
    """Skip the current test with ``reason``, or fail it when the service is required."""
    if required(service):
        pytest.fail(f"{service} is required (ATOLL_REQUIRE) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{service} unavailable: {reason}")
