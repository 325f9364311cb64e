"""The dashboard at ``/ui`` in a real browser: headless Chromium (Debian's ``chromium``) driven through
Playwright's Python API against ``atoll serve`` on the embedded default (the web process starts its own
worker), so async jobs really run. Without chromium or playwright the tests skip with the reason, or
fail when ``ATOLL_REQUIRE`` names chromium."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.requirements import unavailable
from tests.support import eventually, job_config, workers_ready
from tests.support import serve as serve_target

pytestmark = pytest.mark.slow

TOKEN = "ui-test-token-7d1f"
#: how the tests (and tests/ui_screenshots.py) launch Debian's chromium
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: generous: the browser and the service share two busy cores
WAIT_MS = 30_000


@contextlib.contextmanager
def serve(folder: Path, ready: str = "worker", target: str = "ui_service:service",
          **overrides) -> Iterator[str]:
    """Run ``atoll serve target`` with a job config of ``overrides`` on a free port; yield its URL once
    ``ready`` (``worker``: /health reports a live worker; ``live``: /livez answers)."""
    path, config = job_config(folder, **overrides)
    assert config.worker_broker is None and config.embedded_worker
    check = (lambda url: requests.get(f"{url}/livez", timeout=2).ok) if ready == "live" else workers_ready
    with serve_target(target, path, workers=1, threads=None, ready=check, log=folder / "serve.log",
                      timeout=90) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium, or a skip (a failure under ATOLL_REQUIRE=chromium) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("chromium", "the playwright package is not installed (pip install 'atoll[test]')")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        unavailable("chromium", "no chromium on PATH (`./run test` installs Debian's chromium as root; "
                                "apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def service_url(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("ui")) as url:
        yield url


@pytest.fixture
def page(browser, service_url):
    """A fresh page (its own session storage) on the dashboard, recording alerts and page errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.dialogs = []
    page.errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{service_url}/ui")
    yield page
    context.close()


def _open_pipeline(page, name: str) -> None:
    page.locator("#pipeline-list a", has_text=name).first.click()
    page.locator("h1", has_text=name).wait_for()


def _run(page, data: str, kwargs: dict | None = None, run_async: bool = False) -> None:
    page.fill("#try-data", data)
    for name, value in (kwargs or {}).items():
        page.fill(f"#kwarg-{name}", value)
    page.set_checked("#try-async", run_async)
    page.click("#try-run")


def test_the_page_lists_the_registered_pipelines(page, service_url):
    listed = requests.get(f"{service_url}/pipelines", timeout=10).json()["pipelines"]
    items = page.locator("#pipeline-list li a .mono")
    items.first.wait_for()
    assert items.all_text_contents() == [p["name"] for p in listed]
    assert set(items.all_text_contents()) == {"double", "scale", "forked", "explode", "shout", "chatty",
                                              "slow"}
    assert page.locator("#health-pill").text_content() in ("ready", "not ready", "checking…")
    page.locator("#health-pill", has_text="ready").wait_for()
    assert page.errors == []


def test_a_forked_pipeline_is_drawn_with_its_branches_side_by_side(page):
    _open_pipeline(page, "forked")
    graph = page.locator(".view .graph")
    fork = graph.locator(".branches").first
    branches = fork.locator(":scope > .branch")
    assert branches.count() == 3
    boxes = [branches.nth(i).bounding_box() for i in range(3)]
    # side by side: the same top, left to right
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and abs(boxes[1]["y"] - boxes[2]["y"]) < 2
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] <= boxes[2]["x"]
    assert branches.nth(0).locator(".fn").all_text_contents() == ["inc", "times"]
    assert branches.nth(1).locator(".op").all_text_contents() == ["filter"]
    assert branches.nth(2).locator(".op").all_text_contents() == ["identity"]
    # the runtime kwarg is listed on the stage that needs it, and for the whole pipeline
    assert branches.nth(0).locator(".chip").all_text_contents() == ["kwarg factor"]
    assert "factor" in page.locator(".view dl.facts").text_content()
    assert graph.locator(".branches").count() == 2  # fork and splitMap
    top = graph.locator(":scope > .seq > .node > .op, :scope > .seq > .seq > .node > .op")
    assert top.all_text_contents() == ["map", "fork", "splitMap"]


def test_trying_a_pipeline_synchronously_shows_its_results(page):
    _open_pipeline(page, "forked")
    _run(page, "[1, -2, 3]", {"factor": "10"})
    results = page.locator("#try-output pre.results")
    results.wait_for()
    assert json.loads(results.text_content()) == [["20", "30", "40"], [1, 3], [1.0, 2.0, 3.0]]


def test_a_sync_error_is_shown_with_its_stage_and_item(page):
    _open_pipeline(page, "explode")
    _run(page, "[1, 2, 5]")
    box = page.locator("#try-output .error-box")
    box.wait_for()
    assert "KeyError" in box.locator(".name").text_content()
    assert "no entry 3" in box.locator(".message").text_content()
    assert box.locator(".stage").text_content().startswith("1 map(_explode_on_three)")
    assert json.loads(box.locator(".item").text_content()) == 3  # 2 + 1, the input of stage 1


def test_invalid_json_is_reported_without_calling_the_service(page):
    _open_pipeline(page, "double")
    _run(page, "[1, 2,")
    assert "InvalidJSON" in page.locator("#try-output .error-box .name").text_content()


def test_an_async_job_is_followed_until_it_succeeds(page):
    _open_pipeline(page, "scale")
    _run(page, "[1, 2, 3]", {"factor": "7"}, run_async=True)
    page.locator("#try-job .status-succeeded").wait_for()
    assert json.loads(page.locator("#try-output pre.results").text_content()) == [7, 14, 21]
    # it is the newest in the job list, finished, with a duration, and its page shows the results
    entry = page.locator("#job-list li a").first
    assert entry.locator(".status").text_content() == "succeeded"
    assert entry.locator(".meta span").last.text_content().endswith("s")
    entry.click()
    page.locator("h1", has_text="Job").wait_for()
    assert json.loads(page.locator(".view pre.results").text_content()) == [7, 14, 21]
    assert page.locator(".view .status").first.text_content() == "succeeded"


def test_a_failed_job_shows_its_stage_item_and_traceback(page):
    _open_pipeline(page, "explode")
    _run(page, "[1, 2, 5]", run_async=True)
    page.locator("#try-job .status-failed").wait_for()
    page.locator("#try-job a").click()
    box = page.locator(".view .error-box")
    box.wait_for()
    assert "KeyError" in box.locator(".name").text_content()
    assert box.locator(".stage").text_content().startswith("1 map(_explode_on_three)")
    assert json.loads(box.locator(".item").text_content()) == 3  # 2 + 1, the input of stage 1
    traceback = box.locator("pre.traceback").text_content()
    assert "Traceback" in traceback and "_explode_on_three" in traceback
    # a reload keeps the browser's jobs (session storage) and still shows the error
    page.reload()
    page.locator(".view .error-box pre.traceback").wait_for()


def test_markup_in_names_and_errors_is_shown_as_text(page):
    from tests.ui_service import MARKUP

    _open_pipeline(page, "shout")
    assert page.locator(".view .graph .fn").first.text_content() == "shout" + MARKUP
    _run(page, '["hi"]')
    message = page.locator("#try-output .error-box .message")
    message.wait_for()
    assert MARKUP in message.text_content()
    _run(page, '["hi"]', run_async=True)
    page.locator("#try-job .status-failed").wait_for()
    assert MARKUP in page.locator("#try-output .error-box .message").text_content()
    # nothing ran and nothing was parsed: one script element (the page's own), no image
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 1
    assert page.locator("img").count() == 0
    assert page.dialogs == [] and page.errors == []


def _submit(service_url: str, pipeline: str, data, **kwargs) -> str:
    """Submit a job through the API (not the browser); return its id."""
    answer = requests.post(f"{service_url}/pipelines/{pipeline}", json={"data": data, "kwargs": kwargs,
                                                                        "async": True}, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def _finished(service_url: str, job_id: str) -> dict:
    """Wait until the job has finished; return its record."""
    def finished() -> dict | None:
        job = requests.get(f"{service_url}/jobs/{job_id}", timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return eventually(finished, WAIT_MS / 1000, 0.2, what=f"job {job_id} to finish")


def _listed(page) -> list[str]:
    """Return the ids of the jobs in the list, top to bottom."""
    return page.locator("#job-list li a").evaluate_all(
        "links => links.map(a => decodeURIComponent(a.getAttribute('href').split('/').pop()))")


def _entry(page, job_id: str):
    return page.locator(f'#job-list a[href="#/jobs/{job_id}"]')


def test_jobs_submitted_through_the_api_are_listed_newest_first_and_followed(page, service_url):
    first = _submit(service_url, "double", [1, 2])
    second = _submit(service_url, "explode", [1, 2, 5])
    # the list refreshes by itself: both appear, and reach their final status, without a reload
    _entry(page, first).locator(".status-succeeded").wait_for()
    _entry(page, second).locator(".status-failed").wait_for()
    listed = _listed(page)
    assert listed.index(second) < listed.index(first)
    api_order = [j["job_id"] for j in requests.get(f"{service_url}/jobs", timeout=10).json()["jobs"]]
    assert [i for i in listed if i in (first, second)] == [i for i in api_order if i in (first, second)]
    entry = _entry(page, first)
    assert entry.locator(".mono").text_content() == "double"
    assert entry.locator(".duration").text_content().endswith("s")
    # a job's page opens from the list
    _entry(page, second).click()
    page.locator(".view .error-box .stage").wait_for()
    assert "KeyError" in page.locator(".view .error-box .name").text_content()
    assert page.errors == []


def test_the_status_and_pipeline_filters_ask_the_service(page, service_url):
    failed = _submit(service_url, "explode", [1, 2, 5])
    succeeded = _submit(service_url, "double", [3])
    _finished(service_url, failed), _finished(service_url, succeeded)
    _entry(page, succeeded).wait_for()
    page.select_option("#job-status", "failed")
    _entry(page, failed).wait_for()
    assert _entry(page, succeeded).count() == 0
    statuses = page.locator("#job-list .status").all_text_contents()
    assert statuses and set(statuses) == {"failed"}
    page.select_option("#job-status", "")
    page.select_option("#job-pipeline", "double")
    _entry(page, succeeded).wait_for()
    assert _entry(page, failed).count() == 0
    assert set(page.locator("#job-list li a .mono").all_text_contents()) == {"double"}
    # a filter nothing matches says so
    page.select_option("#job-status", "cancelled")
    page.locator("#job-list li", has_text="no job matches").wait_for()
    assert page.errors == []


def test_more_follows_the_next_cursor(page, service_url):
    ids = [_submit(service_url, "scale", [i], factor=2) for i in range(55)]
    page.select_option("#job-pipeline", "scale")
    _entry(page, ids[-1]).wait_for()
    assert len(_listed(page)) == 50 and ids[0] not in _listed(page)
    page.click("#job-more")
    _entry(page, ids[0]).wait_for()
    listed = _listed(page)
    assert len(listed) == len(set(listed)) >= 55
    assert [i for i in listed if i in ids] == ids[::-1]  # newest first
    page.locator("#job-more").wait_for(state="hidden")  # no page after the last
    # the next refreshes keep every job shown
    page.wait_for_function("() => document.querySelectorAll('#job-list li a').length >= 55")
    assert page.errors == []


def _open_job(page, service_url: str, job_id: str) -> None:
    page.goto(f"{service_url}/ui#/jobs/{job_id}")
    page.locator(".view .job-status .status").wait_for()


def test_a_running_job_can_be_cancelled_from_its_page(page, service_url):
    job_id = _submit(service_url, "slow", list(range(60)), seconds=1)
    try:
        _open_job(page, service_url, job_id)
        page.locator(".view .job-status .status-running").wait_for()
        assert page.locator(".view dd", has_text="not started").count() == 0  # it shows a running time
        page.click("#job-cancel")
        page.locator(".view .job-status .status-cancelled").wait_for()
        assert page.locator("#job-cancel").count() == 0
        assert requests.get(f"{service_url}/jobs/{job_id}", timeout=10).json()["status"] == "cancelled"
        _entry(page, job_id).locator(".status-cancelled").wait_for()
    finally:
        requests.delete(f"{service_url}/jobs/{job_id}", timeout=10)
    assert page.errors == []


def test_cancelling_a_job_that_finished_meanwhile_shows_the_409(page, service_url):
    job_id = _submit(service_url, "slow", list(range(60)), seconds=1)
    try:
        _open_job(page, service_url, job_id)
        page.locator(".view .job-status .status-running").wait_for()
        # a hidden page stops polling: the button stays while the job ends elsewhere
        page.evaluate("Object.defineProperty(document, 'visibilityState', "
                      "{value: 'hidden', configurable: true})")
        page.wait_for_function("() => !document.body.hasAttribute('aria-busy')")  # no poll under way
        assert requests.delete(f"{service_url}/jobs/{job_id}", timeout=10).status_code == 200
        page.click("#job-cancel")
        refused = page.locator("#cancel-error")
        refused.wait_for()
        assert refused.locator(".name").text_content() == "409 JobFinished"
        assert "has already been cancelled" in refused.locator(".message").text_content()
        page.locator(".view .job-status .status-cancelled").wait_for()  # read again after the 409
        assert page.locator("#job-cancel").count() == 0
    finally:
        requests.delete(f"{service_url}/jobs/{job_id}", timeout=10)
    assert page.errors == []


def test_a_failed_job_is_rerun_from_its_page(page, service_url):
    job_id = _submit(service_url, "explode", [1, 2])
    _open_job(page, service_url, job_id)
    page.locator(".view .job-status .status-failed").wait_for(timeout=30_000)
    page.click("#job-rerun")
    page.wait_for_function(f"() => location.hash.startsWith('#/jobs/') && "
                           f"!location.hash.endsWith('{job_id}')")
    new_id = page.evaluate("decodeURIComponent(location.hash.slice('#/jobs/'.length))")
    record = requests.get(f"{service_url}/jobs/{new_id}", timeout=10).json()
    assert record["rerun_of"] == job_id and record["pipeline"] == "explode"
    page.locator(".view .job-status .status-failed").wait_for(timeout=30_000)  # the same data fails again
    assert page.locator(".view dd a", has_text=job_id).count() == 1  # links the job it re-ran
    assert page.locator("#job-cancel").count() == 0
    assert page.errors == []


def test_a_job_that_dropped_elements_shows_the_count_and_its_dead_letters(page, service_url):
    answer = requests.post(f"{service_url}/pipelines/explode", json={
        "data": [1, 2, 5, 2], "async": True, "on_error": "collect"}, timeout=30)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    _open_job(page, service_url, job_id)
    page.locator(".view .job-status .status-succeeded").wait_for(timeout=30_000)
    dropped = page.locator(".view dd.element-errors")
    dropped.wait_for()
    assert dropped.text_content().startswith("2") and "stage 1: 2" in dropped.text_content()
    letters = page.locator("#job-dead-letters li.dead-letter")
    assert letters.count() == 2
    first = letters.nth(0).text_content()
    assert "stage 1 map(_explode_on_three)" in first and "KeyError" in first and "no entry 3" in first
    assert first.endswith(" on 3")
    assert page.errors == []


def test_a_cancelled_job_is_rerun_from_its_page_and_its_rerun_cancelled(page, service_url):
    job_id = _submit(service_url, "slow", list(range(60)), seconds=1)
    try:
        _open_job(page, service_url, job_id)
        assert page.locator("#job-rerun").count() == 0  # not before it finished
        page.click("#job-cancel")
        page.locator(".view .job-status .status-cancelled").wait_for()
        page.click("#job-rerun")
        page.wait_for_function(f"() => !location.hash.endsWith('{job_id}')")
        new_id = page.evaluate("decodeURIComponent(location.hash.slice('#/jobs/'.length))")
        page.locator("#job-cancel").wait_for()
        page.click("#job-cancel")
        page.locator(".view .job-status .status-cancelled").wait_for()
        record = requests.get(f"{service_url}/jobs/{new_id}", timeout=10).json()
        assert record["status"] == "cancelled" and record["rerun_of"] == job_id
    finally:
        requests.delete(f"{service_url}/jobs/{job_id}", timeout=10)
    assert page.errors == []


def test_a_running_job_shows_its_progress(page, service_url):
    job_id = _submit(service_url, "slow", list(range(40)), seconds=1)
    try:
        _open_job(page, service_url, job_id)
        page.locator(".view .job-status .status-running").wait_for()
        bar = page.locator(".view progress.bar")
        bar.wait_for(timeout=15_000)
        total = int(page.locator(".view .progress-text").text_content().split("/")[1])
        assert total >= 2 and bar.evaluate("b => b.max") == total
        # the bar moves while the job runs, on its page and in the list
        page.wait_for_function("() => (document.querySelector('.view progress.bar') || {}).value > 0")
        done, shown_total = map(int, page.locator(".view .progress-text").text_content().split("/"))
        assert 0 < done < total == shown_total
        _entry(page, job_id).locator("progress.bar").wait_for()
    finally:
        requests.delete(f"{service_url}/jobs/{job_id}", timeout=10)


def test_a_job_page_shows_what_the_pipeline_printed_as_text(page, service_url):
    from tests.ui_service import MARKUP

    job_id = _submit(service_url, "chatty", ["hi"])
    _open_job(page, service_url, job_id)
    page.locator(".view .job-status .status-succeeded").wait_for()
    lines = page.locator("#job-output ol.logs li")
    lines.first.wait_for()
    shown = [(line.locator(".log-tag").text_content(), line.locator(".log-message").text_content())
             for line in lines.all()]
    assert ("stdout", "seen hi") in shown
    assert ("stderr", "careful with hi") in shown
    assert ("WARNING", "ui.chatty: logged hi") in shown
    assert ("stdout", MARKUP) in shown  # the markup is text
    times = lines.locator(".log-time").all_text_contents()
    assert all(len(t) == 12 and t[2] == ":" for t in times)  # HH:MM:SS.mmm
    assert page.locator("#job-output ol.logs").evaluate("e => getComputedStyle(e).fontFamily").startswith(
        "ui-monospace")
    assert json.loads(page.locator(".view pre.results").text_content()) == ["HI"]
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 1 and page.locator("img").count() == 0
    assert page.dialogs == [] and page.errors == []


def test_an_unknown_job_page_says_so(page, service_url):
    page.goto(f"{service_url}/ui#/jobs/00000000-0000-7000-8000-000000000000")
    page.locator(".view .error-box .name", has_text="UnknownJob").wait_for()
    assert "never submitted here" in page.locator(".view .error-box .message").text_content()


def test_a_job_page_follows_its_callback_delivery(page, service_url, callback_receiver):
    def submit(path: str) -> str:
        answer = requests.post(f"{service_url}/pipelines/double", timeout=30,
                               json={"data": [1], "callback": f"{callback_receiver.url}/{path}"})
        assert answer.status_code == 202, answer.text
        return answer.json()["job_id"]

    callback_receiver.fail_with(500)
    refused = submit("refused")
    _open_job(page, service_url, refused)
    callback = page.locator(".view dd.callback")
    # retried until the last retry, then abandoned, with the attempts and the last error
    callback.locator(".status-abandoned").wait_for()
    attempts = requests.get(f"{service_url}/jobs/{refused}", timeout=10).json()["callback"]["attempts"]
    assert attempts > 1 and f"{attempts} attempts" in callback.text_content()
    assert "500" in callback.locator(".muted", has_text="last error").text_content()
    assert f"{callback_receiver.url}/refused" in callback.text_content()
    callback_receiver.fail_with(200)
    delivered = submit("delivered")
    _open_job(page, service_url, delivered)
    page.locator(".view dd.callback .status-delivered").wait_for()
    assert "1 attempt " in page.locator(".view dd.callback").text_content()
    assert page.errors == []


def test_results_kept_aside_are_read_from_results_url(browser, tmp_path):
    with serve(tmp_path, inline_results_max_bytes=64) as url:
        job_id = _submit(url, "double", list(range(40)))
        record = _finished(url, job_id)
        assert record["results"] is None and record["results_url"].endswith(f"/jobs/{job_id}/results")
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(f"{url}/ui#/jobs/{job_id}")
            results = page.locator(".view pre.results")
            results.wait_for()
            assert json.loads(results.text_content()) == [2 * i for i in range(40)]
            label = page.locator(".view .small.muted", has_text="results").first
            assert label.text_content() == "results (from results_url)"
        finally:
            context.close()


@pytest.fixture(scope="module")
def token_service_url(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("ui-auth"), ready="live", auth_tokens=[TOKEN]) as url:
        yield url


def test_a_token_is_asked_for_kept_and_sent(browser, token_service_url):
    assert requests.get(f"{token_service_url}/ui", timeout=10).status_code == 200  # the page is open
    assert requests.get(f"{token_service_url}/pipelines", timeout=10).status_code == 401
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    sent = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization")) if r.url.endswith(
        "/pipelines") else None)
    try:
        page.goto(f"{token_service_url}/ui")
        dialog = page.locator("#token-dialog")
        dialog.wait_for(state="visible")
        assert "Bearer" in page.locator("#token-reason").text_content()
        page.fill("#token-input", "wrong")
        page.click("#token-ok")
        page.locator("#token-reason", has_text="not valid").wait_for()  # asked again
        page.fill("#token-input", TOKEN)
        page.click("#token-ok")
        page.locator("#pipeline-list a", has_text="forked").wait_for()
        assert sent == [None, "Bearer wrong", f"Bearer {TOKEN}"]
        # the job list is asked for with the token too
        page.locator("#job-list li", has_text="none yet").wait_for()
        assert page.evaluate("sessionStorage.getItem('atoll.token')") == TOKEN
        # a reload uses the kept token without asking again
        page.reload()
        page.locator("#pipeline-list a", has_text="forked").wait_for()
        assert not dialog.is_visible()
        assert sent[-1] == f"Bearer {TOKEN}"
    finally:
        context.close()


def test_a_call_refused_for_want_of_the_token_entered_meanwhile_is_sent_again_with_it(browser,
                                                                                      token_service_url):
    """The page's first calls go out at once; one refused after a token was entered (it was sent
    before) is sent again with that token, not met with the dialog again."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    held = []

    def hold_the_first_job_list(route):
        if not held and route.request.headers.get("authorization") is None:
            held.append(route)  # answered below, once a token has been entered
        else:
            route.continue_()

    page.route("**/jobs?*", hold_the_first_job_list)
    try:
        page.goto(f"{token_service_url}/ui")
        dialog = page.locator("#token-dialog")
        dialog.wait_for(state="visible")
        page.fill("#token-input", TOKEN)
        page.click("#token-ok")
        page.locator("#pipeline-list a", has_text="forked").wait_for()
        assert held, "the job list was not asked for"
        held[0].continue_()  # the service refuses it: it went out without a token
        page.locator("#job-list li", has_text="none yet").wait_for()
        assert not dialog.is_visible()
    finally:
        context.close()


def test_the_page_and_its_files_are_open_while_the_api_needs_the_token():
    # the Flask app in-process: what is open is decided by auth's OPEN_ENDPOINTS, no browser needed
    from atoll import Atoll, Pipeline
    from atoll.config import load_config

    service = Atoll(load_config(auth_tokens=[TOKEN]))
    service.register_pipeline("/double", Pipeline().map(abs))
    client = service.create_app().test_client()
    page = client.get("/ui")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    # the page's ES modules, served as they are: a module script needs a JavaScript content type
    from atoll.service.http.ui import FILES

    modules = sorted(path.name for path in FILES.glob("*.js"))
    assert "main.js" in modules and 'src="/ui/static/main.js"' in page.get_data(as_text=True)
    for name, mimetype in [*((m, "text/javascript") for m in modules), ("app.css", "text/css")]:
        answer = client.get(f"/ui/static/{name}")
        assert (answer.status_code, answer.mimetype) == (200, mimetype)
    assert client.get("/pipelines").status_code == 401
    listed = client.get("/pipelines", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert listed["pipelines"][0]["graph"][0]["function"] == "abs"


def test_the_datasets_list_shows_size_records_expiry_and_links_the_jobs(page, service_url):
    uploaded = requests.post(f"{service_url}/datasets", data=b"1\n2\n3\n", timeout=10,
                             headers={"Content-Type": "application/x-ndjson"}).json()
    job_id = requests.post(f"{service_url}/pipelines/double", timeout=10, json={
        "data": {"dataset": uploaded["dataset_id"]}, "async": True, "results_to": "dataset"}).json()["job_id"]

    def written() -> str | None:
        return requests.get(f"{service_url}/jobs/{job_id}", timeout=10).json()["results_dataset"]

    results_id = eventually(written, 60, what="the job's results dataset")
    source = page.locator(f"#dataset-list li[data-id='{uploaded['dataset_id']}']")
    source.wait_for()
    assert "3 records" in source.inner_text() and "6 B" in source.inner_text()
    assert "expires" in source.inner_text()
    reader = source.locator("a.job-link")
    assert reader.get_attribute("href") == f"#/jobs/{job_id}"
    results = page.locator(f"#dataset-list li[data-id='{results_id}']")
    results.wait_for()
    assert results.locator(".dataset-writer a").get_attribute("href") == f"#/jobs/{job_id}"
    reader.click()
    page.wait_for_function(f"location.hash === '#/jobs/{job_id}'")
    assert page.errors == []


CALLER_TOKENS = {"ann": "ui-ann-token-51c0", "bob": "ui-bob-token-8e27", "root": "ui-root-token-0a9d"}


def _bearer(name: str) -> dict:
    return {"Authorization": f"Bearer {CALLER_TOKENS[name]}"}


@pytest.fixture(scope="module")
def callers_service_url(tmp_path_factory):
    import hashlib

    def entry(name: str, scopes: list[str]) -> dict:
        return {"tokens": [hashlib.sha256(CALLER_TOKENS[name].encode()).hexdigest()], "scopes": scopes}

    callers = {"ann": entry("ann", ["run", "read"]), "bob": entry("bob", ["run", "read"]),
               "root": entry("root", ["admin"])}
    with serve(tmp_path_factory.mktemp("ui-callers"), ready="live", callers=callers) as url:
        yield url


def test_the_dashboard_shows_what_the_entered_token_may_see(browser, callers_service_url):
    url = callers_service_url
    ids = {}
    for name in ("ann", "bob"):
        answer = requests.post(f"{url}/pipelines/double", json={"data": [1], "async": True},
                               headers=_bearer(name), timeout=30)
        assert answer.status_code == 202, answer.text
        ids[name] = answer.json()["job_id"]
    for name, expected in (("ann", {ids["ann"]}), ("root", set(ids.values()))):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(f"{url}/ui")
            page.locator("#token-dialog").wait_for(state="visible")
            page.fill("#token-input", CALLER_TOKENS[name])
            page.click("#token-ok")
            for job_id in expected:
                _entry(page, job_id).wait_for()
            assert set(_listed(page)) == expected, name
            if name == "ann":  # another caller's job is a 404 on its page, as over the API
                page.goto(f"{url}/ui#/jobs/{ids['bob']}")
                page.locator(".view", has_text="UnknownJob").wait_for()
        finally:
            context.close()
