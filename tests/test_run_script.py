"""The ``./run`` dev-stack helper: usage and exit codes, shellcheck, the docker mode's commands (recorded
``--dry-run`` output: no Docker engine runs here) and the native mode for real — two background workers
on a real RabbitMQ, jobs through them, ``status`` and ``stop``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from tests.requirements import unavailable
from tests.support import eventually, free_port, write_config

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "run")
COMMANDS = ["setup", "serve", "rabbitmq", "worker", "status", "flower", "stop", "clean", "test", "dist"]


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ./run with ``args``; return the completed process (text output)."""
    full = {**os.environ, "ATOLL_VENV": str(Path(sys.prefix)), **(env or {})}
    return subprocess.run([RUN, *args], capture_output=True, text=True, env=full, timeout=timeout,
                          cwd=ROOT)


# -- usage ---------------------------------------------------------------------------------------

def test_unknown_command_prints_usage_and_exits_2():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr
    assert "usage: ./run" in result.stderr
    for command in COMMANDS:
        assert f"  {command}" in result.stderr


def test_unknown_option_and_mode_exit_2():
    assert run("--frob", "status").returncode == 2
    bad_mode = run("--mode", "podman", "status")
    assert bad_mode.returncode == 2 and "choose docker or native" in bad_mode.stderr
    assert run("worker", "--bogus").returncode == 2


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ./run"), result.stdout
    assert command in result.stdout.splitlines()[0]


def test_help_lists_every_command():
    for args in (["help"], ["--help"], []):
        result = run(*args)
        assert result.returncode == 0
        for command in COMMANDS:
            assert f"  {command}" in result.stdout


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (`./run test` installs it as root with apt-get; "
                    "apt-get install shellcheck): only this lint is skipped")
    result = subprocess.run([shellcheck, "--severity=style", RUN], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- mode selection and the docker mode (dry run) ------------------------------------------------

@pytest.fixture
def fake_docker(tmp_path):
    """A ``docker`` on PATH that records its arguments: the engine cannot run here (stand-in only)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "docker-calls"
    script = bindir / "docker"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n[ "$1" = info ] && exit "${{FAKE_DOCKER_INFO:-1}}"\n'
                      f'exit 0\n')
    script.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "log": log}


def test_mode_is_docker_when_an_engine_answers(fake_docker, tmp_path):
    env = {"PATH": fake_docker["PATH"], "ATOLL_RUN_STATE": str(tmp_path / "state")}
    env.pop("ATOLL_RUN_MODE", None)
    answers = run("--dry-run", "status", env={**env, "FAKE_DOCKER_INFO": "0", "ATOLL_RUN_MODE": ""})
    assert answers.stdout.startswith("mode: docker"), answers.stdout + answers.stderr
    silent = run("--dry-run", "status", env={**env, "FAKE_DOCKER_INFO": "1", "ATOLL_RUN_MODE": ""})
    assert silent.stdout.startswith("mode: native"), silent.stdout + silent.stderr
    assert fake_docker["log"].read_text().splitlines() == ["info", "info"]
    forced = run("--dry-run", "status", env={**env, "FAKE_DOCKER_INFO": "0", "ATOLL_RUN_MODE": "native"})
    assert forced.stdout.startswith("mode: native")
    flag = run("--mode", "native", "--dry-run", "status", env={**env, "FAKE_DOCKER_INFO": "0"})
    assert flag.stdout.startswith("mode: native")


# What `./run --mode docker --dry-run <command>` prints, recorded; <root>, <state>, <uid> stand for the
# repository, the state folder and `id -u:id -g`.
DOCKER_DRY_RUN = {
    "rabbitmq": """\
+ docker network create --label atoll.run=1 atoll
+ docker run -d --name atoll-rabbitmq --label atoll.run=1 --network atoll -p 127.0.0.1:5672:5672 \
-p 127.0.0.1:15672:15672 -e RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-rabbit\\ loopback_users\\ \\[\\] \
--health-cmd rabbitmq-diagnostics\\ -q\\ ping \
--health-interval 5s --health-retries 12 rabbitmq:3.13-management
""",
    "worker": """\
+ docker build -t atoll:dev --target app -f <root>/deploy/Dockerfile <root>
+ docker network create --label atoll.run=1 atoll
+ docker run -d --name atoll-worker-1 --label atoll.run=1 --network atoll --user <uid> \
-v <state>:/var/lib/atoll \
-e ATOLL_WORKER_BROKER=amqp://guest:guest@atoll-rabbitmq:5672// -e ATOLL_STATE_DIR=/var/lib/atoll \
atoll:dev atoll worker examples.comments:service --concurrency 2 --hostname atoll-worker-1@%h
""",
    "status": """\
mode: docker
+ docker ps -a --filter label=atoll.run=1 \
--format table\\ \\{\\{.Names\\}\\}\\\\t\\{\\{.Status\\}\\}\\\\t\\{\\{.Ports\\}\\}
+ docker exec atoll-rabbitmq rabbitmqctl list_queues name messages consumers
+ docker run --rm --network atoll \
-e ATOLL_WORKER_BROKER=amqp://guest:guest@atoll-rabbitmq:5672// -e ATOLL_STATE_DIR=/var/lib/atoll \
atoll:dev atoll status examples.comments:service
""",
    "flower": """\
+ docker build -t atoll:dev --target app -f <root>/deploy/Dockerfile <root>
+ docker network create --label atoll.run=1 atoll
+ docker run -d --name atoll-flower --label atoll.run=1 --network atoll -p 127.0.0.1:5555:5555 atoll:dev \
celery --broker amqp://guest:guest@atoll-rabbitmq:5672// flower --address=0.0.0.0 --port=5555
""",
    "stop": """\
+ docker rm -f $(docker ps -aq --filter label=atoll.run=1)
""",
    "clean": """\
+ docker rm -f $(docker ps -aq --filter label=atoll.run=1)
+ docker network rm atoll
+ rm -rf <state>
""",
}


@pytest.mark.parametrize("command", sorted(DOCKER_DRY_RUN))
def test_docker_mode_dry_run_matches_recording(command, fake_docker, tmp_path):
    state = tmp_path / "state"
    result = run("--mode", "docker", "--dry-run", command,
                 env={"PATH": fake_docker["PATH"], "ATOLL_RUN_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    uid = f"{os.getuid()}:{os.getgid()}"
    printed = result.stdout.replace(str(state), "<state>").replace(str(ROOT), "<root>") \
        .replace(f"--user {uid}", "--user <uid>")
    # long recorded lines are wrapped with a backslash-newline above; compare unwrapped
    assert printed == DOCKER_DRY_RUN[command].replace(" \\\n", " ")
    assert not fake_docker["log"].exists(), "a dry run must not call docker"
    assert not state.exists(), "a dry run must not write state"


def test_native_dry_run_rabbitmq_binds_loopback(tmp_path):
    # a broker URL on a port where nothing listens, so the command goes as far as starting one
    port = free_port()
    result = run("--mode", "native", "--dry-run", "rabbitmq",
                 env={"ATOLL_RUN_STATE": str(tmp_path), "ATOLL_BROKER": f"amqp://guest:guest@127.0.0.1:{port}//"})
    assert result.returncode == 0, result.stderr
    line = [ln for ln in result.stdout.splitlines() if "rabbitmq-server" in ln][-1]
    for setting in ("RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "ERL_EPMD_ADDRESS=127.0.0.1",
                    f"RABBITMQ_NODE_PORT={port}", f"RABBITMQ_PID_FILE={tmp_path}/rabbitmq.pid",
                    "rabbitmq-server -detached"):
        assert setting in line
    assert list(tmp_path.iterdir()) == []


# -- native mode, for real -----------------------------------------------------------------------

def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def native_stack(tmp_path, rabbitmq_url):
    """Environment for ./run in native mode on the test broker, with a queue of its own; stops what it
    started (./run stop) afterwards."""
    if shutil.which("setsid") is None:
        unavailable("rabbitmq", "setsid (util-linux) is needed by ./run worker")
    tag = uuid.uuid4().hex[:8]
    state = tmp_path / "state"
    conf = write_config(tmp_path, worker_broker=rabbitmq_url, worker_queue=f"run-test-{tag}",
                        state_dir=str(state), worker_concurrency=1)
    env = {"ATOLL_RUN_STATE": str(state), "ATOLL_CONF": str(conf), "ATOLL_RUN_MODE": "native"}
    yield {"env": env, "state": state, "tag": tag}
    run("stop", env=env)


def _status_report(stdout: str) -> dict:
    """Return the JSON report of ``atoll status`` that ``./run status`` prints after its own lines."""
    return json.loads(stdout[stdout.index("\n{") + 1:])


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_native_workers_run_jobs_status_and_stop(native_stack):
    env, state, tag = native_stack["env"], native_stack["state"], native_stack["tag"]
    names = [f"run-test-{tag}-{i}" for i in (1, 2)]
    for name in names:
        started = run("worker", "--name", name, env=env)
        assert started.returncode == 0, started.stderr
    pids = [int((state / f"worker-{i}.pid").read_text()) for i in (1, 2)]
    assert all(psutil.pid_exists(p) for p in pids)

    def both_answer():
        out = run("status", env=env)
        return out if all(f"{n}@" in out.stdout for n in names) else None

    status = eventually(both_answer, 90, 0.5, what="both workers to answer on the broker")
    assert status.returncode == 0, status.stdout + status.stderr
    for i, pid in enumerate(pids, 1):
        assert f"worker-{i} pid {pid} alive" in status.stdout
    # then what `atoll status` reports: the broker reachable with the queue, both workers answering
    report = _status_report(status.stdout)
    assert report["checks"]["broker"]["ok"] and report["checks"]["broker"]["queue"] == f"run-test-{tag}"
    assert all(any(w.startswith(f"{n}@") for w in report["checks"]["workers"]["names"]) for n in names)
    assert report["checks"]["broker"]["waiting"] == 0 and report["checks"]["broker"]["consumers"] == 2
    assert "word_counts" in report["pipelines"]  # the pipelines of the service the workers run

    # the web process on the same broker and state folder; jobs go through the two workers
    port = free_port()
    web = subprocess.Popen([RUN, "serve", "--rabbitmq", "--bind", f"127.0.0.1:{port}"],
                           env={**os.environ, "ATOLL_VENV": sys.prefix, **env}, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return _http("GET", f"{base}/pipelines")[0] == 200
            except OSError:
                return False

        eventually(up, 60, 0.5, what="./run serve to answer")
        code, body = _http("POST", f"{base}/pipelines/word_counts", {"data": ["one two", "three"]})
        assert (code, body) == (200, {"results": [2, 1]})
        jobs = []
        for i in range(6):
            code, body = _http("POST", f"{base}/pipelines/word_counts",
                               {"data": ["a b c"[: 2 * i + 1]], "async": True})
            assert code == 202, body
            jobs.append((body["job_id"], i + 1))

        def finished():
            records = [_http("GET", f"{base}/jobs/{job_id}")[1] for job_id, _ in jobs]
            return records if all(r["status"] in ("succeeded", "failed") for r in records) else None

        records = eventually(finished, 90, 0.5, what="the async jobs to finish")
        assert [r["results"] for r in records] == [[min(n, 3)] for _, n in jobs]
        logs = "".join((state / f"worker-{i}.log").read_text() for i in (1, 2))
        assert all(job_id in logs for job_id, _ in jobs), "every job ran on a ./run worker"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)

    bystander = subprocess.Popen(["sleep", "60"])
    try:
        stopped = run("stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not list(state.glob("*.pid"))
        eventually(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                   for p in pids), 30, 0.5, what="the workers to exit")
        assert bystander.poll() is None, "./run stop ends only what ./run started"
        after = run("status", env=env)
        assert not any(f"{n}@" in after.stdout for n in names)
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.rabbitmq
def test_native_rabbitmq_uses_the_running_broker(rabbitmq_url, tmp_path):
    result = run("--mode", "native", "rabbitmq",
                 env={"ATOLL_RUN_STATE": str(tmp_path / "state"), "ATOLL_BROKER": rabbitmq_url})
    assert result.returncode == 0, result.stderr
    assert "already listens" in result.stderr
    assert not (tmp_path / "state" / "rabbitmq.pid").exists(), "a broker ./run did not start is not its own"


def test_stop_removes_stale_pid_files_only(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (state / "worker-1.pid").write_text(str(dead.pid))
    (state / "notes.txt").write_text("kept")
    result = run("--mode", "native", "stop", env={"ATOLL_RUN_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]


def test_clean_removes_state_and_refuses_dangerous_folders(tmp_path):
    state = tmp_path / "state"
    (state / "results").mkdir(parents=True)
    (state / "worker-1.log").write_text("old log")
    result = run("--mode", "native", "clean", env={"ATOLL_RUN_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    assert not state.exists()
    for dangerous in ("/", str(ROOT)):
        refused = run("--mode", "native", "--dry-run", "clean", env={"ATOLL_RUN_STATE": dangerous})
        assert refused.returncode == 1 and "refusing" in refused.stderr
    kept = run("--mode", "native", "--dry-run", "clean", "--all",
               env={"ATOLL_RUN_STATE": str(tmp_path / "s2"), "ATOLL_VENV": str(tmp_path / "not-a-venv")})
    assert "not removing" in kept.stderr and "rm -rf " + str(tmp_path / "not-a-venv") not in kept.stdout


def test_native_dry_run_worker_and_flower(tmp_path):
    state = tmp_path / "state"
    env = {"ATOLL_RUN_STATE": str(state), "ATOLL_CONF": ""}
    worker = run("--mode", "native", "--dry-run", "worker", "--concurrency", "3", "--", "--pool", "threads",
                 env=env)
    assert worker.returncode == 0, worker.stderr
    written, line = worker.stdout.strip().splitlines()[-2:]
    # the config file is written by atoll, checked against its schema
    assert f"atoll config --write {state}/run.yaml --set worker_broker=amqp://" in written
    assert written.endswith(f" --set state_dir={state}")
    assert line.startswith(f"+ env ATOLL_CONF={state}/run.yaml ")
    assert (f"atoll workers start --pidfile {state}/worker-1.pid --logfile {state}/worker-1.log "
            "examples.comments:service --concurrency 3 --hostname atoll-worker-1@%h --pool threads") in line
    flower = run("--mode", "native", "--dry-run", "flower", "--port", "5601", env=env)
    assert flower.returncode == 0, flower.stderr
    assert "flower --address=127.0.0.1 --port=5601" in flower.stdout
    assert not state.exists()


# -- set-up: the Python check, the extras each command installs, system packages (dry run) ----------

FAKE_APT_CACHE = r"""#!/bin/sh
# A stand-in for apt-cache (`policy NAME`, `show --no-all-versions NAME`) answering from $FAKE_APT:
# words NAME=VERSION; the version "snap" stands for Ubuntu's snap stubs, which depend on snapd.
for last; do :; done
version=""
for entry in $FAKE_APT; do
  [ "${entry%%=*}" = "$last" ] && version="${entry#*=}"
done
case "$1" in
  policy) printf '%s:\n  Installed: (none)\n  Candidate: %s\n' "$last" "${version:-(none)}" ;;
  show) [ -n "$version" ] || exit 100
        printf 'Package: %s\nVersion: %s\n' "$last" "$version"
        [ "$version" = snap ] && printf 'Pre-Depends: debconf, snapd\n'
        exit 0 ;;
esac
"""


@pytest.fixture
def bare_machine(tmp_path):
    """A PATH with only the tools ./run's set-up uses, as on a new machine: no java, chromium,
    shellcheck, valgrind or rabbitmq-server; ``id -u`` answers $FAKE_UID (0 unless set), apt-cache
    answers from $FAKE_APT, and apt-get must not be called (these are dry runs)."""
    bindir = tmp_path / "bare-bin"
    bindir.mkdir()
    for tool in ("bash", "dirname", "sha1sum", "cut", "cat", "sed", "grep"):
        (bindir / tool).symlink_to(shutil.which(tool))
    scripts = {"id": '#!/bin/sh\necho "${FAKE_UID:-0}"\n',
               "apt-get": "#!/bin/sh\necho 'apt-get ran during a dry run' >&2\nexit 99\n",
               "apt-cache": FAKE_APT_CACHE}
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    # a broker URL on a port where nothing listens: RabbitMQ counts as missing too
    return {"PATH": str(bindir), "ATOLL_BROKER": f"amqp://guest:guest@127.0.0.1:{free_port()}//",
            "ATOLL_REQUIRE": ""}


def bare_run(machine: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``bash ./run ARGS`` with the bare machine's PATH (and ``env`` on top)."""
    full = {**os.environ, "ATOLL_VENV": str(Path(sys.prefix)), **machine, **env}
    return subprocess.run([shutil.which("bash"), RUN, *args], capture_output=True, text=True, env=full,
                          timeout=60, cwd=ROOT)


def installs(result: subprocess.CompletedProcess) -> list[list[str]]:
    """Return the package lists of the ``apt-get install`` lines a dry run printed."""
    return [line.split("--no-install-recommends", 1)[1].split() for line in result.stdout.splitlines()
            if " apt-get install " in line]


DEBIAN_12 = ("rabbitmq-server=3.10.8 openjdk-17-jre-headless=17.0.21 default-jre-headless=2:1.17 "
             "shellcheck=0.9.0 chromium=156.0 valgrind=3.19")
DEBIAN_13 = ("rabbitmq-server=4.0.5 openjdk-21-jre-headless=21.0.9 default-jre-headless=2:1.21 "
             "shellcheck=0.10.0 chromium=156.0 valgrind=3.24")
UBUNTU = ("rabbitmq-server=3.12.1 openjdk-17-jre-headless=17.0.17 openjdk-21-jre-headless=21.0.9 "
          "shellcheck=0.9.0 chromium-browser=snap valgrind=3.22")


@pytest.mark.parametrize(("release", "apt", "java"), [("Debian 12", DEBIAN_12, "openjdk-17-jre-headless"),
                                                      ("Debian 13", DEBIAN_13, "openjdk-21-jre-headless")])
def test_test_installs_each_missing_package_on_its_own_with_the_java_the_release_has(
        bare_machine, release, apt, java):
    result = bare_run(bare_machine, "--dry-run", "test", "-x", FAKE_APT=apt)
    assert result.returncode == 0, result.stderr
    assert installs(result) == [["rabbitmq-server"], [java], ["shellcheck"], ["chromium"], ["valgrind"]]
    assert "NOT installed" not in result.stderr, release
    assert "+ env DEBIAN_FRONTEND=noninteractive apt-get update -qq" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("-m pytest -x")


def test_test_says_what_it_could_not_install_and_which_tests_skip_or_fail(bare_machine):
    # Ubuntu: chromium-browser is a snap stub (and there is no `chromium`): never installed
    result = bare_run(bare_machine, "--dry-run", "test", FAKE_APT=UBUNTU)
    assert result.returncode == 0, result.stderr
    assert installs(result) == [["rabbitmq-server"], ["openjdk-17-jre-headless"], ["shellcheck"],
                                ["valgrind"]]
    (line,) = [ln for ln in result.stderr.splitlines() if "NOT installed" in ln]
    assert "chromium: no such package here" in line and "chromium-browser: only a snap stub" in line
    assert "tests/test_ui.py" in line and line.endswith("will skip")
    required = bare_run(bare_machine, "--dry-run", "test", FAKE_APT=UBUNTU,
                        ATOLL_REQUIRE="rabbitmq,spark,chromium")
    assert "will FAIL (ATOLL_REQUIRE names chromium)" in required.stderr
    # no Java package at all: the Spark tests are named
    no_java = bare_run(bare_machine, "--dry-run", "test", FAKE_APT="valgrind=3", ATOLL_REQUIRE="spark")
    (java,) = [ln for ln in no_java.stderr.splitlines() if "NOT installed: java" in ln]
    assert "the Spark tests will FAIL (ATOLL_REQUIRE names spark)" in java


def test_test_without_root_installs_nothing_and_says_so(bare_machine):
    result = bare_run(bare_machine, "--dry-run", "test", FAKE_APT=DEBIAN_12, FAKE_UID="1000")
    assert result.returncode == 0, result.stderr
    assert installs(result) == [] and "apt-get update" not in result.stdout
    lacking = [ln for ln in result.stderr.splitlines() if "NOT installed" in ln]
    assert len(lacking) == 5 and all("needs root and apt-get" in ln for ln in lacking)


def test_an_old_python_is_refused_in_one_line_before_any_install(bare_machine, tmp_path):
    old = tmp_path / "python3.8"
    old.write_text("#!/bin/sh\necho 3.8\n")
    old.chmod(0o755)
    for command in ("setup", "serve", "test"):
        result = bare_run(bare_machine, "--dry-run", command, PYTHON=str(old),
                          ATOLL_VENV=str(tmp_path / "new-venv"))
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stdout == ""  # nothing was run, nothing would have been
        assert result.stderr.splitlines() == [
            f"run: atoll needs Python 3.10 or newer; {old} is Python 3.8 (set PYTHON=python3.X, and "
            f"remove an old {tmp_path / 'new-venv'})"]


def test_serve_installs_only_the_service_extra(tmp_path):
    venv = tmp_path / "venv"  # a virtualenv that nothing was installed into yet
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    served = run("--dry-run", "serve", env={"ATOLL_VENV": str(venv)})
    assert served.returncode == 0, served.stderr
    pip = [ln for ln in served.stdout.splitlines() if " pip install " in ln]
    assert pip == [f"+ {venv}/bin/python -m pip install --progress-bar off -e {ROOT}\\[service\\]"]
    assert "installing atoll[service]" in served.stderr and "[test]" not in served.stdout + served.stderr


def test_dist_builds_the_wheel_and_the_sdist_with_build(tmp_path):
    result = run("--dry-run", "dist", "--outdir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (f"+ {sys.prefix}/bin/python -m build --outdir {tmp_path}/out "
                                              f"{ROOT}")
