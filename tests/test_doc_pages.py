"""Code on the docs pages that Sphinx's doctest builder does not run: other languages, shell lines, and
the HTTP side of the examples. (The ``>>>`` examples run in tests/test_docs.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from atoll.config import load_config
from atoll.signing import signature_headers
from tests.docblocks import DOCS, blocks, by_caption, exports

SECRETS = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "a plain secret"]

CHECKS = """
// node -e puts the first argument at argv[1]
const { verifyCallback } = require(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
console.log(JSON.stringify(cases.map((c) => verifyCallback(c.secret, c.headers, Buffer.from(c.body)))));
"""


@pytest.mark.parametrize("secret", SECRETS)
def test_the_node_verifier_accepts_what_the_service_signs_and_nothing_else(tmp_path, secret):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript verifier of docs/security.rst cannot run")
    (tmp_path / "verify.js").write_text(by_caption("security", "verify.js").text, encoding="utf-8")
    body = '{"job_id":"j-1","status":"succeeded","results":[["é",1]]}'
    good = signature_headers(secret, "j-1", body.encode())
    stale = signature_headers(secret, "j-1", body.encode(), timestamp=int(time.time()) - 3600)
    cases = [
        {"secret": secret, "headers": good, "body": body},
        {"secret": secret, "headers": good, "body": body.replace("succeeded", "failed")},
        {"secret": secret + "x" if not secret.startswith("whsec_") else "whsec_" + "A" * 32,
         "headers": good, "body": body},
        {"secret": secret, "headers": stale, "body": body},
        {"secret": secret, "headers": {**good, "webhook-signature": "v1,AAAA"}, "body": body},
        {"secret": secret, "headers": {k: v for k, v in good.items() if k != "webhook-signature"},
         "body": body},
        {"secret": secret, "headers": {**good, "webhook-signature": "v0,x " + good["webhook-signature"]},
         "body": body},
    ]
    done = subprocess.run([node, "-e", CHECKS, str(tmp_path / "verify.js"), json.dumps(cases)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, False, False, False, False, False, True]


def test_the_tokens_line_of_the_security_page_configures_two_tokens():
    (console,) = [b for b in blocks("security") if b.language == "console"]
    config = load_config(environ=exports(console))
    assert config.auth_tokens == ["token-of-the-billing-service", "token-of-the-reports-service"]


def test_the_quickstart_exports_are_valid_configuration():
    serve = [b for b in blocks("quickstart") if b.language == "console"][1]
    config = load_config(environ=exports(serve))
    assert config.callback_secret.startswith("whsec_") and config.callback_allowed_hosts == ["127.0.0.1"]


def atoll_commands(page: str) -> list[list[str]]:
    """Return the ``atoll ...`` command lines of a page's console blocks, split as a shell would."""
    import shlex

    found = []
    for block in blocks(page):
        for command in block.commands() if block.language == "console" else []:
            words = shlex.split(command)
            while words and "=" in words[0]:  # VARIABLE=value before the command
                words.pop(0)
            if words[:1] == ["atoll"]:
                found.append(words)
    docker = [b for b in blocks(page) if b.language == "docker"]
    for block in docker:
        for line in block.text.splitlines():
            if line.startswith("CMD "):
                found.append(json.loads(line[4:]))
    return found


@pytest.mark.parametrize("page", ["deployment", "quickstart", "configuration"])
def test_every_atoll_command_on_a_page_parses(page):
    from atoll.cli import build_parser

    commands = atoll_commands(page)
    assert commands
    for command in commands:
        args = build_parser().parse_args(command[1:])  # argparse exits on an unknown option
        assert callable(args.func), command


def test_the_deployment_page_configures_by_the_environment():
    console = next(b for b in blocks("deployment") if "ATOLL_WORKER_BROKER" in b.text)
    config = load_config(environ=exports(console))
    assert config.worker_broker.startswith("amqp://") and config.auth_tokens == [
        "token-of-the-billing-service"]
    assert config.redacted()["worker_broker"] == "amqp://atoll:***@rabbitmq.internal:5672//"


def test_the_jobs_page_has_a_row_for_every_field_of_the_job_and_no_other():
    import dataclasses
    import re

    from atoll.service.jobs.model import Job

    text = (DOCS / "jobs.rst").read_text(encoding="utf-8")
    table = text.split("The job\n-------", 1)[1].split("\nStatuses\n", 1)[0]
    rows = re.findall(r"^   \* - ``(\w+)``$", table, flags=re.M)
    assert rows == [f.name for f in dataclasses.fields(Job)]


def test_the_callback_on_the_jobs_page_has_the_keys_the_service_posts():
    from atoll.service.jobs.model import Job, new_job_id

    job = Job(new_job_id(), "wordcount")
    job.succeed([["a", 1]])
    payload = next(b for b in blocks("jobs") if b.language == "json" and '"results_url"' in b.text)
    assert set(json.loads(payload.text)) == set(job.callback_payload(expose=True))


# -- drift: what the code can say or read must be on the pages ------------------------------------

ROOT = DOCS.parent


def documented_text() -> str:
    """Return the text of every docs page."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.rst")))


def error_names_in_code() -> set[str]:
    """Return every error name an HTTP answer of the service can carry, read from the code: the names
    given to ApiError, error_response and error_json, the table of the job system's domain errors,
    those the web server writes itself (``{"error": {"name": ...}}``), and Werkzeug's own errors."""
    import re

    from atoll.service.http.errors import _HTTP_NAMES, STATUSES

    pattern = re.compile(r'\b(?:ApiError|RequestError|error_response|error_json|_unavailable)\(\s*'
                         r'(?:\d{3},\s*)?"([A-Z]\w+)"|\{"error": \{"name": "([A-Z]\w+)"')
    found = set(_HTTP_NAMES.values()) | {name for _, name, _ in STATUSES.values()}
    for path in (ROOT / "atoll" / "service").rglob("*.py"):
        found.update(name for names in pattern.findall(path.read_text(encoding="utf-8"))
                     for name in names if name)
    return found


def test_the_error_table_lists_every_error_name_the_service_answers():
    import re

    text = (DOCS / "service.rst").read_text(encoding="utf-8")
    section = text.split("\nErrors\n------\n", 1)[1].split("\nWhat error answers reveal\n", 1)[0]
    documented = set(re.findall(r"``([A-Z]\w+)``", section))
    in_code = error_names_in_code()
    assert len(in_code) > 25, f"the scan of the code found too few names: {sorted(in_code)}"
    assert not in_code - documented, f"error names missing from service.rst: {sorted(in_code - documented)}"
    table = section.split(".. list-table::", 1)[1].split("\n\n", 2)[2].split("\nFlask and Werkzeug", 1)[0]
    named = set(re.findall(r"^     - (``[A-Z]\w+``.*)$", table, flags=re.M))
    listed = {name for row in named for name in re.findall(r"``([A-Z]\w+)``", row)}
    # examples of names that come from the failing code, not from atoll: they cannot be found above
    assert listed - in_code <= {"KeyError", "PipelineError"}, sorted(listed - in_code)


def variables_read() -> dict[str, str]:
    """Return the environment variables the code and the deployment files read, with where: ATOLL_*
    read by atoll/ (as os.environ or os.getenv), every variable of deploy/compose.yaml and
    deploy/gunicorn.conf.py, and what ./run takes with a default (``${NAME:-...}``)."""
    import re

    python_read = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]*)["']""")
    found: dict[str, str] = {}
    for path in sorted((ROOT / "atoll").rglob("*.py")):
        for name in python_read.findall(path.read_text(encoding="utf-8")):
            if name.startswith("ATOLL_"):
                found.setdefault(name, str(path.relative_to(ROOT)))
    for name in python_read.findall((ROOT / "deploy" / "gunicorn.conf.py").read_text(encoding="utf-8")):
        found.setdefault(name, "deploy/gunicorn.conf.py")
    for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "deploy" / "compose.yaml").read_text()):
        found.setdefault(name, "deploy/compose.yaml")
    for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*):[-?]", (ROOT / "run").read_text(encoding="utf-8")):
        if name != "HOME":
            found.setdefault(name, "run")
    return found


def test_every_variable_the_code_and_deploy_files_read_is_documented():
    from atoll.config import SCHEMA, env_name

    read = variables_read()
    assert {"ATOLL_APP", "WEB_MAX_REQUESTS", "ATOLL_HTTP_PORT", "ATOLL_VENV"} <= set(read), read
    text = documented_text()
    keys = {env_name(key) for key in SCHEMA}  # ATOLL_<KEY>: the configuration page's table
    missing = [f"{name} (read by {where})" for name, where in sorted(read.items())
               if name not in keys and f"``{name}``" not in text]
    assert not missing, "undocumented variables: " + ", ".join(missing)


def declared_extras() -> dict[str, list[str]]:
    """Return setup.py's extras, as setup() receives them."""
    import runpy
    from unittest import mock

    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return setup.call_args.kwargs["extras_require"]


def test_every_extra_is_documented_and_every_extra_named_exists():
    import re

    extras = declared_extras()
    text = (DOCS / "getting-started.rst").read_text(encoding="utf-8")
    table = text.split("\nExtras\n~~~~~~\n", 1)[1].split("\n.. _platforms:", 1)[0]
    rows = re.findall(r"^   \* - ``(\w+)``$", table, flags=re.M)
    assert sorted(rows) == sorted(extras), "the extras table of getting-started.rst and setup.py differ"
    # every extra that code, deploy files, ./run and the pages name exists
    named = re.compile(r"(?:atoll|\.|whl)\[([a-z][\w,]*)\]")
    sources = [*(ROOT / "atoll").rglob("*.py"), *(ROOT / "deploy").iterdir(), ROOT / "run",
               ROOT / "README.md", *DOCS.glob("*.rst")]
    unknown = {f"{name} ({path.relative_to(ROOT)})" for path in sources if path.is_file()
               for group in named.findall(path.read_text(encoding="utf-8"))
               for name in group.split(",") if name not in extras}
    assert not unknown, sorted(unknown)


def test_no_page_installs_atoll_from_the_package_index():
    # atoll is not published there: an install line naming it would fail for every reader
    import re

    from_index = re.compile(r"pip install (?:-\S+ )*['\"]?atoll(?:\[[\w,]*\])?['\"]?(?=[\s`]|$)", flags=re.M)
    for path in [*DOCS.glob("*.rst"), ROOT / "README.md", ROOT / "deploy" / "README.md"]:
        lines = from_index.findall(path.read_text(encoding="utf-8"))
        assert not lines, f"{path.name}: {lines}"


def test_every_wheel_name_on_the_pages_is_this_version():
    # the version is written once in code; the pages name its wheel, so a new version must rename them
    import re

    import atoll

    for path in [*DOCS.glob("*.rst"), ROOT / "README.md", ROOT / "deploy" / "README.md"]:
        for version in re.findall(r"atoll-(\d[\w.]*?)-py3-none-any\.whl", path.read_text(encoding="utf-8")):
            assert version == atoll.__version__, f"{path.name} names the wheel of atoll {version}"
