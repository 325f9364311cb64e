"""Input read where it lies: files and fsspec URLs, for data that should not travel through the driver.

``read_text(url_or_glob)`` and ``read_jsonl(url_or_glob)`` return plain iterables over any fsspec URL (a
local path, ``file://``, ``s3://``, ``memory://``, ... with ``storage_options=`` for the file system) and
work on every executor:

- the serial executor streams them, file after file, never whole;
- the local executor cuts them into line-aligned byte ranges of ``partition_bytes`` (:class:`ByteRange`)
  and each worker reads its own range from the store: only the range's URL and offsets are pickled;
- the Spark executor reads a local (shared) path with ``sc.textFile``, and anything else as one Spark
  partition per byte range, each read in the executor through fsspec (no Hadoop file system needed).

A line belongs to the byte range where it starts, as in Hadoop's ``LineRecordReader``: a range that starts
mid-line skips to the next line, and its last line runs past its end. Lines end at ``\\n``; a ``\\r``
before it is dropped (CRLF files). A gzip file (``.gz``) cannot be split: it is one range, read whole.

A path is a file, a directory (every file in it whose name does not start with ``.`` or ``_``, as Hadoop
reads directories) or a glob pattern; several may be given in a list.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from atoll.errors import PipelineError

__all__ = ["ByteRange", "FileSource", "read_text", "read_jsonl", "DEFAULT_PARTITION_BYTES"]

#: the default of the configuration's ``dataset_partition_bytes``: the bytes each partition reads
DEFAULT_PARTITION_BYTES = 64 * 1024 * 1024
#: bytes read at once while splitting a range into lines
_BLOCK = 1 << 20
_GLOB_CHARS = set("*?[")


def _visible(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return not base.startswith((".", "_"))


def _filesystem(url: str, storage_options: dict | None):
    """Return ``(fs, path)`` for ``url`` (PipelineError for an unknown protocol or a missing driver)."""
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise PipelineError(f"cannot open {url}: {exc}") from None


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _compressed(path: str) -> bool:
    return path.endswith(".gz")


class ByteRange:
    """The lines (or JSON values) starting in bytes ``[start, end)`` of one file: what a partition reads.

    Pickles as its URL, offsets and options, never its data; reading it opens the file where it runs.
    ``end=None`` reads to the end of the file (a whole file, or a gzip file, which cannot be split).
    """

    __slots__ = ("url", "start", "end", "kind", "storage_options")

    def __init__(self, url: str, start: int = 0, end: int | None = None, kind: str = "text",
                 storage_options: dict | None = None):
        self.url, self.start, self.end, self.kind = url, start, end, kind
        self.storage_options = storage_options or {}

    def __getstate__(self):
        return (self.url, self.start, self.end, self.kind, self.storage_options)

    def __setstate__(self, state):
        self.url, self.start, self.end, self.kind, self.storage_options = state

    def __repr__(self) -> str:
        return f"ByteRange({self.url!r}, {self.start}, {self.end})"

    def lines(self) -> Iterator[str]:
        """Yield the lines that start in this range, without their line endings."""
        fs, path = _filesystem(self.url, self.storage_options)
        if _compressed(path):
            with fs.open(path, "rb", compression="gzip") as handle:
                yield from _lines_of(handle, 0, None)
            return
        with fs.open(path, "rb", **({} if _is_local(fs) else {"block_size": 8 * _BLOCK})) as handle:
            yield from _lines_of(handle, self.start, self.end)

    def __iter__(self) -> Iterator[Any]:
        if self.kind == "text":
            return self.lines()
        return _json_values(self.lines(), self.url if self.start == 0 else
                            f"{self.url} (the part from byte {self.start})")


def _skip_line(handle) -> int:
    """Read through the next ``\\n`` (or to the end); return the bytes read."""
    read = 0
    while True:
        block = handle.read(_BLOCK)
        if not block:
            return read
        at = block.find(b"\n")
        if at >= 0:
            handle.seek(handle.tell() - len(block) + at + 1)
            return read + at + 1
        read += len(block)


def _split(data: bytes) -> list[str]:
    text = data.decode("utf-8")
    lines = text.split("\n")
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def _lines_of(handle, start: int, end: int | None) -> Iterator[str]:
    """Yield the lines starting in ``[start, end)`` of the open binary file ``handle``."""
    if start > 0:
        handle.seek(start - 1)
        pos = start - 1 + _skip_line(handle)  # the line holding byte start - 1 belongs to the range before
    else:
        pos = 0
    limit = math.inf if end is None else end
    carry = b""
    while pos < limit:
        data = handle.read(_BLOCK if end is None else min(_BLOCK, end - pos))
        if not data:
            break
        pos += len(data)
        if carry:
            data = carry + data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        yield from _split(data[:cut])
        carry = data[cut + 1:]
    else:
        # the range's end: a line begun before it (carry) is finished from the bytes after it
        if carry:
            while True:
                data = handle.read(_BLOCK)
                at = data.find(b"\n")
                if at >= 0 or not data:
                    carry += data[:at] if at >= 0 else data
                    break
                carry += data
            yield from _split(carry)
        return
    if carry:  # the file's last line, with no newline after it
        yield from _split(carry)


def _json_values(lines: Iterable[str], where: str) -> Iterator[Any]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise PipelineError(f"read_jsonl: {where} line {number} is not JSON ({exc}): "
                                    f"{line[:80]!r}", item=line) from None


class FileSource(Iterable):
    """Lines of text files at fsspec URLs (parsed as JSON lines for ``kind="jsonl"``): an iterable that
    reads lazily, and that parallel executors read in :class:`ByteRange` partitions."""

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike], kind: str = "text",
                 storage_options: dict | None = None, partition_bytes: int | None = None):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise PipelineError(f"read_{kind}: no path given")
        if partition_bytes is not None and (not isinstance(partition_bytes, int) or partition_bytes < 1):
            raise PipelineError(f"read_{kind}: partition_bytes must be a positive integer; "
                                f"got {partition_bytes!r}")
        self.kind = kind
        self.storage_options = dict(storage_options or {})
        # the bytes a partition reads; None: the configuration's dataset_partition_bytes
        self.partition_bytes = partition_bytes

    def __repr__(self) -> str:
        shown = self.paths[0] if len(self.paths) == 1 else self.paths
        return f"read_{self.kind}({shown!r})"

    def _expand(self) -> list[tuple[Any, str]]:
        """Return ``(fs, path)`` of every file the paths name, in order (PipelineError if one names none)."""
        found: list[tuple[Any, str]] = []
        for raw in self.paths:
            fs, path = _filesystem(raw, self.storage_options)
            if not _is_local(fs):
                fs.invalidate_cache()  # a listing cached earlier in this process may miss new files
            try:
                if _GLOB_CHARS & set(path):
                    matches = sorted(m for m in fs.glob(path) if fs.isfile(m))
                    if not matches:
                        raise PipelineError(f"{self!r}: no file matches {raw}")
                    found.extend((fs, m) for m in matches)
                elif fs.isdir(path):
                    found.extend((fs, m) for m in sorted(fs.find(path, maxdepth=1)) if _visible(m))
                elif fs.isfile(path):
                    found.append((fs, path))
                else:
                    raise PipelineError(f"{self!r}: {raw} does not exist")
            except PipelineError:
                raise
            except (OSError, ValueError) as exc:
                raise PipelineError(f"{self!r}: cannot read {raw}: {exc}") from None
        return found

    def files(self) -> list[str]:
        """Return the URLs of the files this source reads, in order (local files as plain paths)."""
        return [path if _is_local(fs) else fs.unstrip_protocol(path) for fs, path in self._expand()]

    def local(self) -> bool:
        """Return True when every path is on the local file system (which Spark's ``textFile`` reads)."""
        return all(_is_local(_filesystem(raw, self.storage_options)[0]) for raw in self.paths)

    def partitions(self, partition_bytes: int | None = None) -> list[ByteRange]:
        """Return the line-aligned byte ranges of at most ``partition_bytes`` (else this source's, else
        64 MiB) that cover every file (a gzip file whole, an empty file none)."""
        out: list[ByteRange] = []
        size = partition_bytes or self.partition_bytes or DEFAULT_PARTITION_BYTES
        for fs, path in self._expand():
            url = path if _is_local(fs) else fs.unstrip_protocol(path)
            if _compressed(path):
                out.append(ByteRange(url, 0, None, self.kind, self.storage_options))
                continue
            length = fs.size(path) or 0
            out.extend(ByteRange(url, at, min(at + size, length), self.kind, self.storage_options)
                       for at in range(0, length, size))
        return out

    def spark_path(self) -> str:
        """Return the paths in the form ``SparkContext.textFile`` takes (absolute, comma-separated)."""
        return ",".join(os.path.abspath(p[len("file://"):] if p.startswith("file://") else p)
                        for p in self.paths)

    def partition_parser(self) -> Callable[[Iterable[str]], Iterable] | None:
        """Return the function that turns a partition's lines into elements, or None for plain text."""
        return _parse_json_lines if self.kind == "jsonl" else None

    def __iter__(self) -> Iterator[Any]:
        return (value for part in self._whole_files() for value in part)

    def _whole_files(self) -> Iterator[ByteRange]:
        for url in self.files():
            yield ByteRange(url, 0, None, self.kind, self.storage_options)


def _parse_json_lines(lines: Iterable[str]) -> list:
    """Return the JSON values of the non-blank ``lines`` (PipelineError naming a bad line)."""
    out = []
    for line in lines:
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise PipelineError(f"read_jsonl: a line is not JSON ({exc}): {line[:80]!r}",
                                    item=line) from None
    return out


def read_text(url_or_glob: str | os.PathLike | Iterable[str | os.PathLike], *,
              storage_options: dict | None = None, partition_bytes: int | None = None) -> FileSource:
    """Return the lines (without line endings) of text files at fsspec URLs, as an input any executor
    can run on; ``storage_options`` go to the file system (s3fs's ``key``, ``endpoint_url``, ...), and
    parallel executors read ``partition_bytes`` a partition (default: the configuration's
    ``dataset_partition_bytes``, 64 MiB).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x y\\nz\\n")
    >>> list(read_text(d / "a.txt"))
    ['x y', 'z']
    """
    return FileSource(url_or_glob, "text", storage_options, partition_bytes)


def read_jsonl(url_or_glob: str | os.PathLike | Iterable[str | os.PathLike], *,
               storage_options: dict | None = None, partition_bytes: int | None = None) -> FileSource:
    """Return the JSON value of each non-blank line of JSON Lines files at fsspec URLs, as an input any
    executor runs on (``storage_options`` and ``partition_bytes`` as for :func:`read_text`).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.jsonl").write_text('{"n": 1}\\n\\n[2]\\n')
    >>> list(read_jsonl(d / "a.jsonl"))
    [{'n': 1}, [2]]
    """
    return FileSource(url_or_glob, "jsonl", storage_options, partition_bytes)
