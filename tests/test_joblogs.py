"""Job logs: what a pipeline prints and logs, captured as bounded JSON lines (atoll.capture)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import threading
import tracemalloc
from contextlib import redirect_stdout

import pytest

from atoll import LocalExecutor, Pipeline
from atoll.capture import MIN_MAX_BYTES, JobLog, capture
from atoll.config import load_config

#: job_log_max_bytes when the configuration does not set it
DEFAULT_MAX_BYTES = load_config().job_log_max_bytes

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def entries(log: JobLog) -> list[dict]:
    text = log.text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def messages(log: JobLog, stream: str | None = None) -> list[str]:
    return [e["message"] for e in entries(log) if stream is None or e["stream"] == stream]


def test_print_stderr_and_logging_are_entries_of_the_documented_shape(capsys):
    with capture(DEFAULT_MAX_BYTES) as log:
        print("hello", 42)
        print("to stderr", file=sys.stderr)
        logging.getLogger("etl.load").warning("loaded %d rows from %s", 3, "a.csv")
    got = entries(log)
    assert [(e["stream"], e["message"]) for e in got] == [
        ("stdout", "hello 42"), ("stderr", "to stderr"), ("log", "loaded 3 rows from a.csv")]
    assert all(TIME.match(e["time"]) for e in got)
    assert list(got[0]) == ["time", "stream", "message"]
    assert got[2] == {"time": got[2]["time"], "stream": "log", "level": "WARNING",
                      "logger": "etl.load", "message": "loaded 3 rows from a.csv"}
    assert not log.empty


def test_output_still_reaches_the_streams_it_went_to(capsys):
    with capture(DEFAULT_MAX_BYTES):
        print("seen by the worker's log")
        sys.stderr.write("and this\n")
    assert capsys.readouterr() == ("seen by the worker's log\n", "and this\n")


def test_an_exception_logged_carries_its_traceback(capsys):
    with capture(DEFAULT_MAX_BYTES) as log:
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("etl").exception("lookup failed")
    [message] = messages(log, "log")
    assert message.startswith("lookup failed\nTraceback (most recent call last):")
    assert message.endswith("KeyError: 'missing'")


def test_info_records_are_captured_and_other_handlers_get_what_they_got_before(capsys):
    root = logging.getLogger()
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    root.addHandler(handler)
    before = root.level
    root.setLevel(logging.WARNING)
    try:
        with capture(DEFAULT_MAX_BYTES) as log:
            logging.getLogger("etl").info("an info")
            logging.getLogger("etl").debug("a debug")
            logging.getLogger("etl").warning("a warning")
        assert root.level == logging.WARNING
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
    assert messages(log) == ["an info", "a warning"]
    assert seen.getvalue() == "a warning\n"
    assert not handler.filters


def test_loggers_with_levels_of_their_own_keep_them(capsys):
    quiet, chatty = logging.getLogger("app.quiet"), logging.getLogger("app.chatty")
    quiet.setLevel(logging.ERROR)
    chatty.setLevel(logging.DEBUG)
    try:
        with capture(DEFAULT_MAX_BYTES) as log:
            quiet.warning("not made")
            quiet.error("quiet error")
            logging.getLogger("app.quiet.child").warning("not made either")
            chatty.debug("below the capture's level")
            chatty.info("chatty info")
        with capture(DEFAULT_MAX_BYTES, level=logging.DEBUG) as debug_log:
            chatty.debug("a debug record")
    finally:
        quiet.setLevel(logging.NOTSET)
        chatty.setLevel(logging.NOTSET)
    assert [(e["logger"], e["level"], e["message"]) for e in entries(log)] == [
        ("app.quiet", "ERROR", "quiet error"), ("app.chatty", "INFO", "chatty info")]
    assert messages(debug_log) == ["a debug record"]


def test_celery_kombu_and_amqp_records_are_left_out(capsys):
    with capture(DEFAULT_MAX_BYTES) as log:
        for name in ("celery.worker", "celery.redirected", "kombu", "amqp.connection", "celeryish.app"):
            logging.getLogger(name).warning("from %s", name)
    assert messages(log) == ["from celeryish.app"]


def test_with_no_handler_a_warning_still_reaches_stderr_once(capsys):
    root = logging.getLogger()
    others = list(root.handlers)
    for handler in others:  # pytest's own
        root.removeHandler(handler)
    try:
        with capture(DEFAULT_MAX_BYTES) as log:
            logging.getLogger("etl").warning("careful")
    finally:
        for handler in others:
            root.addHandler(handler)
    assert capsys.readouterr().err == "careful\n"
    assert [(e["stream"], e["message"]) for e in entries(log)] == [("log", "careful")]


def test_a_line_is_an_entry_when_its_newline_arrives_and_a_partial_last_line_at_the_end(capsys):
    with capture(DEFAULT_MAX_BYTES) as log:
        sys.stdout.write("one, ")
        sys.stdout.write("still one\ntwo\n\nfour")
        print(" and more", end="")
        sys.stderr.write("no newline")
        assert messages(log) == ["one, still one", "two", ""]
    assert messages(log, "stdout") == ["one, still one", "two", "", "four and more"]
    assert messages(log, "stderr") == ["no newline"]


def test_unicode_is_kept_and_the_bound_counts_utf8_bytes(capsys):
    with capture(DEFAULT_MAX_BYTES) as log:
        print("naïve café ☕ 𝄞")
        logging.getLogger("ünïcode").warning("日本語 %s", "✓")
    assert messages(log) == ["naïve café ☕ 𝄞", "日本語 ✓"]
    assert "naïve café ☕ 𝄞" in log.text()  # not escaped
    with capture(MIN_MAX_BYTES) as small:
        for _ in range(200):
            print("日本語" * 10)
    assert len(small.text().encode("utf-8")) <= MIN_MAX_BYTES
    assert messages(small)[-1] == "日本語" * 10


def test_the_tail_is_kept_and_the_first_line_says_what_was_dropped(capsys):
    with capture(4096) as log:
        for i in range(1000):
            print(f"line {i}")
    text = log.text()
    assert len(text.encode("utf-8")) <= 4096
    got = entries(log)
    header, kept = got[0], got[1:]
    assert header["stream"] == "atoll" and TIME.match(header["time"])
    assert [e["message"] for e in kept] == [f"line {i}" for i in range(1000 - len(kept), 1000)]
    dropped = int(header["message"].split()[0])
    assert header["message"] == (f"{dropped} earlier bytes of output were dropped "
                                 f"(job_log_max_bytes = 4096)")
    # the dropped bytes are exactly the lines that are not there
    with capture(DEFAULT_MAX_BYTES) as whole:
        for i in range(1000):
            print(f"line {i}")
    assert dropped == len(whole.text().encode("utf-8")) - sum(len(line.encode()) + 1
                                                             for line in text.splitlines()[1:])
    # a little room is still needed: 4096 bytes are kept whole when nothing is dropped
    assert "dropped" not in whole.text()


def test_output_that_fits_has_no_dropped_line(capsys):
    with capture(MIN_MAX_BYTES) as log:
        print("short")
    assert messages(log) == ["short"]
    assert log.dropped_bytes == 0


def test_an_entry_longer_than_the_limit_keeps_its_end(capsys):
    with capture(MIN_MAX_BYTES) as log:
        print("before")
        print("".join(str(i % 10) for i in range(5000)) + "THE END")
    text = log.text()
    assert len(text.encode("utf-8")) <= MIN_MAX_BYTES
    header, last = entries(log)
    assert "earlier bytes of output were dropped" in header["message"]
    assert last["message"].endswith("THE END") and len(last["message"]) > MIN_MAX_BYTES // 2


def test_one_write_larger_than_the_limit_keeps_its_last_lines(capsys):
    with capture(MIN_MAX_BYTES) as log:
        sys.stdout.write("unfinished ")
        sys.stdout.write("first\n" + "y" * 10_000 + "\nnext to last\nlast")
    assert messages(log)[-2:] == ["next to last", "last"]
    assert all(set(m) == {"y"} for m in messages(log)[1:-2])  # what is left of the long line, if any
    assert len(log.text().encode("utf-8")) <= MIN_MAX_BYTES
    assert "unfinished" not in log.text() and log.dropped_bytes >= 10_000 - MIN_MAX_BYTES


def test_a_job_printing_50_mb_keeps_memory_bounded():
    limit = 64 * 1024
    line = "x" * 10_000
    sink = open("/dev/null", "w")
    tracemalloc.start()
    try:
        with redirect_stdout(sink), capture(limit) as log:
            for _ in range(5_000):  # 50 MB of lines
                print(line)
            for _ in range(5_000):  # and 50 MB of one line that never ends
                sys.stdout.write(line)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sink.close()
    assert peak < 10 * limit
    assert len(log.text().encode("utf-8")) <= limit
    got = entries(log)
    assert set(got[-1]["message"]) == {"x"} and limit // 2 < len(got[-1]["message"]) < limit
    assert int(got[0]["message"].split()[0]) > 99_000_000


def test_streams_root_level_and_handlers_are_put_back_even_when_the_body_raises():
    out, err = sys.stdout, sys.stderr
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with pytest.raises(RuntimeError, match="boom"):
        with capture(DEFAULT_MAX_BYTES) as log:
            print("partial", end="")
            raise RuntimeError("boom")
    assert sys.stdout is out and sys.stderr is err
    assert root.handlers == handlers and root.level == level
    assert messages(log) == ["partial"]


def test_only_the_capturing_context_is_recorded(capsys):
    """A thread started with threading.Thread is not captured; a task or asyncio.to_thread is."""
    def in_a_thread():
        print("from a thread")
        logging.getLogger("etl").warning("thread warning")

    async def in_tasks():
        await asyncio.to_thread(print, "from to_thread")
        print("from a task")

    with capture(DEFAULT_MAX_BYTES) as log:
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        asyncio.run(in_tasks())
    assert messages(log) == ["from to_thread", "from a task"]
    assert "from a thread\n" in capsys.readouterr().out


def test_two_captures_in_two_threads_each_get_their_own(capsys):
    barrier = threading.Barrier(2)
    logs: dict[str, JobLog] = {}

    def job(name: str):
        with capture(DEFAULT_MAX_BYTES) as log:
            barrier.wait()
            for i in range(3):
                print(f"{name} {i}")
                logging.getLogger(name).warning("done %d", i)
            barrier.wait()
        logs[name] = log

    threads = [threading.Thread(target=job, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in ("a", "b"):
        assert messages(logs[name]) == [m for i in range(3) for m in (f"{name} {i}", f"done {i}")]
    assert capsys.readouterr().out.count("\n") == 6


def test_empty_and_disabled(capsys):
    with capture(DEFAULT_MAX_BYTES) as log:
        pass
    assert log.empty and log.text() == ""
    with capture(0) as off:
        print("not recorded")
        assert "_Tee" not in type(sys.stdout).__name__
    assert off.empty and off.text() == ""
    with pytest.raises(ValueError, match="at least 1024"):
        with capture(100):
            pass


def shout(x):
    print(f"item {x}")
    logging.getLogger("etl.worker").warning("worked on %s", x)
    return x * 2


def test_output_of_local_executor_workers_is_captured(capsys):
    executor = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)
    with capture(DEFAULT_MAX_BYTES) as log:
        print("before")
        result = Pipeline().map(shout).run(range(20), executor=executor)
        print("after")
    assert result == [x * 2 for x in range(20)]
    assert executor.last_plan["chunks"] >= 2  # the workers did the work
    assert messages(log, "stdout") == ["before", *(f"item {x}" for x in range(20)), "after"]
    assert messages(log, "log") == [f"worked on {x}" for x in range(20)]
    # outside a capture the workers run as before and nothing is recorded anywhere
    assert Pipeline().map(shout).run(range(20), executor=executor) == result


def test_output_of_a_pass_shared_by_this_process_and_its_workers_is_in_input_order(capsys):
    executor = LocalExecutor(2, probe_seconds=0, max_chunk=5)
    with capture(DEFAULT_MAX_BYTES) as log:
        print("before")
        result = Pipeline().map(shout).run(list(range(60)), executor=executor)
        print("after")
    assert result == [x * 2 for x in range(60)]
    assert executor.last_plan["chunks"] >= 1 and executor.last_plan["here"] >= 1
    assert messages(log, "stdout") == ["before", *(f"item {x}" for x in range(60)), "after"]
    assert messages(log, "log") == [f"worked on {x}" for x in range(60)]
    # a chunk failing here keeps what it printed too (7 is near the end: this process's part)
    with capture(DEFAULT_MAX_BYTES) as log:
        with pytest.raises(KeyError):
            Pipeline().map(shout_then_fail).run(list(range(60))[::-1], executor=executor)
    assert "about to handle 7" in messages(log, "stdout") and executor.last_plan["here"] >= 1


def test_in_a_celery_worker_printed_lines_are_recorded_once(capsys):
    """A Celery worker replaces sys.stdout by a LoggingProxy that logs each write to the
    ``celery.redirected`` logger: the line is recorded as printed, not again as that record."""
    from celery.utils.log import LoggingProxy

    redirected = logging.getLogger("celery.redirected")
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    redirected.addHandler(handler)
    try:
        with redirect_stdout(LoggingProxy(redirected, logging.WARNING)), capture(DEFAULT_MAX_BYTES) as log:
            print("from the pipeline")
    finally:
        redirected.removeHandler(handler)
    assert [(e["stream"], e["message"]) for e in entries(log)] == [("stdout", "from the pipeline")]
    assert seen.getvalue() == "from the pipeline\n"  # the worker's log still shows it


def test_a_capture_inside_another_records_in_its_place_until_it_ends(capsys):
    with capture(DEFAULT_MAX_BYTES) as outer:
        print("outer 1")
        with capture(DEFAULT_MAX_BYTES) as inner:
            print("inner")
        print("outer 2")
    assert messages(outer) == ["outer 1", "outer 2"]
    assert messages(inner) == ["inner"]


def shout_then_fail(x):
    print(f"about to handle {x}")
    if x == 7:
        raise KeyError(x)
    return x


def test_what_a_failing_chunk_printed_is_kept(capsys):
    executor = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)
    with capture(DEFAULT_MAX_BYTES) as log:
        with pytest.raises(KeyError):
            Pipeline().map(shout_then_fail).run(range(10), executor=executor)
    assert "about to handle 7" in messages(log, "stdout")


def test_a_failing_pass_run_again_to_locate_its_failure_is_recorded_once():
    """The fused pass fails, then runs stage by stage to find the stage and item: the user's prints
    of the second run reach the stream but are not recorded twice."""
    from atoll import Pipeline, SerialExecutor

    def shout(x):
        print(f"saw {x}")
        if x == 2:
            raise ValueError("two")
        return x

    with capture(DEFAULT_MAX_BYTES) as log:
        with pytest.raises(Exception, match="two"):
            SerialExecutor().run(Pipeline().map(shout), [1, 2, 3])
    messages = [json.loads(line)["message"] for line in log.text().splitlines()]
    assert messages == ["saw 1", "saw 2"]
