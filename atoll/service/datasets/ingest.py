"""Checking an upload while it streams: bytes in (maybe gzip), newline-delimited records out.

:func:`ingest` reads a body chunk by chunk, decompresses it (bounded: a gzip bomb stops at
``dataset_max_bytes``), splits it into lines, checks each line (JSON lines: one JSON value a line;
text: UTF-8) or parses a JSON array element by element, and writes the stored form -- one record a
line -- to a sink, hashing what it writes. Nothing is ever held whole: the memory used is a chunk
and the longest line.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from atoll.service.datasets.errors import DatasetEmpty, DatasetInvalid, DatasetTooLarge

__all__ = ["ingest", "Ingested", "FORMATS", "format_of"]

try:  # orjson checks a JSON line about three times faster; json is the fallback
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _loads

    def _dumps(value: object) -> bytes:
        return _orjson_dumps(value)
except ImportError:  # pragma: no cover - orjson is in the test extra
    _loads = json.loads  # type: ignore[assignment]

    def _dumps(value: object) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

#: stored format by request Content-Type
FORMATS = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/json-lines": "jsonl",
           "application/x-jsonlines": "jsonl", "text/plain": "text", "application/json": "json"}
#: decompressed bytes produced per step at most (bounds a gzip bomb's expansion per chunk)
_STEP = 1024 * 1024


def format_of(mimetype: str) -> str | None:
    """Return ``jsonl``, ``text`` or ``json`` (a JSON array) for a Content-Type, None when unsupported.

    >>> format_of("application/x-ndjson"), format_of("text/plain"), format_of("image/png")
    ('jsonl', 'text', None)
    """
    return FORMATS.get(mimetype.lower())


@dataclass
class Ingested:
    """What an upload stored: bytes written, records, their SHA-256 and bytes received."""

    bytes: int
    records: int
    sha256: str
    received: int


class _Sink:
    def __init__(self, write: Callable[[bytes], object], max_bytes: int,
                 reserve: Callable[[int], object] | None):
        self.write_to, self.max_bytes, self.reserve = write, max_bytes, reserve
        self.hash = hashlib.sha256()
        self.size = self.records = 0
        self.pending: list[bytes] = []
        self.pending_size = 0

    def add(self, line: bytes) -> None:
        self.pending.append(line)
        self.pending_size += len(line)
        self.records += 1
        if self.pending_size >= _STEP:
            self.flush()

    def add_block(self, block: bytes, records: int) -> None:
        self.flush()
        self.records += records
        self.pending, self.pending_size = [block], len(block)
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        block = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        self.size += len(block)
        if self.size > self.max_bytes:
            raise DatasetTooLarge(f"the dataset is larger than dataset_max_bytes = {self.max_bytes} bytes "
                                  f"once decompressed; nothing was kept", limit=self.max_bytes)
        if self.reserve is not None:
            self.reserve(self.size)
        self.hash.update(block)
        self.write_to(block)


def _decompressed(chunks: Iterable[bytes], gzip: bool, max_bytes: int, counter: list[int]) -> Iterable[bytes]:
    """Yield the body's bytes, gunzipped when ``gzip``; TooLarge past ``max_bytes`` sent or produced."""
    received = 0
    if not gzip:
        for chunk in chunks:
            received += len(chunk)
            counter[0] = received
            if received > max_bytes:
                raise DatasetTooLarge(f"the body is larger than dataset_max_bytes = {max_bytes} bytes; "
                                      f"nothing was kept", limit=max_bytes)
            yield chunk
        return
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    produced = 0
    for chunk in chunks:
        received += len(chunk)
        counter[0] = received
        if received > max_bytes:
            raise DatasetTooLarge(f"the compressed body is larger than dataset_max_bytes = {max_bytes} "
                                  f"bytes; nothing was kept", limit=max_bytes)
        data = chunk
        while data:
            if inflate.eof:  # a second gzip member (as `cat a.gz b.gz` makes)
                data = inflate.unused_data + data if inflate.unused_data else data
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = inflate.decompress(data, _STEP)
            except zlib.error as exc:
                raise DatasetInvalid(f"the body is not valid gzip ({exc}) after {received} bytes "
                                     f"received; nothing was kept") from None
            produced += len(out)
            if produced > max_bytes:
                raise DatasetTooLarge(f"the body decompresses to more than dataset_max_bytes = {max_bytes} "
                                      f"bytes; nothing was kept", limit=max_bytes)
            if out:
                yield out
            data = inflate.unconsumed_tail
    if received and not inflate.eof:
        raise DatasetInvalid(f"the gzip body is truncated: it ends after {received} bytes before the end "
                             f"of its compressed stream; nothing was kept")


def _blocks(data: Iterable[bytes]) -> Iterable[bytes]:
    """Yield ``data`` cut after its last newline: blocks of whole lines (the last may lack one)."""
    rest = b""
    for chunk in data:
        if rest:
            chunk = rest + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            rest = chunk
            continue
        rest = chunk[cut + 1:]
        yield chunk[:cut]
    if rest:
        yield rest


def _check_jsonl(data: Iterable[bytes], sink: _Sink) -> None:
    seen = 0
    for block in _blocks(data):
        lines = block.split(b"\n")
        try:  # the common case, at C speed: every line of the block is one JSON value
            deque(map(_loads, lines), maxlen=0)
        except ValueError:
            _check_jsonl_lines(lines, seen, sink)  # blank lines, or a bad one to name
        else:
            sink.add_block(block + b"\n", len(lines))
        seen += len(lines)


def _check_jsonl_lines(lines: list[bytes], seen: int, sink: _Sink) -> None:
    for number, line in enumerate(lines, seen + 1):
        if not line.strip():
            continue
        try:
            _loads(line)
        except ValueError as exc:
            raise DatasetInvalid(f"line {number} is not JSON ({exc}): {line[:80]!r}; nothing was kept",
                                 line=number) from None
        sink.add(line + b"\n")


def _check_text(data: Iterable[bytes], sink: _Sink) -> None:
    seen = 0
    for block in _blocks(data):
        lines = block.count(b"\n") + 1
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            for number, line in enumerate(block.split(b"\n"), seen + 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetInvalid(f"line {number} is not UTF-8 text ({exc.reason} at byte "
                                         f"{exc.start}); nothing was kept", line=number) from None
        sink.add_block(block + b"\n", lines)
        seen += lines


def _check_array(data: Iterable[bytes], sink: _Sink, max_bytes: int) -> None:
    """Parse a JSON array element by element: each element is stored as one JSON line."""
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8")()
    buf, pos, started, ended, index = "", 0, False, False, 0
    source = iter(data)

    def more() -> bool:
        nonlocal buf, pos
        for chunk in source:
            try:
                text = text_decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise DatasetInvalid(f"the body is not UTF-8 JSON ({exc.reason}); nothing was kept") from None
            if text:
                buf = buf[pos:] + text
                pos = 0
                if len(buf) > max_bytes:
                    raise DatasetTooLarge(f"an element of the array is larger than dataset_max_bytes = "
                                          f"{max_bytes}", limit=max_bytes)
                return True
        return False

    def skip_space() -> bool:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return True
            if not more():
                return False

    while True:
        if not skip_space():
            break
        char = buf[pos]
        if not started:
            if char != "[":
                raise DatasetInvalid("a body sent as application/json must be a JSON array of records; "
                                     f"it starts with {char!r}; nothing was kept")
            started, pos = True, pos + 1
            if skip_space() and buf[pos] == "]":
                pos += 1
                ended = True
            continue
        if ended:
            raise DatasetInvalid(f"extra data after the JSON array at element {index}; nothing was kept")
        if index > 0:
            if char == "]":
                pos += 1
                ended = True
                continue
            if char != ",":
                raise DatasetInvalid(f"expected ',' or ']' after element {index - 1} of the array, got "
                                     f"{char!r}; nothing was kept", element=index - 1)
            pos += 1
            if not skip_space():
                break
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                # the value may go on in the next chunk; an error well before the buffer's end is final
                unfinished = exc.pos >= len(buf) - 1 or exc.msg.startswith("Unterminated string")
                if unfinished and more():
                    continue
                raise DatasetInvalid(f"element {index} of the array is not JSON ({exc.msg}); nothing "
                                     f"was kept", element=index) from None
            if end >= len(buf) and more():
                continue  # a number or literal may go on in the next chunk
            break
        try:
            line = _dumps(value)
        except (TypeError, UnicodeEncodeError, ValueError) as exc:  # a lone surrogate: "\\ud800"
            raise DatasetInvalid(f"element {index} of the array cannot be stored as UTF-8 JSON ({exc}); "
                                 f"nothing was kept", element=index) from None
        sink.add(line + b"\n")
        pos = end
        index += 1
    if not started:
        return
    if not ended:
        raise DatasetInvalid(f"the JSON array is not closed: the body ends after element {index - 1}; "
                             f"nothing was kept", element=index - 1)


def ingest(chunks: Iterable[bytes], kind: str, gzip: bool, write: Callable[[bytes], object],
           max_bytes: int, reserve: Callable[[int], object] | None = None) -> Ingested:
    """Check ``chunks`` (a body of format ``kind``: jsonl, text or json) and write its records, one a
    line, through ``write``; return what was stored. Raises DatasetInvalid (naming the line or element),
    DatasetEmpty, DatasetTooLarge, or what ``reserve`` raises: it is called with the bytes stored so
    far, this block's included, before each block is written (the store's quota)."""
    sink = _Sink(write, max_bytes, reserve)
    counter = [0]
    data = _decompressed(chunks, gzip, max_bytes, counter)
    if kind == "jsonl":
        _check_jsonl(data, sink)
    elif kind == "text":
        _check_text(data, sink)
    else:
        _check_array(data, sink, max_bytes)
    sink.flush()
    if sink.records == 0:
        raise DatasetEmpty("the body holds no record (it is empty, or only blank lines or []); nothing "
                           "was kept")
    return Ingested(sink.size, sink.records, sink.hash.hexdigest(), counter[0])
