"""The functions the benchmarks' workloads are made of, shared so that every script (and every side
of a comparison: plain Python, raw joblib, raw PySpark, atoll) calls the very same code.

W1 tiny chain: inc -> is_even -> double -> add.  W3 word count: str.split -> pair_one -> add.
"""


def inc(x: int) -> int:
    """Return ``x + 1``."""
    return x + 1


def is_even(x: int) -> bool:
    """Return whether ``x`` is even."""
    return x % 2 == 0


def double(x: int) -> int:
    """Return ``x * 2``."""
    return x * 2


def pair_one(word: str) -> tuple[str, int]:
    """Return ``(word, 1)``."""
    return (word, 1)
