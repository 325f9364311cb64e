"""Input read from files, for data that should not travel through the driver.

``read_text(path_or_glob)`` and ``read_jsonl(path_or_glob)`` return plain iterables: the serial and local
executors read them line by line (never whole), and the Spark executor turns them into ``sc.textFile``, so
every Spark executor reads its own part (a directory of files is at least one partition per file).

A path is a file, a directory (every file in it whose name does not start with ``.`` or ``_``, as Hadoop
reads directories) or a glob pattern; several may be given in a list.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from atoll.errors import PipelineError

__all__ = ["FileSource", "read_text", "read_jsonl"]

_GLOB_CHARS = set("*?[{")


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))


class FileSource(Iterable):
    """Lines of text files (parsed by ``parse`` when given): an iterable that reads lazily."""

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike], kind: str = "text"):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise PipelineError(f"read_{kind}: no path given")
        self.kind = kind

    def __repr__(self) -> str:
        shown = self.paths[0] if len(self.paths) == 1 else self.paths
        return f"read_{self.kind}({shown!r})"

    def files(self) -> list[str]:
        """Return the local files this source reads, in order; PipelineError when a path matches none."""
        found: list[str] = []
        for raw in self.paths:
            if _is_uri(raw):
                raise PipelineError(f"{self!r}: {raw} is not a local path; only the Spark executor reads "
                                    f"remote file systems")
            path = _local(raw)
            if os.path.isdir(path):
                found.extend(sorted(os.path.join(path, n) for n in os.listdir(path)
                                    if _visible(n) and os.path.isfile(os.path.join(path, n))))
            elif os.path.isfile(path):
                found.append(path)
            elif _GLOB_CHARS & set(path):
                matches = sorted(m for m in glob.glob(path) if os.path.isfile(m))
                if not matches:
                    raise PipelineError(f"{self!r}: no file matches {raw}")
                found.extend(matches)
            else:
                raise PipelineError(f"{self!r}: {raw} does not exist")
        return found

    def spark_path(self) -> str:
        """Return the paths in the form ``SparkContext.textFile`` takes (absolute, comma-separated)."""
        return ",".join(p if _is_uri(p) else os.path.abspath(_local(p)) for p in self.paths)

    def partition_parser(self) -> Callable[[Iterable[str]], Iterable] | None:
        """Return the function that turns a partition's lines into elements, or None for plain text."""
        return _parse_json_lines if self.kind == "jsonl" else None

    def _lines(self) -> Iterator[tuple[str, int, str]]:
        for name in self.files():
            with open(name, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    yield name, number, line[:-1] if line.endswith("\n") else line

    def __iter__(self) -> Iterator[Any]:
        if self.kind == "text":
            return (line for _, _, line in self._lines())
        return self._json_elements()

    def _json_elements(self) -> Iterator[Any]:
        for name, number, line in self._lines():
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise PipelineError(f"{self!r}: {name} line {number} is not JSON ({exc}): "
                                        f"{line[:80]!r}", item=line) from None


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


def read_text(path_or_glob: str | os.PathLike | Iterable[str | os.PathLike]) -> FileSource:
    """Return the lines (without line endings) of text files, as an input any executor can run on.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x y\\nz\\n")
    >>> list(read_text(d / "a.txt"))
    ['x y', 'z']
    """
    return FileSource(path_or_glob, "text")


def read_jsonl(path_or_glob: str | os.PathLike | Iterable[str | os.PathLike]) -> FileSource:
    """Return the JSON value of each non-blank line of JSON Lines files, as an input any executor runs on.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.jsonl").write_text('{"n": 1}\\n\\n[2]\\n')
    >>> list(read_jsonl(d / "a.jsonl"))
    [{'n': 1}, [2]]
    """
    return FileSource(path_or_glob, "jsonl")
