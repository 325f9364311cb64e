"""Configuration: YAML over defaults, validation messages, and conf.example.yaml kept in sync with SCHEMA.

``python tests/test_config.py --write`` regenerates conf.example.yaml from SCHEMA.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from atoll.config import REDACTED, SCHEMA, env_name, load_config
from atoll.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "conf.example.yaml"

_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list",
               dict: "mapping", type(None): "null"}


def _value(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def render_example() -> str:
    """Return conf.example.yaml as generated from SCHEMA: every key, its meaning, type and default."""
    lines = [
        "# atoll configuration. Copy this file, change what you need and point ATOLL_CONF at it:",
        "#   ATOLL_CONF=/etc/atoll.yaml atoll serve mymodule:service",
        "# (or: atoll serve --config /etc/atoll.yaml mymodule:service). Every key is optional; the values",
        "# below are the defaults. ATOLL_<KEY> environment variables override the file, e.g.",
        "#   ATOLL_N_JOBS=4 ATOLL_AUTH_TOKENS='[a, b]' ATOLL_CALLBACK_SECRET=... atoll serve ...",
        "# An unknown key or a wrong type is an error that names the key. `atoll config` prints the",
        "# effective configuration, secrets redacted, with where each value came from.",
    ]
    for name, key in SCHEMA.items():
        kinds = " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t.__name__) for t in key.types))
        lines.append("")
        lines.append(f"# {key.help}")
        facts = [kinds]
        if key.choices:
            facts.append("one of: " + ", ".join(map(str, key.choices)))
        if key.minimum is not None:
            facts.append(f"at least {key.minimum:g}")
        if key.maximum is not None:
            facts.append(f"at most {key.maximum:g}")
        lines.append(f"# ({'; '.join(facts)})")
        lines.append(f"{name}: {_value(key.default)}")
    return "\n".join(lines) + "\n"


def test_example_lists_every_key_with_its_default_in_schema_order():
    loaded = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert list(loaded) == list(SCHEMA), "regenerate with: python tests/test_config.py --write"
    assert loaded == {name: key.default for name, key in SCHEMA.items()}


def test_example_comments_every_key_with_its_help():
    text = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for name, key in SCHEMA.items():
        index = next(i for i, line in enumerate(text) if line.startswith(f"{name}:"))
        comments = [line for line in text[max(index - 3, 0):index] if line.startswith("#")]
        assert f"# {key.help}" in comments, f"{name}: its help comment is missing or stale"


def test_example_is_what_the_generator_writes():
    assert EXAMPLE.read_text(encoding="utf-8") == render_example(), \
        "conf.example.yaml is stale; regenerate with: python tests/test_config.py --write"


def test_example_loads_as_a_config(monkeypatch):
    monkeypatch.delenv("ATOLL_CONF", raising=False)
    assert dict(load_config(str(EXAMPLE))) == dict(load_config())


def test_atoll_conf_overrides_defaults(tmp_path, monkeypatch):
    path = tmp_path / "atoll.yaml"
    path.write_text("n_jobs: 3\nauth_tokens: [abc]\nmax_request_bytes: 1024\n")
    monkeypatch.setenv("ATOLL_CONF", str(path))
    config = load_config()
    assert (config.n_jobs, config.auth_tokens, config["max_request_bytes"]) == (3, ["abc"], 1024)
    assert config.default_executor == SCHEMA["default_executor"].default
    assert config.source == str(path)


def test_overrides_beat_the_file(tmp_path):
    path = tmp_path / "atoll.yaml"
    path.write_text("n_jobs: 3\n")
    assert load_config(str(path), n_jobs=5).n_jobs == 5


@pytest.mark.parametrize("text, words", [
    ("n_job: 3\n", ["unknown key 'n_job'", "did you mean 'n_jobs'"]),
    ("n_jobs: three\n", ["'n_jobs'", "must be integer", "three"]),
    ("default_executor: dask\n", ["'default_executor'", "serial, local, spark", "dask"]),
    ("max_request_bytes: 0\n", ["'max_request_bytes'", "at least 1"]),
    ("max_json_depth: 1000\n", ["'max_json_depth'", "at most 400"]),
    ("pipeline_time_limits: {wc: {sync: 0}}\n", ["'pipeline_time_limits.wc.sync'", "more than 0"]),
    ("pipeline_time_limits: {wc: {synch: 5}}\n", ["unknown key 'synch'", "did you mean 'sync'",
                                                 "soft, hard, sync"]),
    ("pipeline_time_limits: {wc: 5}\n", ["'pipeline_time_limits.wc'", "must be a mapping"]),
    ("auth_tokens: [1, 2]\n", ["'auth_tokens'", "string"]),
    ("embedded_worker: 1\n", ["'embedded_worker'", "true/false"]),
    ("- a\n- b\n", ["top level must be a mapping"]),
    ("n_jobs: [\n", ["not valid YAML"]),
])
def test_bad_files_name_the_key_and_the_choices(tmp_path, text, words):
    path = tmp_path / "atoll.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    for word in words:
        assert word in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "absent.yaml"))


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "atoll.yaml"
    path.write_text("")
    assert dict(load_config(str(path))) == {k: key.default for k, key in SCHEMA.items()}


def test_replace_validates():
    config = load_config(n_jobs=2)
    assert config.replace(n_jobs=4).n_jobs == 4 and config.n_jobs == 2
    with pytest.raises(ConfigError, match="log_level"):
        config.replace(log_level="LOUD")



# -- ATOLL_<KEY> environment variables ----------------------------------------------------------

#: values for keys whose type alone does not say what a valid non-default value looks like
SAMPLES = {
    "pipeline_time_limits": {"wordcount": {"soft": 10, "hard": 20.5}, "other": {"hard": 5}},
    "spark_conf": {"spark.executor.memory": "512m", "spark.task.cpus": 1},
    "n_jobs": -2,
    "datasets_storage_options": {"anon": False, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}},
    "callers": {"ann": {"tokens": ["0" * 64, "f" * 64], "scopes": ["run", "read"], "rate_limit": "5/second",
                        "max_stored_bytes": 0}},
    "caller_rate_limit": "20/second;600 per minute",
    "rate_limit_storage_url": "redis://127.0.0.1:6379/0",
}


def sample(name):
    """Return a valid value for key ``name`` that differs from its default."""
    key = SCHEMA[name]
    if name in SAMPLES:
        return SAMPLES[name]
    if key.choices:
        return next(c for c in reversed(key.choices) if c != key.default)
    if bool in key.types:
        return not key.default
    if int in key.types:
        return int(max(key.default or 0, key.minimum or 0)) + 3
    if float in key.types:
        return float(max(key.default or 0, key.minimum or 0)) + 2.5
    if list in key.types:
        return ["alpha", "beta"]
    if str in key.types:
        return "amqp://user@example.org:5672//" if "broker" in name or "backend" in name else "some text"
    raise AssertionError(f"no sample for {name}: add one to SAMPLES")


def as_env_text(value):
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("name", list(SCHEMA))
def test_every_key_can_come_from_its_environment_variable(name):
    value = sample(name)
    config = load_config(environ={env_name(name): as_env_text(value)})
    assert config[name] == value and type(config[name]) is type(value)
    assert config.origins[name] == f"env {env_name(name)}"


@pytest.mark.parametrize("variable, text, expected", [
    ("ATOLL_N_JOBS", "4", 4),
    ("ATOLL_CALLBACK_TIMEOUT", "2.5", 2.5),
    ("ATOLL_CALLBACK_TIMEOUT", "3", 3),
    ("ATOLL_EMBEDDED_WORKER", "false", False),
    ("ATOLL_EMBEDDED_WORKER", "0", False),
    ("ATOLL_CALLBACK_ALLOW_PRIVATE", "1", True),
    ("ATOLL_AUTH_TOKENS", "[a, b]", ["a", "b"]),
    ("ATOLL_AUTH_TOKENS", '["a", "b"]', ["a", "b"]),
    ("ATOLL_SPARK_CONF", "{spark.ui.enabled: false}", {"spark.ui.enabled": False}),
    ("ATOLL_TASK_TIME_LIMIT", "", None),
    ("ATOLL_TASK_TIME_LIMIT", "30", 30),
    ("ATOLL_STATE_DIR", "123", "123"),
    ("ATOLL_CALLBACK_SECRET", "true", "true"),
    ("ATOLL_WORKER_BROKER", "", None),
    ("ATOLL_LOG_LEVEL", "info", "INFO"),
    ("ATOLL_DEFAULT_EXECUTOR", "Local", "local"),
])
def test_environment_values_are_typed_like_the_key(variable, text, expected):
    name = variable.removeprefix("ATOLL_").lower()
    value = load_config(environ={variable: text})[name]
    assert value == expected and type(value) is type(expected)


def test_environment_beats_the_file_which_beats_the_defaults(tmp_path):
    path = tmp_path / "atoll.yaml"
    path.write_text("n_jobs: 3\nlog_level: DEBUG\n")
    config = load_config(environ={"ATOLL_CONF": str(path), "ATOLL_N_JOBS": "5"})
    assert (config.n_jobs, config.log_level, config.worker_queue) == (5, "DEBUG", "atoll")
    assert config.origins["n_jobs"] == "env ATOLL_N_JOBS"
    assert config.origins["log_level"] == f"file {path}"
    assert config.origins["worker_queue"] == "default"
    assert load_config(environ={"ATOLL_N_JOBS": "5"}, n_jobs=7).origins["n_jobs"] == "argument"


def test_load_config_reads_os_environ(monkeypatch):
    monkeypatch.setenv("ATOLL_MAX_REQUEST_BYTES", "2048")
    assert load_config().max_request_bytes == 2048


@pytest.mark.parametrize("environ, words", [
    ({"ATOLL_N_JOBS": "three"}, ["environment variable ATOLL_N_JOBS", "'n_jobs' must be integer",
                                 "'three'"]),
    ({"ATOLL_N_JOBS": "0"}, ["ATOLL_N_JOBS", "non-zero integer", "-2 = all but one"]),
    ({"ATOLL_EMBEDDED_WORKER": "maybe"}, ["ATOLL_EMBEDDED_WORKER", "true/false", "maybe"]),
    ({"ATOLL_SPARK_CONF": "{a: [1"}, ["ATOLL_SPARK_CONF", "not valid YAML or JSON", "'spark_conf'"]),
    ({"ATOLL_AUTH_TOKENS": "[1, two]"}, ["ATOLL_AUTH_TOKENS", "'auth_tokens'", "entry 0 is int"]),
    ({"ATOLL_DEFAULT_EXECUTOR": "dask"}, ["ATOLL_DEFAULT_EXECUTOR", "serial, local, spark"]),
    ({"ATOLL_PIPELINE_TIME_LIMITS": '{"x": {"soft": "10"}}'},
     ["ATOLL_PIPELINE_TIME_LIMITS", "'pipeline_time_limits.x.soft' must be number or null", "'10'"]),
])
def test_bad_environment_values_name_the_variable(environ, words):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    for word in words:
        assert word in str(caught.value)


def test_a_near_miss_variable_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="atoll.config"):
        load_config(environ={"ATOLL_N_JOB": "4", "ATOLL_SOMETHING_ELSE": "1"})
    assert "ATOLL_N_JOB is not a configuration key; did you mean ATOLL_N_JOBS?" in caplog.text
    assert "SOMETHING_ELSE" not in caplog.text


# -- nested values ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("pipeline_time_limits: {x: {soft: '10'}}\n",
     ["key 'pipeline_time_limits.x.soft' must be number or null", "got str '10'"]),
    ("pipeline_time_limits: {x: {sfot: 10}}\n",
     ["key 'pipeline_time_limits.x'", "unknown key 'sfot'", "did you mean 'soft'", "soft, hard"]),
    ("pipeline_time_limits: {x: 10}\n", ["key 'pipeline_time_limits.x' must be a mapping", "got int 10"]),
    ("pipeline_time_limits: {x: {hard: 0}}\n", ["'pipeline_time_limits.x.hard' must be more than 0"]),
    ("pipeline_time_limits: {x: {soft: 20, hard: 10}}\n", ["soft (20) must be below hard (10)"]),
    ("pipeline_time_limits: {x: {soft: true}}\n", ["'pipeline_time_limits.x.soft' must be number"]),
    ("pipeline_time_limits: {1: {soft: 2}}\n", ["pipeline names must be strings", "int 1"]),
    ("spark_conf: {spark.executor.memory: [1, 2]}\n",
     ["key 'spark_conf.spark.executor.memory' must be a string, number or true/false", "list"]),
    ("callback_allowed_hosts: [ok.example, 3]\n", ["'callback_allowed_hosts'", "entry 1 is int 3"]),
    ("n_jobs: 0\n", ["'n_jobs'", "non-zero integer"]),
])
def test_nested_values_are_checked_like_top_level_ones(tmp_path, text, words):
    path = tmp_path / "atoll.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("secret", ["whsec_abc", "whsec_", "whsec_not base64!", "whsec_YWJjZA"])
def test_a_whsec_secret_must_be_padded_base64_and_is_never_echoed(secret):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"ATOLL_CALLBACK_SECRET": secret})
    message = str(caught.value)
    assert "ATOLL_CALLBACK_SECRET" in message and "padded base64" in message
    assert secret.removeprefix("whsec_") not in message or secret == "whsec_"


def test_valid_secrets_load():
    padded = "whsec_YWJjZA=="
    assert load_config(environ={"ATOLL_CALLBACK_SECRET": padded}).callback_secret == padded
    assert load_config(environ={"ATOLL_CALLBACK_SECRET": "any text"}).callback_secret == "any text"


def test_valid_nested_values_load():
    config = load_config(environ={}, pipeline_time_limits=SAMPLES["pipeline_time_limits"],
                         spark_conf=SAMPLES["spark_conf"])
    assert config.pipeline_time_limits["wordcount"] == {"soft": 10, "hard": 20.5}


# -- secrets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["callback_secret: 12345678\n", "auth_tokens: s3cret-token\n",
                                  "auth_tokens: [ok, 12345678]\n"])
def test_a_mistyped_secret_is_not_echoed_in_the_error(tmp_path, text):
    path = tmp_path / "atoll.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={})
    assert "12345678" not in str(caught.value) and "s3cret" not in str(caught.value)
    assert "'callback_secret'" in str(caught.value) or "'auth_tokens'" in str(caught.value)


def test_secrets_are_redacted_in_redacted_and_repr():
    config = load_config(environ={}, callback_secret="cb-s3cret", auth_tokens=["tok-s3cret"],
                         worker_broker="amqp://user:pw-s3cret@rabbit:5672//",
                         spark_conf={"spark.authenticate.secret": "sp-s3cret", "spark.ui.enabled": False})
    shown = config.redacted()
    assert shown["callback_secret"] == REDACTED and shown["auth_tokens"] == [REDACTED]
    assert shown["worker_broker"] == f"amqp://user:{REDACTED}@rabbit:5672//"
    assert shown["spark_conf"] == {"spark.authenticate.secret": REDACTED, "spark.ui.enabled": False}
    for text in (json.dumps(shown), repr(config)):
        assert "s3cret" not in text, text
    assert config.callback_secret == "cb-s3cret"  # the values themselves are intact

if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        EXAMPLE.write_text(render_example(), encoding="utf-8")
        print(f"wrote {EXAMPLE}")
    else:
        print(render_example(), end="")
