"""Take the dashboard screenshots shown in docs/operating.rst: ``python -m tests.ui_screenshots`` from the
repository root (needs Debian's chromium and playwright, like tests/test_ui.py)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.test_ui import CHROMIUM_ARGS, serve

STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"
COMMENTS = ('[{"user": "ada", "text": "Short and sweet. Works well."}, '
            '{"user": "bob", "text": "The pipeline ran well, then it ran again."}]')


def main() -> None:
    """Serve the showcase service, drive the dashboard and save two PNGs under docs/_static/."""
    STATIC.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder), target="ui_service:showcase") as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/ui#/pipelines/user_stats")
        page.locator("#try-data").wait_for()
        page.fill("#try-data", COMMENTS)
        page.check("#try-async")
        page.click("#try-run")
        page.locator("#try-job .status-succeeded").wait_for()
        page.fill("#try-data", '[{"user": "ada", "text": "Fine."}, {"text": "who wrote this?"}]')
        page.click("#try-run")
        page.locator("#try-job .status-failed").wait_for()
        page.goto(f"{url}/ui#/pipelines/comment_report")
        page.locator("#try-data").wait_for()
        page.fill("#try-data", COMMENTS)
        page.fill("#kwarg-n", "3")
        page.uncheck("#try-async")
        page.click("#try-run")
        page.locator("#try-output pre.results").wait_for()
        page.screenshot(path=str(STATIC / "dashboard-pipeline.png"), full_page=True)
        page.locator("#job-list a").first.click()
        page.locator(".view .error-box pre.traceback").wait_for()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(STATIC / "dashboard-job.png"))
        browser.close()


if __name__ == "__main__":
    main()
