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
