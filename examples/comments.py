"""An example atoll service: text metrics over user comments.

Each comment is ``{"user": "ada", "text": "..."}``. Serve it with::

    atoll serve examples.comments:service --bind 127.0.0.1:8000

and call it::

    curl -s localhost:8000/pipelines/user_stats -H 'Content-Type: application/json' \\
         -d '{"data": [{"user": "ada", "text": "Short and sweet."}]}'

Pipelines:

* ``word_counts``  — words per comment, in input order.
* ``readability``  — per comment: words, sentences, syllables and the Flesch reading-ease score.
* ``user_stats``   — per user: comments, words, mean words per comment, mean reading ease.
* ``top_words``    — the most frequent words; runtime kwargs ``n`` and ``min_length``.
* ``wordcount``    — (word, count) pairs over all comments, the classic.
"""

from __future__ import annotations

import operator
import re

from atoll import Atoll, Pipeline

_WORD = re.compile(r"[A-Za-z']+")
_SENTENCE_END = re.compile(r"[.!?]+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def text_of(comment: dict) -> str:
    """Return the text of a comment (a dict with "text", or a plain string)."""
    if isinstance(comment, str):
        return comment
    return comment["text"]


def words(text: str) -> list[str]:
    """Return the lower-cased words of ``text``."""
    return [w.lower().strip("'") for w in _WORD.findall(text) if w.strip("'")]


def syllables(word: str) -> int:
    """Return an estimate of the syllables in an English word (at least 1)."""
    count = len(_VOWEL_GROUPS.findall(word.lower()))
    if word.endswith("e") and not word.endswith("le") and count > 1:
        count -= 1
    return max(count, 1)


def readability(comment: dict) -> dict:
    """Return word, sentence and syllable counts and the Flesch reading-ease score of a comment."""
    text = text_of(comment)
    ws = words(text)
    sentences = max(len([s for s in _SENTENCE_END.split(text) if s.strip()]), 1)
    syl = sum(syllables(w) for w in ws)
    n = len(ws)
    ease = 206.835 - 1.015 * (n / sentences) - 84.6 * (syl / n) if n else None
    return {"user": comment.get("user") if isinstance(comment, dict) else None, "words": n,
            "sentences": sentences, "syllables": syl,
            "reading_ease": round(ease, 2) if ease is not None else None}


def user_metrics(comment: dict) -> tuple[str, dict]:
    """Return (user, partial aggregate) for one comment."""
    metrics = readability(comment)
    ease = metrics["reading_ease"]
    return comment["user"], {"comments": 1, "words": metrics["words"],
                             "ease_sum": ease or 0.0, "ease_n": 0 if ease is None else 1}


def merge_metrics(a: dict, b: dict) -> dict:
    """Return the sum of two partial aggregates (associative, so it runs in parallel too)."""
    return {k: a[k] + b[k] for k in a}


def finish_metrics(total: dict) -> dict:
    """Return the per-user report from a summed aggregate."""
    ease = total["ease_sum"] / total["ease_n"] if total["ease_n"] else None
    return {"comments": total["comments"], "words": total["words"],
            "words_per_comment": round(total["words"] / total["comments"], 2),
            "mean_reading_ease": round(ease, 2) if ease is not None else None}


def long_words(comment: dict, min_length: int = 1) -> list[str]:
    """Return the words of a comment with at least ``min_length`` letters."""
    return [w for w in words(text_of(comment)) if len(w) >= min_length]


def top(pairs: list, n: int = 10) -> list:
    """Return the ``n`` most frequent (word, count) pairs, ties by word."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return sorted(pairs, key=lambda p: (-p[1], p[0]))[:n]


def pair_one(word: str) -> tuple[str, int]:
    """Return (word, 1)."""
    return word, 1


word_counts = Pipeline(name="word_counts").map(text_of).map(words).map(len)
readability_scores = Pipeline(name="readability").map(readability)
user_stats = (Pipeline(name="user_stats").map(user_metrics).reduceByKey(merge_metrics)
              .mapValues(finish_metrics).to(dict))
top_words = (Pipeline(name="top_words").flatMap(long_words, kwargs=["min_length"]).map(pair_one)
             .reduceByKey(operator.add).to(top, kwargs=["n"]))
wordcount = (Pipeline(name="wordcount").map(text_of).flatMap(words).map(pair_one)
             .reduceByKey(operator.add))

service = Atoll()
service.register_pipeline("/word_counts", word_counts)
service.register_pipeline("/readability", readability_scores)
service.register_pipeline("/user_stats", user_stats)
service.register_pipeline("/top_words", top_words)
service.register_pipeline("/wordcount", wordcount)

app = service.create_app()
