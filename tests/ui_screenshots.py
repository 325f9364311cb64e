"""Take the dashboard screenshots shown in docs/operating.rst: ``python -m tests.ui_screenshots`` from the
repository root (needs Debian's chromium and playwright, like tests/test_ui.py)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

from tests.test_ui import CHROMIUM_ARGS, serve

STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"
COMMENTS = ('[{"user": "ada", "text": "Short and sweet. Works well."}, '
            '{"user": "bob", "text": "The pipeline ran well, then it ran again."}]')
BAD_COMMENTS = '[{"user": "ada", "text": "Fine."}, {"text": "who wrote this?"}]'


def _submit(url: str, pipeline: str, data: str, **kwargs) -> str:
    """Submit a job through the API, as a program would; return its id."""
    answer = requests.post(f"{url}/pipelines/{pipeline}", timeout=30,
                           json={"data": json.loads(data), "kwargs": kwargs, "async": True})
    answer.raise_for_status()
    return answer.json()["job_id"]


def main() -> None:
    """Serve the showcase service, submit a few jobs through the API, drive the dashboard and save two
    PNGs under docs/_static/: a pipeline tried (the job list beside it) and a failed job's page."""
    STATIC.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder), target="ui_service:showcase") as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.set_default_timeout(30_000)
        _submit(url, "wordcount", COMMENTS)
        _submit(url, "top_words", COMMENTS, n=3, min_length=4)
        _submit(url, "user_stats", COMMENTS)
        failed = _submit(url, "moderate", BAD_COMMENTS)
        page.goto(f"{url}/ui#/pipelines/user_stats")
        page.locator("#try-data").wait_for()
        page.fill("#try-data", COMMENTS)
        page.check("#try-async")
        page.click("#try-run")
        page.locator("#try-job .status-succeeded").wait_for()
        page.goto(f"{url}/ui#/pipelines/comment_report")
        page.locator("#try-data").wait_for()
        page.fill("#try-data", COMMENTS)
        page.fill("#kwarg-n", "3")
        page.uncheck("#try-async")
        page.click("#try-run")
        page.locator("#try-output pre.results").wait_for()
        page.locator(f'#job-list a[href="#/jobs/{failed}"] .status-failed').wait_for()
        page.screenshot(path=str(STATIC / "dashboard-pipeline.png"), full_page=True)
        page.locator(f'#job-list a[href="#/jobs/{failed}"]').click()
        page.locator(".view .error-box pre.traceback").wait_for()
        page.locator("#job-output ol.logs li").first.wait_for()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(STATIC / "dashboard-job.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
