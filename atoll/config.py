"""atoll's configuration: YAML named by ``ATOLL_CONF`` over defaults, validated key by key.

Every key is declared once in :data:`SCHEMA` with its type, default and meaning; ``conf.example.yaml``
lists the same keys. An unknown key or a wrong type raises :class:`~atoll.errors.ConfigError` naming the
key and what would be valid.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atoll.errors import ConfigError

__all__ = ["Config", "SCHEMA", "load_config", "Key"]


@dataclass(frozen=True)
class Key:
    """One configuration key: accepted types, default, allowed values and a one-line meaning."""

    types: tuple[type, ...]
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None


_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))

SCHEMA: dict[str, Key] = {
    # -- workers: Celery broker and result backend (the original atoll's keys) --
    "worker_broker": Key(_OPT_STR, None, "Celery broker URL, e.g. amqp://guest:guest@127.0.0.1:5672//; "
                         "unset = the embedded broker on local disk"),
    "worker_backend": Key(_OPT_STR, None, "Celery result backend URL holding job records for GET "
                          "/jobs (redis://, db+postgresql://, file://); unset = file:// under state_dir "
                          "(one machine); rpc:// cannot answer GET /jobs"),
    "worker_queue": Key((str,), "atoll", "Celery queue of the service's jobs and callback deliveries "
                        "(durable); web processes and their workers must agree on it"),
    "state_dir": Key((str,), ".atoll", "folder for the embedded broker, results, pid and log files"),
    "embedded_worker": Key((bool,), True, "with the embedded broker, `atoll serve` starts a worker "
                           "process beside the web process"),
    "worker_concurrency": Key((int,), 2, "worker processes per `atoll worker`", minimum=1),
    "result_expires": Key((int,), 86400, "seconds a job's result stays in the result backend",
                          minimum=1),
    "job_running_after": Key(_NUM, 0.1, "seconds a job runs before its record says running; a shorter "
                             "job goes from queued to its outcome with one write fewer (0 = at start)",
                             minimum=0),
    "task_soft_time_limit": Key(_OPT_NUM, None, "seconds before a pipeline job gets SoftTimeLimitExceeded"),
    "task_time_limit": Key(_OPT_NUM, None, "seconds before a pipeline job's worker process is killed"),
    "pipeline_time_limits": Key((dict,), {}, "per pipeline name: {soft: s, hard: s, sync: s} overriding "
                                "task_soft_time_limit, task_time_limit and sync_time_limit"),
    # -- callbacks --
    "callback_secret": Key(_OPT_STR, None, "secret for the webhook-signature HMAC-SHA256 header; unset = "
                           "callbacks are not signed"),
    "callback_allow_private": Key((bool,), False, "allow callbacks to loopback, private, link-local and "
                                  "unique-local addresses (SSRF guard off)"),
    "callback_allowed_hosts": Key((list,), [], "host names or IP addresses always allowed as callback "
                                  "targets"),
    "callback_timeout": Key(_NUM, 10.0, "seconds to connect and deliver one callback POST", minimum=0),
    "callback_max_retries": Key((int,), 8, "retries of a failed callback delivery", minimum=0),
    "callback_backoff": Key(_NUM, 1.0, "seconds before the first retry; doubles each time, with jitter",
                            minimum=0),
    "callback_backoff_max": Key(_NUM, 300.0, "longest wait between two retries, seconds", minimum=0),
    # -- executors --
    "default_executor": Key((str,), "serial", "executor of a registered pipeline that names none",
                            choices=("serial", "local", "spark")),
    "n_jobs": Key((int,), -1, "worker processes of the local executor; -1 = every core"),
    "spark_master": Key(_OPT_STR, None, "Spark master URL: local[*], spark://host:7077, k8s://..., yarn; "
                        "unset = local[*] (or Mesos through zookeeper_host)"),
    "spark_conf": Key((dict,), {}, "extra Spark properties passed to SparkConf as they are"),
    "spark_binary": Key(_OPT_STR, None, "URL of a Spark distribution for executors (spark.executor.uri)"),
    "zookeeper_host": Key(_OPT_STR, None, "host:port of ZooKeeper; sets spark_master to "
                          "mesos://zk://<host>/mesos when spark_master is unset (pyspark 3.5 only)"),
    "spark_log_level": Key((str,), "WARN", "log level of Spark's own logging",
                           choices=("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")),
    # -- HTTP service --
    "max_request_bytes": Key((int,), 16 * 1024 * 1024, "largest request body accepted (413 above)",
                             minimum=1),
    "max_json_depth": Key((int,), 100, "deepest nesting of arrays and objects accepted in a request's "
                          "data or kwargs (400 above); workers fail a job whose message is deeper. "
                          "Python's pickle, which hands jobs to worker processes, fails near 500",
                          minimum=1, maximum=400),
    "sync_time_limit": Key(_OPT_NUM, 60, "seconds a synchronous call may run before it is stopped and "
                           "answered 504; null = no limit", minimum=0.001),
    "auth_tokens": Key((list,), [], "bearer tokens accepted; empty = no authentication"),
    "log_level": Key((str,), "INFO", "log level of atoll's own logging",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
}


class Config(Mapping[str, Any]):
    """A validated, read-only configuration: ``config["n_jobs"]`` or ``config.n_jobs``."""

    def __init__(self, values: Mapping[str, Any] | None = None, source: str = "defaults"):
        self.source = source
        merged = {k: _copy(key.default) for k, key in SCHEMA.items()}
        for name, value in (values or {}).items():
            merged[name] = validate(name, value, source)
        self._values = merged

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with some keys changed (validated)."""
        return Config({**self._values, **changes}, self.source)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if v != SCHEMA[k].default}
        return f"Config({changed!r}, source={self.source!r})"


def _copy(value: Any) -> Any:
    return type(value)(value) if isinstance(value, (list, dict)) else value


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list",
             dict: "mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def validate(name: str, value: Any, source: str = "config") -> Any:
    """Return ``value`` for key ``name`` if valid, else raise ConfigError naming what is wrong."""
    key = SCHEMA.get(name)
    if key is None:
        close = difflib.get_close_matches(str(name), SCHEMA, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{source}: unknown key {name!r}{hint} Valid keys: {', '.join(SCHEMA)}")
    ok = isinstance(value, key.types) and not (isinstance(value, bool) and bool not in key.types)
    if not ok:
        raise ConfigError(f"{source}: key {name!r} must be {_type_names(key.types)}; "
                          f"got {type(value).__name__} {value!r}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{source}: key {name!r} must be one of {', '.join(map(str, key.choices))}; "
                          f"got {value!r}")
    if key.minimum is not None and value is not None and value < key.minimum:
        raise ConfigError(f"{source}: key {name!r} must be at least {key.minimum}; got {value!r}")
    if key.maximum is not None and value is not None and value > key.maximum:
        raise ConfigError(f"{source}: key {name!r} must be at most {key.maximum}; got {value!r}")
    if name in ("callback_allowed_hosts", "auth_tokens") and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: every entry of {name!r} must be a string; got {value!r}")
    if name == "pipeline_time_limits":
        _check_time_limits(value, source)
    return _copy(value)


#: the limits a ``pipeline_time_limits`` entry may set, and the key each one overrides
PIPELINE_LIMITS = {"soft": "task_soft_time_limit", "hard": "task_time_limit", "sync": "sync_time_limit"}


def _check_time_limits(value: dict, source: str) -> None:
    """Raise ConfigError unless every entry is ``{soft?, hard?, sync?}`` of positive seconds or null."""
    for pipeline, limits in value.items():
        where = f"{source}: pipeline_time_limits[{pipeline!r}]"
        if not isinstance(limits, dict):
            raise ConfigError(f"{where} must be a mapping like {{soft: 10, hard: 20, sync: 5}}; "
                              f"got {limits!r}")
        for kind, seconds in limits.items():
            if kind not in PIPELINE_LIMITS:
                raise ConfigError(f"{where}: unknown limit {kind!r}; valid: {', '.join(PIPELINE_LIMITS)}")
            if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, _NUM)
                                        or seconds <= 0):
                raise ConfigError(f"{where}: {kind!r} must be a positive number of seconds or null; "
                                  f"got {seconds!r}")


def load_config(path: str | None = None, **overrides: Any) -> Config:
    """Return the configuration from ``path`` (or ``$ATOLL_CONF``) over the defaults, plus overrides."""
    import yaml

    path = path or os.environ.get("ATOLL_CONF")
    values: dict[str, Any] = {}
    source = "defaults"
    if path:
        source = path
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, "
                              f"got {type(loaded).__name__}")
        values.update(loaded)
    values.update(overrides)
    return Config(values, source)
