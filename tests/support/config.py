"""Config files for the services the tests start."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import yaml

from atoll.config import Config, load_config

#: the callback secret of :func:`job_config`
SECRET = "whsec_" + base64.b64encode(b"atoll-test-secret-0123456789abcdef").decode()


def write_config(folder: Path, **values: Any) -> Path:
    """Write ``values`` as a new YAML config file in ``folder`` (``state_dir`` below it unless given);
    return its path."""
    path = folder / f"conf-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(folder / "state"), **values}))
    return path


def job_config(folder: Path, **overrides: Any) -> tuple[Path, Config]:
    """Write a config for async jobs (unique queue, fast retries, loopback callbacks allowed); return
    (path, config)."""
    path = write_config(folder, **{
        "worker_queue": f"atoll-test-{uuid.uuid4().hex[:12]}", "worker_concurrency": 2,
        "callback_secret": SECRET, "callback_allow_private": True, "callback_backoff": 0.1,
        "callback_backoff_max": 1.0, "callback_max_retries": 10, "callback_timeout": 5.0,
        "log_level": "INFO", **overrides})
    return path, load_config(str(path))
