"""The service the dashboard's browser tests serve (``atoll serve ui_service:service``): a plain pipeline,
one with a runtime kwarg, a forked one, one failing at a known stage and item, one whose function name
and error message hold markup, to check that the page shows them as text, one that prints and logs
(markup too), and a slow one run in several chunks on the local executor."""

from __future__ import annotations

import logging
import operator
import sys
import time

from atoll import LocalExecutor, Pipeline
from atoll.config import Config, load_config
from atoll.service import Atoll

#: markup that sets window.__pwned if the page ever parsed it as HTML
MARKUP = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _explode_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"no entry {x}")
    return x


def inc(x: int) -> int:
    """Return x + 1."""
    return x + 1


def times(x: int, factor: int) -> int:
    """Return x * factor."""
    return x * factor


def is_odd(x: int) -> bool:
    """Return True for an odd x."""
    return x % 2 == 1


def _shout(x: str) -> str:
    raise ValueError(f"bad input {x!r}: {MARKUP}")


_shout.__qualname__ = "shout" + MARKUP  # shown as the stage's function name in the graph


def _chatty(x: str) -> str:
    print(f"seen {x}")
    print(f"careful with {x}", file=sys.stderr)
    logging.getLogger("ui.chatty").warning("logged %s", x)
    print(MARKUP)
    return x.upper()


def _nap(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def build_service(config: Config) -> Atoll:
    """Return the service: double, scale (runtime kwarg factor), forked (fork + splitMap, factor needed
    in a branch), explode (fails at stage 1), shout (markup in its function name and error), chatty
    (prints to stdout and stderr, logs a warning, prints markup) and slow (sleeps ``seconds`` per
    element, one element a chunk on two local processes)."""
    service = Atoll(config)
    service.register_pipeline("/double", Pipeline(name="double").map(lambda x: 2 * x))
    service.register_pipeline("/scale", Pipeline(name="scale").map(lambda x, factor: x * factor,
                                                                  kwargs=["factor"]))
    service.register_pipeline("/forked", Pipeline(name="forked").map(abs).fork(
        Pipeline().map(inc).map(times, kwargs=["factor"]),
        Pipeline().filter(is_odd),
        None).splitMap(str, None, float))
    service.register_pipeline("/explode", Pipeline(name="explode").map(lambda x: x + 1)
                              .map(_explode_on_three))
    service.register_pipeline("/shout", Pipeline(name="shout").map(_shout))
    service.register_pipeline("/chatty", Pipeline(name="chatty").map(_chatty))
    service.register_pipeline("/slow", Pipeline(name="slow").map(_nap, kwargs=["seconds"]),
                              executor=LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0, max_chunk=1))
    return service


service = build_service(load_config())


def _moderate(comment: dict) -> dict:
    """Print and log what is checked in a comment; return its readability (KeyError without a user)."""
    from examples.comments import readability

    print(f"checking {comment.get('text', '')!r}")
    metrics = readability(comment)
    log = logging.getLogger("comments.moderate")
    if metrics["words"] < 3:
        log.warning("a short comment: %d words", metrics["words"])
    log.info("comment by %s: %d words", comment["user"], metrics["words"])
    return metrics


def build_showcase(config: Config) -> Atoll:
    """Return the service the documentation's screenshots show: the comments example's pipelines, a
    forked report over them, and moderate (prints and logs, fails on a comment without a user)."""
    from examples.comments import pair_one, text_of, top, top_words, user_stats, wordcount, words

    service = Atoll(config)
    report = Pipeline(name="comment_report").map(text_of).fork(
        Pipeline().map(words).map(len),
        Pipeline().flatMap(words).map(pair_one).reduceByKey(operator.add).to(top, kwargs=["n"]),
        None)
    service.register_pipeline("/comment_report", report)
    service.register_pipeline("/user_stats", user_stats)
    service.register_pipeline("/top_words", top_words)
    service.register_pipeline("/wordcount", wordcount)
    service.register_pipeline("/moderate", Pipeline(name="moderate").map(_moderate))
    return service


showcase = build_showcase(load_config())
