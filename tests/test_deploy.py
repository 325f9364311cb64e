"""deploy/: the compose file, the Dockerfile, gunicorn's settings and the stack's config.

No Docker engine runs here: the image is not built. What can be checked without one is: the compose file's
structure (and ``docker compose config`` where the client has the compose plugin), that every file the
Dockerfile copies exists, and that the gunicorn settings really serve the app (started for real).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import eventually, free_port, write_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_services(compose):
    services = compose["services"]
    assert set(services) == {"rabbitmq", "web", "worker", "flower", "spark-master", "spark-worker"}
    assert services["rabbitmq"]["healthcheck"]["test"][:2] == ["CMD", "rabbitmq-diagnostics"]
    for name in ("web", "worker", "flower"):
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
        assert "/etc/atoll/atoll.yaml" in services[name]["environment"]["ATOLL_CONF"]
    assert services["web"]["command"][:3] == ["gunicorn", "--config", "deploy/gunicorn.conf.py"]
    assert services["worker"]["command"][:2] == ["atoll", "worker"]
    assert services["flower"]["profiles"] == ["monitoring"]
    assert services["spark-master"]["profiles"] == services["spark-worker"]["profiles"] == ["spark"]
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]
    assert "replicas" not in services["worker"].get("deploy", {}), "scale with --scale worker=N"


def test_compose_config_validates_with_docker_client():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client installed: `docker compose config` cannot run")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines()[0][:80]
        pytest.skip(f"the docker client has no compose plugin (`docker compose version`: {said}); "
                    "the YAML checks above still run")
    result = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "--profile", "spark",
                             "--profile", "monitoring", "config", "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_dockerfile_targets_and_sources():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, flags=re.M)
    assert [s[1] for s in stages] == ["app", "spark"]
    assert re.match(r"python:\$\{PYTHON_VERSION\}-slim-(bookworm|trixie)$", stages[0][0]), \
        "the base image names its Debian release"
    assert stages[1][0] == "app"
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users[-1] == "atoll" and users[-1] != "root", "the image runs as a non-root user"
    spark_part = text.split("AS spark", 1)[1]
    assert "openjdk-" in spark_part and '".[spark]"' in spark_part
    assert "openjdk" not in text.split("AS spark", 1)[0], "Java only in the spark target"
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_spark_class_exists_where_compose_runs_it(compose):
    pyspark = pytest.importorskip("pyspark", reason="pyspark is part of the spark extra")
    assert compose["services"]["spark-master"]["command"][0] == "/opt/spark/bin/spark-class"
    assert (Path(pyspark.__file__).parent / "bin" / "spark-class").exists()


def test_stack_config_is_valid():
    from atoll.config import load_config

    config = load_config(str(DEPLOY / "atoll.yaml"))
    assert config.worker_broker.startswith("amqp://") and "@rabbitmq:5672" in config.worker_broker
    assert config.state_dir == "/var/lib/atoll"
    assert config.spark_master == "spark://spark-master:7077"


def test_compose_targets_import():
    from atoll.cli import load_service

    compose_text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    service_target = re.search(r"ATOLL_SERVICE:-([\w.:]+)\}", compose_text).group(1)
    app_target = re.search(r"ATOLL_APP:-([\w.:]+)\}", compose_text).group(1)
    assert load_service(service_target).pipelines
    module, _, attr = app_target.partition(":")
    __import__(module)
    assert callable(getattr(sys.modules[module], attr))


def test_gunicorn_settings_serve_the_app(tmp_path):
    port = free_port()
    conf = write_config(tmp_path, embedded_worker=False)
    env = {**os.environ, "ATOLL_CONF": str(conf), "ATOLL_BIND": f"127.0.0.1:{port}", "WEB_WORKERS": "2",
           "WEB_THREADS": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the settings make a fresh one
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        def listing() -> dict:
            assert server.poll() is None, server.stdout.read().decode(errors="replace")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/pipelines", timeout=5) as resp:
                return json.loads(resp.read())

        listing = eventually(listing, 60, 0.3, what="gunicorn to list the pipelines", ignoring=(OSError,))
        assert "word_counts" in {p["name"] for p in listing["pipelines"]}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/pipelines/word_counts",
                                     data=json.dumps({"data": ["one two three"]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        for _ in range(10):
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert json.loads(resp.read()) == {"results": [3]}
                assert resp.headers["X-Request-ID"]
        for _ in range(5):  # whichever worker answers the scrape, it counts every worker's requests
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            assert 'atoll_requests_total{mode="sync",pipeline="word_counts",status="200"} 10.0' in text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_deploy_readme_covers_production_settings():
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for topic in ("worker_broker", "callback_secret", "verify_callback", "callback_allowed_hosts",
                  "auth_tokens", "--scale worker=", "spark_master", "RABBITMQ_PASSWORD"):
        assert topic in text, topic


def test_dockerfile_installs_dependencies_before_copying_the_code(tmp_path):
    app_stage = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").split("AS spark", 1)[0]
    steps = re.findall(r"^(COPY|RUN)\s+((?:.*\\\n)*.*)$", app_stage, flags=re.M)
    code_at = next(i for i, (kind, arg) in enumerate(steps) if kind == "COPY" and arg.startswith("atoll "))
    installs = [i for i, (kind, arg) in enumerate(steps) if kind == "RUN" and '".[service' in arg]
    assert installs and installs[0] < code_at, "the dependency layer must come before COPY atoll"
    # The dependency layer sees only the files copied before it: build the package's metadata from
    # exactly those, with the empty stand-in package the Dockerfile creates, as pip will in the image.
    for kind, arg in steps[:installs[0]]:
        if kind == "COPY":
            for source in arg.split()[:-1]:
                (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, tmp_path / source)
    (tmp_path / "atoll").mkdir(exist_ok=True)
    (tmp_path / "atoll" / "__init__.py").write_text("")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--quiet", "--wheel-dir", str(tmp_path / "out"), str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    import zipfile

    wheel = next((tmp_path / "out").glob("atoll-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    for extra_requirement in ("flask", "celery", "gunicorn", "flower", "numpy"):
        assert re.search(rf"^Requires-Dist: {extra_requirement}\b", metadata, flags=re.M | re.I), \
            extra_requirement


# The Java package each Debian release offers (Spark 4 runs on 17 and 21): Debian 13 (trixie) has no
# openjdk-17-jre-headless. Where this machine runs the base's release, apt-cache checks every name.
JAVA_OF_RELEASE = {"bookworm": "openjdk-17-jre-headless", "trixie": "openjdk-21-jre-headless"}


def dockerfile_release_and_packages() -> tuple[str, list[str]]:
    """Return the Debian release of the Dockerfile's base image and the names its apt-get installs."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM\s+python:\S+-slim-(\w+)\s", text, flags=re.M)
    assert base, "the base image must name its Debian release (python:X.Y-slim-RELEASE)"
    installs = re.findall(r"apt-get install ((?:[^\n&]|\\\n)+)", text)
    names = [w for line in installs for w in line.split() if not w.startswith("-") and w != "\\"]
    return base.group(1), names


def test_the_dockerfile_installs_the_java_of_its_debian_release():
    release, names = dockerfile_release_and_packages()
    assert release in JAVA_OF_RELEASE, f"no known Java package for Debian {release}: add it here"
    java = [n for n in names if n.startswith(("openjdk-", "default-jre"))]
    assert java == [JAVA_OF_RELEASE[release]], (release, java)


def test_the_dockerfile_apt_names_exist_in_its_release():
    release, names = dockerfile_release_and_packages()
    os_release = Path("/etc/os-release")
    fields = dict(line.split("=", 1) for line in os_release.read_text().splitlines() if "=" in line) \
        if os_release.exists() else {}
    here = fields.get("VERSION_CODENAME", "").strip('"')
    if fields.get("ID", "").strip('"') != "debian" or here != release:
        pytest.skip(f"the base image is Debian {release}; this machine is {here or 'not Debian'}: "
                    "apt-cache cannot answer for that release (the Java name is checked above)")
    if shutil.which("apt-cache") is None or not list(Path("/var/lib/apt/lists").glob("*_Packages*")):
        pytest.skip("apt's package lists are empty here: run `apt-get update` for this check")
    for name in names:
        policy = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True, timeout=60)
        assert re.search(r"Candidate: [^(]", policy.stdout), f"Debian {release} has no package {name}"
