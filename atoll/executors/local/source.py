"""The input of a local pass: the probe's slices first, then the rest in chunks (slices of a sequence,
read as the workers ask for more from any other iterable, so a generator is never held whole)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from atoll.executors.serial import chunks_of

__all__ = ["Source", "even_chunks"]


def even_chunks(items, count: int, start: int = 0):
    """Yield ``count`` slices of the sequence ``items`` from ``start`` on, whose lengths differ by one
    at most (sliced from ``items`` itself: the rest is never copied whole first).

    >>> [list(c) for c in even_chunks(range(7), 3)], [list(c) for c in even_chunks(range(7), 2, 3)]
    ([[0, 1, 2], [3, 4], [5, 6]], [[3, 4], [5, 6]])
    """
    size, longer = divmod(len(items) - start, count)
    for i in range(count):
        end = start + size + (i < longer)
        yield items[start:end]
        start = end


class Source:
    """The input of a pass: hands out the probe slices and then chunks of the rest."""

    def __init__(self, data: Iterable):
        self.sequence = data if isinstance(data, (list, tuple, range)) else None
        self.iterator = None if self.sequence is not None else iter(data)
        self.offset = 0
        self.exhausted = False

    def take(self, n: int):
        """Return the next ``n`` elements (fewer at the end); ``exhausted`` says whether any remain."""
        if self.sequence is not None:
            chunk = self.sequence[self.offset:self.offset + n]
        else:
            chunk = list(islice(self.iterator, n))
        self.offset += len(chunk)
        self.exhausted = len(chunk) < n or (
            self.sequence is not None and self.offset >= len(self.sequence))
        return chunk

    def remaining(self) -> int | None:
        """Return the elements not taken yet, None when the input is not a sequence."""
        return None if self.sequence is None else len(self.sequence) - self.offset

    def even_chunks(self, count: int) -> Iterable:
        """Return the rest of a sequence in ``count`` chunks (see :func:`even_chunks`)."""
        return even_chunks(self.sequence, count, self.offset)

    def chunks(self, size: int) -> Iterable:
        """Return the rest in chunks of ``size`` elements."""
        if self.sequence is not None:
            return chunks_of(self.sequence, size, self.offset)
        return chunks_of(self.iterator, size)
