"""atoll's configuration: YAML named by ``ATOLL_CONF`` over defaults, validated key by key.

Every key is declared once in :data:`SCHEMA` with its type, default and meaning; ``conf.example.yaml``
lists the same keys. An unknown key or a wrong type raises :class:`~atoll.errors.ConfigError` naming the
key and what would be valid.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atoll.errors import ConfigError

__all__ = ["Config", "SCHEMA", "SECRET_KEYS", "load_config", "Key", "redacted", "check_secret"]


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
                           "process beside the web process and restarts it when it dies; /health is "
                           "503 while it is missing"),
    "worker_concurrency": Key((int,), 2, "worker processes per `atoll worker`", minimum=1),
    "result_expires": Key((int,), 86400, "seconds a job's record is kept after its last change, on "
                          "every result backend (workers remove expired records); GET /jobs/<id> "
                          "then answers 404", minimum=1),
    "job_running_after": Key(_NUM, 0.1, "seconds a job runs before its record says running; a shorter "
                             "job goes from queued to its outcome with one write fewer (0 = at start)",
                             minimum=0),
    "task_soft_time_limit": Key(_OPT_NUM, None, "seconds before a pipeline job gets SoftTimeLimitExceeded"),
    "task_time_limit": Key(_OPT_NUM, None, "seconds before a pipeline job's worker process is killed"),
    "pipeline_time_limits": Key((dict,), {}, "per pipeline name: {soft: s, hard: s, sync: s} overriding "
                                "task_soft_time_limit, task_time_limit and sync_time_limit"),
    # -- callbacks --
    "callback_secret": Key(_OPT_STR, None, "secret for the webhook-signature HMAC-SHA256 header, best "
                           "whsec_<base64> (`atoll secret` prints one); unset = callbacks are not signed"),
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
    "expose_tracebacks": Key((bool,), True, "error answers, failed job records and failure callbacks "
                             "carry the traceback and the failing item; false = only name, stage and "
                             "message"),
    "metrics_public": Key((bool,), False, "serve GET /metrics without a token (for a Prometheus "
                                          "scraper inside a private network)"),
    "log_level": Key((str,), "INFO", "log level of atoll's own logging",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    "log_format": Key((str,), "text", "log lines of atoll serve and atoll worker: text, or json (one "
                                      "object a line: timestamp, level, logger, message, request_id, "
                                      "job_id, pipeline)", choices=("text", "json")),
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
        changed = {k: redacted(k, v) for k, v in self._values.items() if v != SCHEMA[k].default}
        return f"Config({changed!r}, source={self.source!r})"


#: keys whose values are secrets: never shown in a repr, a log line or an error message
SECRET_KEYS = frozenset({"auth_tokens", "callback_secret"})
#: keys holding URLs that may carry a password
_URL_KEYS = frozenset({"worker_broker", "worker_backend"})


def redacted(name: str, value: Any) -> Any:
    """Return ``value`` of key ``name`` fit to show: secrets as ``'***'``, URL passwords as ``***``.

    >>> redacted("callback_secret", "whsec_c2VjcmV0"), redacted("auth_tokens", ["a", "b"])
    ('***', ['***', '***'])
    >>> redacted("worker_broker", "amqp://user:pw@rabbit:5672//")
    'amqp://user:***@rabbit:5672//'
    """
    if name in SECRET_KEYS and value:
        return ["***"] * len(value) if isinstance(value, list) else "***"
    if name in _URL_KEYS and isinstance(value, str) and "@" in value:
        scheme, sep, rest = value.partition("://")
        credentials, at, host = rest.rpartition("@")
        if sep and at and ":" in credentials:
            return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return value


def check_secret(secret: str, source: str = "config") -> bytes:
    """Return the HMAC key bytes of callback secret ``secret``, or raise ConfigError saying why not.

    A ``whsec_`` secret must be padded base64 of at least one byte (the Standard Webhooks form); any
    other non-empty string is used as its UTF-8 bytes.

    >>> check_secret("whsec_YWJj")
    b'abc'
    """
    if not secret:
        raise ConfigError(f"{source}: key 'callback_secret' is empty; leave it unset (no signing) or "
                          f"set a whsec_ secret from `atoll secret`")
    if not secret.startswith("whsec_"):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{source}: key 'callback_secret' starts with whsec_ but the rest is not "
                          f"padded base64 (length a multiple of 4, characters A-Z a-z 0-9 + / =); "
                          f"generate one with `atoll secret`") from None
    if not key:
        raise ConfigError(f"{source}: key 'callback_secret' is whsec_ with no key after it; generate "
                          f"one with `atoll secret`")
    return key


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
    shown = "(hidden)" if name in SECRET_KEYS else repr(redacted(name, value))
    if not ok:
        raise ConfigError(f"{source}: key {name!r} must be {_type_names(key.types)}; "
                          f"got {type(value).__name__} {shown}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{source}: key {name!r} must be one of {', '.join(map(str, key.choices))}; "
                          f"got {shown}")
    if key.minimum is not None and value is not None and value < key.minimum:
        raise ConfigError(f"{source}: key {name!r} must be at least {key.minimum}; got {shown}")
    if key.maximum is not None and value is not None and value > key.maximum:
        raise ConfigError(f"{source}: key {name!r} must be at most {key.maximum}; got {shown}")
    if name in ("callback_allowed_hosts", "auth_tokens") and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: every entry of {name!r} must be a string; got {shown}")
    if name == "callback_secret" and value is not None:
        check_secret(value, source)
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
