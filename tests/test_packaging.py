"""atoll as a user installs it: a wheel in a fresh virtualenv with only the extras asked for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from atoll.service.jobs.delivery import signature_headers
from tests.support import answers, serve, write_config
from tests.venvs import build_wheel, clean_env, make_venv

pytestmark = pytest.mark.slow

LIGHT_CLIENT = r"""
import importlib.util, json, sys

import atoll
from atoll import Client, Job, RemoteError, verify_callback

absent = [m for m in ("flask", "celery", "kombu", "gunicorn", "pyspark")
          if importlib.util.find_spec(m) is not None]
assert not absent, f"installed although not asked for: {absent}"
loaded = [m for m in ("flask", "celery", "kombu", "werkzeug") if m in sys.modules]
assert not loaded, f"imported: {loaded}"

url, signed = sys.argv[1], json.loads(sys.argv[2])
with Client(url) as client:
    assert client.run("double", [1, 2]) == [2, 4]
    try:
        client.run("lookup", ["z"])
    except RemoteError as exc:
        error = {"name": exc.name, "status": exc.status, "stage": exc.stage}
    job = Job(client, "no-such-job")
assert verify_callback("s3cret", signed["headers"], signed["body"])
assert not verify_callback("other", signed["headers"], signed["body"])
print(json.dumps({"file": atoll.__file__, "error": error}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_client_and_verify_callback_need_only_the_client_extra(wheel, tmp_path):
    python = make_venv(tmp_path / "venv", f"{wheel}[client]")
    conf = write_config(tmp_path, embedded_worker=False)
    body = b'{"job_id":"j1","status":"succeeded","results":[2]}'
    signed = {"headers": signature_headers("s3cret", "j1", body), "body": body.decode()}
    with serve("served:service", conf, workers=1, ready=answers("/pipelines")) as (url, _):
        done = subprocess.run([str(python), "-c", LIGHT_CLIENT, url, json.dumps(signed)],
                              capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["file"].startswith(str(tmp_path / "venv"))  # the installed copy, not this tree
    assert report["error"]["name"] == "KeyError" and report["error"]["status"] == 500
    assert report["error"]["stage"]["function"] == "lookup"



def declared_requirements(wheel: Path) -> dict[str, Requirement]:
    """Return every requirement the wheel declares (core and extras), by distribution name."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode("utf-8")
    found: dict[str, Requirement] = {}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: "):
            requirement = Requirement(line.removeprefix("Requires-Dist: ").split(";")[0])
            found[requirement.name.lower()] = requirement
    return found


def newest_release(name: str) -> Version | None:
    """Return the newest release of ``name`` on the package index, or None when it cannot be asked."""
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name,
                           "--disable-pip-version-check"], capture_output=True, text=True, timeout=120)
    match = re.match(r"\S+ \(([^)]+)\)", done.stdout)
    return Version(match.group(1)) if done.returncode == 0 and match else None


def test_version_caps_admit_the_newest_releases(wheel):
    # Every machine installs the newest versions setup.py allows; a cap below the newest release leaves
    # users on old releases or unable to install beside other packages.
    excluded = []
    for name, requirement in declared_requirements(wheel).items():
        newest = newest_release(name)
        if newest is None:
            pytest.skip(f"the package index cannot be asked about {name} (offline?)")
        if not requirement.specifier.contains(newest, prereleases=False):
            excluded.append(f"{requirement} excludes {name} {newest}")
    assert not excluded, "; ".join(excluded)


def test_the_wheel_carries_the_dashboard_files(wheel):
    # /ui serves these from the installed package: a wheel without them would answer 404 for the page
    from atoll.service.http.ui import FILES

    shipped = {path.name for path in FILES.iterdir() if path.is_file()}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"index.html", "app.css", "main.js", "api.js"} <= shipped
    assert {f"atoll/service/ui_files/{name}" for name in shipped} <= names


# -- the release: one version, the changelog, the wheel and the sdist of `./run dist` ----------------

def test_the_version_is_written_once_and_the_changelog_opens_with_its_section():
    import atoll

    root = Path(__file__).resolve().parents[1]
    assert 'version="' not in (root / "setup.py").read_text(encoding="utf-8"), "setup.py reads __version__"
    headings = re.findall(r"^## (.+)$", (root / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.M)
    dated = rf"{re.escape(atoll.__version__)} - \d{{4}}-\d{{2}}-\d{{2}}"
    assert re.fullmatch(dated, headings[0]), headings[0]
    assert "Unreleased" not in headings[0]
    assert len(set(headings)) == len(headings)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and the sdist that `./run dist` builds (python -m build, from this tree)."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([str(root / "run"), "dist", "--outdir", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=root, env={**clean_env(), "ATOLL_VENV": sys.prefix})
    if done.returncode != 0 and ("NewConnectionError" in done.stdout + done.stderr
                                 or "No matching distribution" in done.stdout + done.stderr):
        pytest.skip("the package index is unreachable: python -m build cannot fetch setuptools")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_run_dist_builds_a_wheel_and_an_sdist_of_this_version(dist):
    import tarfile

    import atoll

    version = atoll.__version__
    assert sorted(p.name for p in dist.iterdir()) == [f"atoll-{version}-py3-none-any.whl",
                                                      f"atoll-{version}.tar.gz"]
    with zipfile.ZipFile(dist / f"atoll-{version}-py3-none-any.whl") as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"atoll-{version}.dist-info/METADATA").decode()
    assert {n.split("/")[0] for n in names} == {"atoll", f"atoll-{version}.dist-info"}, "only the package"
    assert f"Version: {version}\n" in metadata and "Requires-Python: >=3.10\n" in metadata
    assert "Classifier: Operating System :: POSIX\n" in metadata
    with tarfile.open(dist / f"atoll-{version}.tar.gz") as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for wanted in ("CHANGELOG.md", "LICENSE", "README.md", "setup.py", "pyproject.toml", "docs/index.rst",
                   "tests/conftest.py", "examples/comments.py", "deploy/Dockerfile", "benchmarks/RESULTS.md",
                   "atoll/service/ui_files/main.js"):
        assert wanted in members, f"the sdist lacks {wanted}"
    assert not any("__pycache__" in m or m.startswith("docs/_build") for m in members)


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_wheel_and_the_sdist_install_in_a_fresh_virtualenv(dist, tmp_path, kind):
    import atoll

    artifact = next(dist.glob("*.whl" if kind == "wheel" else "*.tar.gz"))
    python = make_venv(tmp_path / "venv", str(artifact))
    said = subprocess.run([str(python.parent / "atoll"), "--version"], capture_output=True, text=True,
                          env=clean_env(), cwd=tmp_path, timeout=120)
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == f"atoll {atoll.__version__}"
    where = subprocess.run([str(python), "-c", "import atoll; print(atoll.__file__)"], capture_output=True,
                           text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr
