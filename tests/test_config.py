"""Configuration: YAML over defaults, validation messages, and conf.example.yaml kept in sync with SCHEMA.

``python tests/test_config.py --write`` regenerates conf.example.yaml from SCHEMA.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from atoll.config import SCHEMA, load_config
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
        "# Every key is optional; the values below are the defaults. An unknown key or a wrong type is an",
        "# error that names the key.",
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
    ("pipeline_time_limits: {wc: {sync: 0}}\n", ["pipeline_time_limits['wc']", "'sync'", "positive"]),
    ("pipeline_time_limits: {wc: {synch: 5}}\n", ["unknown limit 'synch'", "soft, hard, sync"]),
    ("pipeline_time_limits: {wc: 5}\n", ["pipeline_time_limits['wc']", "must be a mapping"]),
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


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        EXAMPLE.write_text(render_example(), encoding="utf-8")
        print(f"wrote {EXAMPLE}")
    else:
        print(render_example(), end="")
