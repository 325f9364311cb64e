"""The ``atoll`` command: help on every subcommand, one-line errors for a bad MODULE:SERVICE, and
``serve --dev`` answering over a socket (``serve`` under gunicorn is exercised by the socket tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from atoll.cli import CliError, build_parser, load_service, main, parse_bind
from tests.support import serve, write_config

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def atoll(*args, cwd=ROOT, env=None, timeout=60):
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "atoll", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help():
    result = atoll("--help")
    assert result.returncode == 0 and "serve" in result.stdout


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help(command):
    result = atoll(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: atoll {command}" in result.stdout
    if command != "secret":  # the one command that needs no service
        assert "MODULE:SERVICE" in result.stdout


def test_version():
    from atoll import __version__

    result = atoll("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_no_subcommand_is_a_usage_error():
    result = atoll()
    assert result.returncode == 2 and "usage: atoll" in result.stderr


@pytest.mark.parametrize("target, words", [
    ("no_such_module_xyz:service", ["cannot import module 'no_such_module_xyz'", "no such module"]),
    ("served:nothing_here", ["has no attribute 'nothing_here'", "it has: service"]),
    ("served:app", ["served:app is a Flask, not an atoll.Atoll service"]),
    ("broken_module:service", ["importing 'broken_module' failed", "ZeroDivisionError"]),
    (":service", ["expected MODULE:SERVICE"]),
])
def test_bad_targets_are_one_line_errors_with_status_2(tmp_path, target, words):
    (tmp_path / "broken_module.py").write_text("1 / 0\n")
    result = atoll("serve", target, env={"PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT),
                                                                         str(tmp_path)])})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atoll serve: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("args, words", [
    (["--bind", "127.0.0.1:http"], ["--bind must be HOST:PORT"]),
    (["--bind", "127.0.0.1:70000"], ["0-65535"]),
])
def test_bad_bind_is_a_one_line_error(args, words):
    result = atoll("serve", "served:service", *args, env={"ATOLL_CONF": ""})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in result.stderr


def test_bad_worker_count_is_a_usage_error():
    result = atoll("serve", "served:service", "--workers", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr


def test_bad_config_is_a_one_line_error(tmp_path):
    conf = write_config(tmp_path, n_job=2)
    result = atoll("serve", "examples.comments:service", env={"ATOLL_CONF": str(conf)})
    assert result.returncode == 2 and "unknown key 'n_job'" in result.stderr
    assert "Traceback" not in result.stderr


def test_load_service_and_parse_bind_in_process():
    assert sorted(load_service("examples.comments").pipelines) == [
        "readability", "top_words", "user_stats", "word_counts", "wordcount"]
    assert parse_bind("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_bind(":9000") == ("127.0.0.1", 9000)
    assert parse_bind("8001") == ("127.0.0.1", 8001)
    assert parse_bind("[::1]:8002") == ("::1", 8002)
    with pytest.raises(CliError):
        parse_bind("host:")


def test_main_returns_2_for_a_bad_target(capsys):
    assert main(["serve", "no_such_module_xyz"]) == 2
    assert "cannot import module" in capsys.readouterr().err


def test_serve_dev_answers_over_a_socket(tmp_path):
    conf = write_config(tmp_path, embedded_worker=False)

    def word_counts(url: str) -> requests.Response:
        return requests.post(f"{url}/pipelines/word_counts", json={"data": ["one two", "three"]}, timeout=2)

    # --dev runs Flask's reloader, which re-executes the command as a child: its own session lets the
    # test stop both by the process group it created.
    with serve("examples.comments:service", conf, workers=None, threads=None, args=["--dev"], session=True,
               ready=word_counts) as (url, _):
        response = word_counts(url)
    assert response.json() == {"results": [2, 1]}


BLOCKER = """
import sys

class Absent:
    '''Makes the named top-level modules look not installed.'''

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent(sys.argv[1].split(",")))
from atoll.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("absent, args, extra", [
    ("flask", ["serve", "served_light:service"], "service"),
    ("flask,celery,kombu", ["worker", "served_light:service"], "service"),
    ("celery", ["worker", "served_light:service"], "service"),
    ("gunicorn", ["serve", "served_light:service"], "service"),
])
def test_commands_without_their_extra_name_what_to_install(tmp_path, absent, args, extra):
    (tmp_path / "served_light.py").write_text(
        "from atoll import Atoll, Pipeline\n"
        "service = Atoll()\n"
        "service.register_pipeline('/double', Pipeline().map(lambda x: 2 * x))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "ATOLL_CONF": "", "ATOLL_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-c", BLOCKER, absent, *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if " INFO " not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"atoll {args[0]}: ") and f"pip install 'atoll[{extra}]'" in lines[0]


def test_config_command_shows_values_origins_and_no_secrets(tmp_path):
    conf = write_config(tmp_path, n_jobs=3, callback_secret="file-s3cret", log_level="DEBUG")
    env = {"ATOLL_CONF": "", "ATOLL_LOG_LEVEL": "WARNING", "ATOLL_AUTH_TOKENS": "[env-s3cret]",
           "ATOLL_WORKER_BROKER": "amqp://atoll:pw-s3cret@rabbit:5672//"}
    result = atoll("config", "--config", str(conf), env=env)
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    lines = {line.split(":", 1)[0]: line for line in result.stdout.splitlines()
             if not line.startswith("#")}
    assert lines["n_jobs"].split("#")[0].strip() == "n_jobs: 3"
    assert lines["n_jobs"].endswith(f"# file {conf}")
    assert lines["log_level"].endswith("# env ATOLL_LOG_LEVEL") and '"WARNING"' in lines["log_level"]
    assert lines["auth_tokens"].startswith('auth_tokens: ["***"]')
    assert '"amqp://atoll:***@rabbit:5672//"' in lines["worker_broker"]
    assert lines["worker_queue"].endswith("# default")

    as_json = atoll("config", "--json", "--config", str(conf), env=env)
    shown = json.loads(as_json.stdout)
    assert shown["callback_secret"] == {"value": "***", "origin": f"file {conf}"}
    assert shown["n_jobs"]["value"] == 3


def test_config_option_reaches_the_service_module(tmp_path):
    (tmp_path / "mymod.py").write_text("from atoll import Atoll\nservice = Atoll()\n")
    conf = write_config(tmp_path, worker_queue="from-the-file")
    env = {"ATOLL_CONF": "", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = atoll("config", "--json", "--config", str(conf), "mymod:service", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["worker_queue"] == {"value": "from-the-file",
                                                         "origin": f"file {conf}"}


@pytest.mark.parametrize("command", ["serve", "worker", "status", "config"])
def test_a_missing_config_file_is_a_one_line_error(tmp_path, command):
    result = atoll(command, "--config", str(tmp_path / "absent.yaml"), "served:service")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"atoll {command}: --config {tmp_path / 'absent.yaml'}: no such file"


def test_a_bad_environment_value_is_a_one_line_error():
    result = atoll("serve", "served:service", env={"ATOLL_CONF": "", "ATOLL_N_JOBS": "many"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ATOLL_N_JOBS" in result.stderr and "must be integer" in result.stderr


@pytest.mark.parametrize("option", [["--config", "{path}"], ["--config={path}"]])
def test_worker_takes_config_after_the_target_too(tmp_path, option):
    # celery's worker has no --config: after MODULE:SERVICE it is still atoll's, and is checked
    absent = tmp_path / "absent.yaml"
    result = atoll("worker", "served:service", *[o.format(path=absent) for o in option])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"atoll worker: --config {absent}: no such file"
