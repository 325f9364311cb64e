"""atoll's configuration: ``ATOLL_<KEY>`` environment variables over a YAML file (``--config`` or
``ATOLL_CONF``) over defaults, validated key by key, nested values included.

Every key is declared once in :data:`SCHEMA` with its type, default and meaning; ``conf.example.yaml``
lists the same keys. An unknown key or a wrong type raises :class:`~atoll.errors.ConfigError` naming
where the value came from, the key and what would be valid. A :class:`Config` remembers where each value
came from (:attr:`Config.origins`) and shows secrets only as ``***`` (:meth:`Config.redacted`).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from atoll.errors import ConfigError
from atoll.parallelism import effective_n_jobs
from atoll.sources import DEFAULT_PARTITION_BYTES

__all__ = ["Config", "SCHEMA", "load_config", "Key", "env_name", "check_secret", "REDACTED",
           "PIPELINE_LIMITS"]

log = logging.getLogger("atoll.config")

#: what :meth:`Config.redacted` shows instead of a secret
REDACTED = "***"


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
    "job_log_max_bytes": Key((int,), 1024 * 1024, "bytes of a job's output (what its pipeline printed "
                             "and logged) kept for GET /jobs/<id>/logs, the tail; 0 = none, at least "
                             "1024 otherwise",
                             minimum=0),
    "dead_letters_max": Key((int,), 10000, "dead letters a run with on_error: collect keeps (the first "
                            "ones); more failing elements are still counted and skipped", minimum=0),
    "dead_letters_max_bytes": Key((int,), 8 * 1024 * 1024, "bytes of a job's dead letters kept for "
                                  "GET /jobs/<id>/errors (JSON lines, the first ones)", minimum=0),
    "inline_results_max_bytes": Key((int,), 256 * 1024, "results larger than this (as JSON) are not "
                                    "put in the job record and the callback: both carry results_url, "
                                    "GET /jobs/<id>/results answers them", minimum=0),
    "task_soft_time_limit": Key(_OPT_NUM, None, "seconds before a pipeline job gets SoftTimeLimitExceeded"),
    "task_time_limit": Key(_OPT_NUM, None, "seconds before a pipeline job's worker process is killed"),
    "pipeline_time_limits": Key((dict,), {}, "per pipeline name: {soft: s, hard: s, sync: s} overriding "
                                "task_soft_time_limit, task_time_limit and sync_time_limit"),
    "worker_consumer_timeout": Key(_OPT_NUM, None, "seconds RabbitMQ lets a worker hold a job "
                                   "unacknowledged (x-consumer-timeout of worker_queue) before it "
                                   "closes the worker's channel and redelivers the job; unset = twice "
                                   "the longest hard time limit + callback_backoff_max + 300, or one "
                                   "day without hard limits; 0 = leave it to the broker", minimum=0),
    # -- datasets: uploaded data and data by reference --
    "datasets_url": Key(_OPT_STR, None, "fsspec URL of the folder holding datasets (a local path, "
                        "s3://bucket/prefix, ...); unset = datasets/ under state_dir"),
    "datasets_storage_options": Key((dict,), {}, "options for the datasets store's fsspec file system "
                                    "(for s3://: key, secret, client_kwargs.endpoint_url, ...)"),
    "dataset_max_bytes": Key((int,), 10 * 1024 ** 3, "largest dataset, as sent (compressed) and as "
                             "stored (decompressed); 413 above", minimum=1),
    "datasets_max_total_bytes": Key(_OPT_NUM, None, "bytes all stored datasets may take together "
                                    "(507 above); unset = no quota", minimum=1),
    "dataset_expires": Key((int,), 7 * 86400, "seconds a dataset is kept after it was stored (workers "
                           "remove expired datasets and abandoned uploads)", minimum=1),
    "data_roots": Key((list,), [], "local folders a run may read by {\"data\": {\"files\": pattern}} "
                      "(patterns relative to one of them); empty = none"),
    "data_sources": Key((list,), [], "URL prefixes a run may read by {\"data\": {\"url\": url}} (e.g. "
                        "s3://bucket/logs/); empty = none"),
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
    "n_jobs": Key((int,), -1, "worker processes of the local executor; as in joblib, -1 = every core, "
                  "-2 = all but one"),
    "spark_master": Key(_OPT_STR, None, "Spark master URL: local[*], spark://host:7077, k8s://..., yarn; "
                        "unset = local[*] (or Mesos through zookeeper_host)"),
    "spark_conf": Key((dict,), {}, "extra Spark properties passed to SparkConf as they are"),
    "spark_binary": Key(_OPT_STR, None, "URL of a Spark distribution for executors (spark.executor.uri)"),
    "zookeeper_host": Key(_OPT_STR, None, "host:port of ZooKeeper; sets spark_master to "
                          "mesos://zk://<host>/mesos when spark_master is unset (pyspark 3.5 only)"),
    "spark_log_level": Key((str,), "WARN", "log level of Spark's own logging",
                           choices=("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")),
    "dataset_partition_bytes": Key((int,), DEFAULT_PARTITION_BYTES, "bytes of a file or dataset each local "
                                   "worker or Spark partition reads (a line-aligned byte range)",
                                   minimum=1),
    # -- HTTP service --
    "max_request_bytes": Key((int,), 16 * 1024 * 1024, "largest request body accepted (413 above)",
                             minimum=1),
    "max_json_depth": Key((int,), 100, "deepest nesting of arrays and objects accepted in a request's "
                          "data or kwargs (400 above); workers fail a job whose message is deeper. "
                          "Python's pickle, which hands jobs to worker processes, fails near 500",
                          minimum=1, maximum=400),
    "sync_time_limit": Key(_OPT_NUM, 60, "seconds a synchronous call may run before it is stopped and "
                           "answered 504; null = no limit", minimum=0.001),
    "client_header_timeout": Key(_NUM, 10.0, "seconds a request's line and headers may take to "
                                 "arrive, from its first byte (atoll serve answers 408 and closes the "
                                 "connection after)", minimum=0.1),
    "client_body_timeout": Key(_NUM, 60.0, "seconds a request's body may take to arrive after its "
                               "headers (408 and the connection closed after)", minimum=0.1),
    "client_send_timeout": Key(_NUM, 30.0, "seconds a client may take to receive each 64 KiB of an "
                               "answer before atoll serve closes the connection", minimum=0.1),
    "auth_tokens": Key((list,), [], "bearer tokens accepted; empty = no authentication"),
    # -- callers (named tokens with scopes) --
    "callers": Key((dict,), {}, "named callers: {name: {tokens: [sha256 hex of a token, at most 2], "
                   "scopes: [run, read, admin]}} (`atoll token` prints a token and its line); "
                   "auth_tokens are an admin caller named default; empty = none. A caller's max_jobs, "
                   "max_stored_bytes and rate_limit override caller_max_jobs, caller_max_stored_bytes "
                   "and caller_rate_limit"),
    "caller_max_jobs": Key((int, type(None)), None, "jobs one caller may have queued, running or "
                           "retrying (429 above); a caller's own max_jobs overrides it; null = no limit",
                           minimum=1),
    "caller_max_stored_bytes": Key((int, type(None)), None, "bytes of datasets (uploaded, or a job's "
                                   "results stored as one) one caller may keep (429 above); a caller's "
                                   "own max_stored_bytes overrides it; null or 0 = no limit", minimum=0),
    "caller_rate_limit": Key(_OPT_STR, None, "requests one caller may make, e.g. \"50/second\" or "
                             "\"20/second;600/minute\" (429 above); a caller's own rate_limit overrides "
                             "it; without callers, each client address has it; null = no limit"),
    "rate_limit_storage_url": Key((str,), "memory://", "where the rate limits count: memory:// (each web "
                                  "process its own count) or redis://host:6379/0, shared by every web "
                                  "process and host"),
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
    """A validated, read-only configuration: ``config["n_jobs"]`` or ``config.n_jobs``.

    ``origins`` maps each key to where its value came from: ``default``, ``file <path>``,
    ``env ATOLL_<KEY>`` or ``argument``.
    """

    def __init__(self, values: Mapping[str, Any] | None = None, source: str = "defaults",
                 origins: Mapping[str, str] | None = None):
        self.source = source
        origins = dict(origins or {})
        merged = {k: _copy(key.default) for k, key in SCHEMA.items()}
        self.origins = {k: "default" for k in SCHEMA}
        for name, value in (values or {}).items():
            origin = origins.get(name, source)
            merged[name] = validate(name, value, _describe(origin))
            if name in SCHEMA:
                self.origins[name] = origin
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
        return Config({**self._values, **changes}, self.source,
                      {**self.origins, **dict.fromkeys(changes, "argument")})

    def redacted(self) -> dict[str, Any]:
        """Return the values with secrets shown as ``***``: ``callback_secret``, each auth token, URL
        passwords and Spark properties whose name says secret, password, token or key."""
        return {name: redact(name, value) for name, value in self._values.items()}

    def __repr__(self) -> str:
        shown = self.redacted()
        changed = {k: shown[k] for k, v in self._values.items() if v != SCHEMA[k].default}
        return f"Config({changed!r}, source={self.source!r})"


#: keys whose values are secrets: shown as *** and never echoed in an error
_SECRET_KEYS = frozenset({"callback_secret", "auth_tokens"})

_SECRET_NAME = re.compile(r"secret|password|passwd|token|credential|(^|[._-])key($|[._-])", re.I)


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{host}"))


def redact(name: str, value: Any) -> Any:
    """Return the value of key ``name`` as it may be shown: secrets replaced by ``***``."""
    if value is None:
        return None
    if name == "callback_secret":
        return REDACTED
    if name == "auth_tokens":
        return [REDACTED for _ in value]
    if name in ("worker_broker", "worker_backend", "rate_limit_storage_url") and isinstance(value, str):
        return ";".join(_redact_url(url) for url in value.split(";"))  # kombu's failover list
    if name == "spark_conf":
        return {k: REDACTED if _SECRET_NAME.search(str(k)) else v for k, v in value.items()}
    return value


def env_name(key: str) -> str:
    """Return the environment variable that sets configuration key ``key``: ``ATOLL_<KEY>``."""
    return "ATOLL_" + key.upper()


def _describe(origin: str) -> str:
    """Return how an error message names the origin of a value."""
    if origin.startswith("env "):
        return "environment variable " + origin[4:]
    if origin.startswith("file "):
        return origin[5:]
    return "defaults" if origin in ("default", "argument") else origin


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
        shown = "" if name in _SECRET_KEYS else f" {value!r}"  # a mistyped secret is still a secret
        raise ConfigError(f"{source}: key {name!r} must be {_type_names(key.types)}; "
                          f"got {type(value).__name__}{shown}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{source}: key {name!r} must be one of {', '.join(map(str, key.choices))}; "
                          f"got {value!r}")
    if key.minimum is not None and value is not None and value < key.minimum:
        raise ConfigError(f"{source}: key {name!r} must be at least {key.minimum}; got {value!r}")
    if key.maximum is not None and value is not None and value > key.maximum:
        raise ConfigError(f"{source}: key {name!r} must be at most {key.maximum}; got {value!r}")
    nested = _NESTED.get(name)
    if nested is not None:
        nested(f"{source}: key {name!r}", value)
    return _copy(value)


def _strings(where: str, value: list) -> None:
    for i, entry in enumerate(value):
        if not isinstance(entry, str):
            shown = "" if "'auth_tokens'" in where else f" {entry!r}"
            raise ConfigError(f"{where}: every entry must be a string; entry {i} is "
                              f"{type(entry).__name__}{shown}")


#: the scopes a caller may have: ``run`` (submit), ``read`` (its own jobs and data), ``admin`` (all)
CALLER_SCOPES = ("run", "read", "admin")
#: most token hashes one caller may have at once (the old and the new during a rotation)
CALLER_TOKENS_MAX = 2
#: what a ``callers`` entry may hold
CALLER_KEYS = ("tokens", "scopes", "max_jobs", "max_stored_bytes", "rate_limit")
#: one rate limit as flask-limiter (the ``limits`` package) reads it: ``50/second``, ``10 per 2 minutes``
_RATE = re.compile(r"\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*", re.I)
_CALLER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _callers(where: str, value: dict) -> None:
    for name, entry in value.items():
        if not isinstance(name, str) or not _CALLER_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a caller's name must be 1 to 64 letters, digits, '_', '.' or '-' "
                              f"(starting with a letter or digit); got {name!r}")
        at = f"{where[:-1]}.{name}'"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at} must be a mapping like {{tokens: [<sha256 hex>], scopes: [run, read]}}; "
                              f"got {type(entry).__name__}")
        unknown = sorted(set(map(str, entry)) - set(CALLER_KEYS))
        if unknown:
            raise ConfigError(f"{at}: unknown keys {unknown}; a caller has {', '.join(CALLER_KEYS)}")
        for key, least in (("max_jobs", 1), ("max_stored_bytes", 0)):
            limit = entry.get(key)
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < least):
                raise ConfigError(f"{at[:-1]}.{key}' must be a whole number of at least {least}, or null; "
                                  f"got {limit!r}")
        if entry.get("rate_limit") is not None:
            _rate_limit(f"{at[:-1]}.rate_limit'", entry["rate_limit"])
        tokens, scopes = entry.get("tokens"), entry.get("scopes")
        if not isinstance(tokens, list) or not 1 <= len(tokens) <= CALLER_TOKENS_MAX:
            raise ConfigError(f"{at[:-1]}.tokens' must be a list of 1 to {CALLER_TOKENS_MAX} token hashes")
        for i, digest in enumerate(tokens):  # never echoed: a token pasted by mistake is still a secret
            if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
                raise ConfigError(f"{at[:-1]}.tokens' entry {i} is not the SHA-256 of a token (64 lower-case "
                                  f"hex digits); `atoll token` prints a token and its hash")
        if not isinstance(scopes, list) or not scopes or any(s not in CALLER_SCOPES for s in scopes):
            raise ConfigError(f"{at[:-1]}.scopes' must be a non-empty list of {', '.join(CALLER_SCOPES)}; "
                              f"got {scopes!r}")


def _rate_limit(where: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not all(_RATE.fullmatch(part) for part in re.split(r"[;,]", value)):
        raise ConfigError(f"{where} must be a rate like \"50/second\", \"600 per minute\" or several "
                          f"joined by ';' (\"20/second;600/minute\"); got {value!r}")


def _n_jobs(where: str, value: int) -> None:
    try:
        effective_n_jobs(value, cores=1)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


#: the limits a ``pipeline_time_limits`` entry may set, and the key each one overrides
PIPELINE_LIMITS = {"soft": "task_soft_time_limit", "hard": "task_time_limit", "sync": "sync_time_limit"}


def _time_limits(where: str, value: dict) -> None:
    for pipeline, limits in value.items():
        if not isinstance(pipeline, str):
            raise ConfigError(f"{where}: pipeline names must be strings; got {type(pipeline).__name__} "
                              f"{pipeline!r}")
        at = f"{where[:-1]}.{pipeline}'"  # key 'pipeline_time_limits.<name>'
        if not isinstance(limits, dict):
            raise ConfigError(f"{at} must be a mapping like {{soft: 60, hard: 90, sync: 30}}; "
                              f"got {type(limits).__name__} {limits!r}")
        for limit, seconds in limits.items():
            if limit not in PIPELINE_LIMITS:
                close = difflib.get_close_matches(str(limit), PIPELINE_LIMITS, n=1)
                hint = f" — did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{at}: unknown key {limit!r}{hint} Valid keys: "
                                  f"{', '.join(PIPELINE_LIMITS)}")
            if seconds is not None and (not isinstance(seconds, int | float) or isinstance(seconds, bool)):
                raise ConfigError(f"{at[:-1]}.{limit}' must be number or null (seconds); "
                                  f"got {type(seconds).__name__} {seconds!r}")
            if seconds is not None and seconds <= 0:
                raise ConfigError(f"{at[:-1]}.{limit}' must be more than 0 seconds; got {seconds!r}")
        soft, hard = limits.get("soft"), limits.get("hard")
        if soft is not None and hard is not None and soft >= hard:
            raise ConfigError(f"{at}: soft ({soft!r}) must be below hard ({hard!r}), or the soft "
                              f"limit never fires")


def _spark_conf(where: str, value: dict) -> None:
    for prop, setting in value.items():
        if not isinstance(prop, str):
            raise ConfigError(f"{where}: Spark property names must be strings; got "
                              f"{type(prop).__name__} {prop!r}")
        if not isinstance(setting, str | int | float | bool):
            raise ConfigError(f"{where[:-1]}.{prop}' must be a string, number or true/false; got "
                              f"{type(setting).__name__} {setting!r}")


def check_secret(secret: str, where: str = "key 'callback_secret'") -> bytes:
    """Return the HMAC key bytes of callback secret ``secret``, or raise ConfigError saying why not.

    A ``whsec_`` secret must be padded base64 of at least one byte (the Standard Webhooks form: every
    library of it decodes the part after ``whsec_``); any other non-empty string is used as its UTF-8
    bytes. The secret itself is never part of the message.

    >>> check_secret("whsec_YWJj")
    b'abc'
    """
    if not secret:
        raise ConfigError(f"{where} is empty; leave it unset (no signing) or set a whsec_ secret from "
                          f"`atoll secret`")
    if not secret.startswith("whsec_"):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} starts with whsec_ but the rest is not padded base64 (length a "
                          f"multiple of 4, characters A-Z a-z 0-9 + / =); generate one with "
                          f"`atoll secret`") from None
    if not key:
        raise ConfigError(f"{where} is whsec_ with no key after it (whsec_ and the key in padded "
                          f"base64); generate one with `atoll secret`")
    return key


def _callback_secret(where: str, value: str | None) -> None:
    if value is not None:
        check_secret(value, where)


#: checks of what sits inside a value, beyond its top-level type
_NESTED: dict[str, Callable[[str, Any], None]] = {
    "callback_allowed_hosts": _strings,
    "auth_tokens": _strings,
    "callers": _callers,
    "caller_rate_limit": _rate_limit,
    "callback_secret": _callback_secret,
    "n_jobs": _n_jobs,  # the rule LocalExecutor and register_pipeline apply too
    "pipeline_time_limits": _time_limits,
    "spark_conf": _spark_conf,
    "data_roots": _strings,
    "data_sources": _strings,
}


def from_env(name: str, text: str, variable: str) -> Any:
    """Return the value of key ``name`` written as the text of environment variable ``variable``.

    A string key takes the text as it is (a choice in any case); an empty text is null where null is
    allowed; every other
    key reads the text as YAML (so JSON too): ``4``, ``true``, ``[a, b]``, ``{"x": {"soft": 10}}``.
    """
    import yaml

    types = SCHEMA[name].types
    if text.strip() == "" and type(None) in types:
        return None
    if str in types:
        choices = SCHEMA[name].choices or ()
        # ATOLL_LOG_LEVEL=info also sets gunicorn's level (deploy/gunicorn.conf.py), which wants lower case
        return next((c for c in choices if isinstance(c, str) and c.lower() == text.lower()), text)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"environment variable {variable}: not valid YAML or JSON for key {name!r}: "
                          f"{exc}") from None
    if bool in types and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)  # ATOLL_EMBEDDED_WORKER=0, as containers often write it
    return value


def _from_environ(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the keys set by ``ATOLL_<KEY>`` variables and their origins; warn about near misses."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    by_variable = {env_name(k): k for k in SCHEMA}
    for variable, text in environ.items():
        if not variable.startswith("ATOLL_") or variable == "ATOLL_CONF":
            continue
        name = by_variable.get(variable)
        if name is None:
            close = difflib.get_close_matches(variable, by_variable, n=1, cutoff=0.85)
            if close:
                log.warning("environment variable %s is not a configuration key; did you mean %s?",
                            variable, close[0])
            continue
        values[name] = from_env(name, text, variable)
        origins[name] = f"env {variable}"
    return values, origins


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None,
                **overrides: Any) -> Config:
    """Return the configuration: ``overrides`` over ``ATOLL_<KEY>`` variables over the YAML file at
    ``path`` (or ``$ATOLL_CONF``) over the defaults.

    ``environ`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
    """
    import yaml

    environ = os.environ if environ is None else environ
    path = path or environ.get("ATOLL_CONF")
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
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
        origins.update(dict.fromkeys(loaded, f"file {path}"))
    env_values, env_origins = _from_environ(environ)
    values.update(env_values)
    origins.update(env_origins)
    values.update(overrides)
    origins.update(dict.fromkeys(overrides, "argument"))
    return Config(values, source, origins)
