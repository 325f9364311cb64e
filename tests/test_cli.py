"""The ``atoll`` command: help on every subcommand, one-line errors for a bad MODULE:SERVICE, and
``serve --dev`` answering over a socket (``serve`` under gunicorn is exercised by the socket tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from atoll.cli import CliError, build_parser, load_service, main, parse_bind
from tests.support import eventually, serve, write_config

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
    if command not in ("secret", "token"):  # the commands that need no service
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


def test_status_says_what_health_says(tmp_path, monkeypatch):
    # `atoll status` and GET /health describe one service's health in the same words
    (tmp_path / "health_words.py").write_text(
        "from atoll import Atoll, Pipeline\n"
        "service = Atoll()\n"
        "service.register_pipeline('/n', Pipeline(name='n').map(len))\n"
        "service.health_checks.append(lambda: ('extra', False, {'error': 'always failing'}, False))\n")
    monkeypatch.setenv("ATOLL_STATE_DIR", str(tmp_path / "state"))
    said = atoll("status", "health_words:service", cwd=tmp_path,
                 env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    word = json.loads(said.stdout)["status"]
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import health_words

        answer = health_words.service.create_app().test_client().get("/health")
    finally:
        sys.modules.pop("health_words", None)
    assert word == answer.get_json()["status"] and word in ("ok", "degraded", "down")
    assert said.returncode == (0 if answer.status_code == 200 else 1)


def test_config_write_checks_every_key_then_writes_only_those(tmp_path):
    path = tmp_path / "state" / "run.yaml"
    result = atoll("config", "--write", str(path), "--set", "worker_broker=amqp://u:pw-s3cret@rabbit//",
                   "--set", "n_jobs=3", "--set", 'spark_conf={"spark.ui.enabled": "false"}',
                   env={"ATOLL_CONF": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "s3cret" not in result.stderr
    assert path.stat().st_mode & 0o777 == 0o600  # it may hold a password
    from atoll.config import load_config

    config = load_config(str(path), environ={})
    assert (config.worker_broker, config.n_jobs, config.spark_conf) == (
        "amqp://u:pw-s3cret@rabbit//", 3, {"spark.ui.enabled": "false"})
    assert {k for k, origin in config.origins.items() if origin != "default"} == {
        "worker_broker", "n_jobs", "spark_conf"}


@pytest.mark.parametrize("settings, error", [
    (["n_jobz=3"], "unknown key 'n_jobz' — did you mean 'n_jobs'?"),
    (["n_jobs=many"], "key 'n_jobs' must be integer; got str 'many'"),
    (["auth_tokens=[s3cret"], "--set auth_tokens: the value is not valid YAML or JSON"),
    (["n_jobs"], "--set expects KEY=VALUE, got 'n_jobs'"),
])
def test_config_write_refuses_a_bad_key_in_one_line_and_writes_nothing(tmp_path, settings, error):
    path = tmp_path / "run.yaml"
    result = atoll("config", "--write", str(path), *[a for s in settings for a in ("--set", s)])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error in result.stderr and "s3cret" not in result.stderr
    assert not path.exists()


def test_config_set_needs_write():
    result = atoll("config", "--set", "n_jobs=2")
    assert result.returncode == 2 and "--set needs --write PATH" in result.stderr


def test_workers_list_and_stop_act_on_pid_files_only(tmp_path):
    leader = subprocess.Popen(["sleep", "60"], start_new_session=True)  # as `atoll workers start` does
    child = subprocess.Popen(["sleep", "60"])
    bystander = subprocess.Popen(["sleep", "60"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        for name, process in (("worker-1", leader), ("flower", child), ("worker-2", gone)):
            (tmp_path / f"{name}.pid").write_text(f"{process.pid}\n")
        (tmp_path / "notes.txt").write_text("kept")
        pidfiles = [str(tmp_path / f"{n}.pid") for n in ("worker-1", "flower", "worker-2")]
        listed = atoll("workers", "list", *pidfiles)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines() == [
            f"worker-1 pid {leader.pid} alive (log {tmp_path}/worker-1.log)",
            f"flower pid {child.pid} alive (log {tmp_path}/flower.log)",
            f"worker-2 pid {gone.pid} NOT running (see {tmp_path}/worker-2.log)"]
        stopped = atoll("workers", "stop", *pidfiles)
        assert stopped.returncode == 0, stopped.stderr
        assert leader.wait(10) == -signal.SIGTERM and child.wait(10) == -signal.SIGTERM
        assert bystander.poll() is None, "only the processes of the pid files are stopped"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    finally:
        for process in (leader, child, bystander):
            process.kill()
            process.wait()


def test_workers_start_refuses_a_pid_file_whose_process_runs(tmp_path):
    pidfile = tmp_path / "worker-1.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    result = atoll("workers", "start", "--pidfile", str(pidfile), "--logfile", str(tmp_path / "w.log"),
                   "served:service")
    assert result.returncode == 2 and "still runs: stop it first" in result.stderr
    assert not (tmp_path / "w.log").exists()


def test_workers_start_runs_a_supervised_worker_in_its_own_session_until_stopped(tmp_path):
    import psutil

    pidfile, logfile = tmp_path / "run" / "worker-1.pid", tmp_path / "run" / "worker-1.log"
    env = {"ATOLL_CONF": "", "ATOLL_STATE_DIR": str(tmp_path / "state")}
    started = atoll("workers", "start", "--pidfile", str(pidfile), "--logfile", str(logfile),
                    "served:service", "--concurrency", "1", env=env)
    assert started.returncode == 0, started.stderr
    supervisor = psutil.Process(int(pidfile.read_text()))
    assert f"(pid {supervisor.pid}, log {logfile})" in started.stdout
    try:
        assert os.getsid(supervisor.pid) == supervisor.pid  # leaves with nothing of the caller's
        log = lambda: logfile.read_text(errors="replace")  # noqa: E731
        eventually(lambda: "ready" in log(), 60, 0.2, what="the worker to be ready", detail=log)
        worker = supervisor.children()[0]
        assert "worker" in worker.cmdline() and "served:service" in worker.cmdline()
        worker.kill()  # a worker that dies is started again
        eventually(lambda: [c for c in supervisor.children() if c.pid != worker.pid and c.is_running()],
                   30, 0.2, what="another worker to be started", detail=log)
        stopped = atoll("workers", "stop", str(pidfile), env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not pidfile.exists()
        psutil.wait_procs([supervisor], timeout=30)
        assert not supervisor.is_running() or supervisor.status() == psutil.STATUS_ZOMBIE
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in [supervisor, *supervisor.children(recursive=True)]:
                process.kill()
