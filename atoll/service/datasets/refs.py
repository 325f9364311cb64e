"""Data by reference: a run's ``{"data": {"dataset": id}}``, ``{"files": pattern}`` or ``{"url": url}``.

:func:`parse_ref` checks a reference where it arrives (the web process), and :func:`resolve` turns it
into the input the executor reads -- ``read_jsonl``/``read_text`` over the store's URL -- where the
pipeline runs (the worker), so no data byte travels through the broker or a job record.

Safety: an id is 32 hex digits (nothing else reaches a path); a file pattern is relative, without
``..``, and every file it matches must lie, symlinks resolved, inside one of ``data_roots``; a URL
must start with one of the ``data_sources`` prefixes, without ``..``, query or fragment. Anything else
is refused -- so a caller can never make the service read an arbitrary path or fetch an arbitrary URL.
"""

from __future__ import annotations

import glob
import inspect
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from atoll.config import Config
from atoll.service.datasets.errors import DataRefRefused, DatasetNotFound
from atoll.service.datasets.store import DatasetStore, is_dataset_id
from atoll.sources import read_jsonl, read_text

__all__ = ["DataRef", "parse_ref", "resolve", "REF_KEYS"]

#: the keys that make a run's ``data`` object a reference (exactly one, plus ``format`` for files/url)
REF_KEYS = ("dataset", "files", "url")
_FORMATS = ("jsonl", "text")


@dataclass(frozen=True)
class DataRef:
    """A checked reference: ``kind`` (dataset, files, url), the ids, pattern or URL, and the format."""

    kind: str
    targets: tuple[str, ...]
    format: str | None = None

    @property
    def dataset_ids(self) -> tuple[str, ...]:
        """The dataset ids it reads (none for files and URLs)."""
        return self.targets if self.kind == "dataset" else ()


def is_ref(data: Any) -> bool:
    """True when a run's ``data`` is a reference object (one of :data:`REF_KEYS`, maybe ``format``)."""
    return (isinstance(data, Mapping) and len(set(data) & set(REF_KEYS)) == 1
            and set(data) <= {*REF_KEYS, "format"})


def _format_of(name: str, given: Any) -> str:
    if given is not None:
        if given not in _FORMATS:
            raise DataRefRefused(f'"data.format" must be one of {", ".join(_FORMATS)}; got {given!r}')
        return given
    return "jsonl" if name.lower().endswith((".jsonl", ".ndjson", ".json")) else "text"


def parse_ref(data: Any, config: Config) -> DataRef | None:
    """Return the reference in a run's ``data``, None when it is plain data; DataRefRefused when it is
    a reference that is malformed or points outside what the configuration allows."""
    if not is_ref(data):
        return None
    given = data.get("format")
    if "dataset" in data:
        value = data["dataset"]
        ids = [value] if isinstance(value, str) else value
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise DataRefRefused('"data.dataset" must be a dataset id or a non-empty list of ids')
        for dataset_id in ids:
            if not is_dataset_id(dataset_id):
                raise DataRefRefused(f'"data.dataset": {dataset_id[:80]!r} is not a dataset id (32 hex '
                                     f"digits, as POST /datasets answers)")
        if given is not None:
            raise DataRefRefused('"data.format" goes with "files" or "url"; a dataset knows its format')
        return DataRef("dataset", tuple(ids))
    if "files" in data:
        pattern = data["files"]
        _check_pattern(pattern, config)
        return DataRef("files", (pattern,), _format_of(pattern, given))
    url = data["url"]
    _check_url(url, config)
    return DataRef("url", (url,), _format_of(urlsplit(url).path, given))


def _check_pattern(pattern: Any, config: Config) -> None:
    if not isinstance(pattern, str) or not pattern:
        raise DataRefRefused('"data.files" must be a file name or glob pattern relative to a data root')
    if not config.data_roots:
        raise DataRefRefused('"data.files" is not allowed here: the service has no data_roots')
    if "\0" in pattern or pattern.startswith(("/", "~", "\\")) or os.path.isabs(pattern) or ":" in pattern:
        raise DataRefRefused(f'"data.files" must be relative to one of data_roots; {pattern[:200]!r} is not')
    if ".." in pattern.replace("\\", "/").split("/"):
        raise DataRefRefused(f'"data.files" may not contain ".." (it reads only inside data_roots); got '
                             f"{pattern[:200]!r}")


def _check_url(url: Any, config: Config) -> None:
    if not isinstance(url, str) or not url:
        raise DataRefRefused('"data.url" must be a URL string under one of data_sources')
    if not config.data_sources:
        raise DataRefRefused('"data.url" is not allowed here: the service has no data_sources')
    parts = urlsplit(url)
    path = parts.path
    if parts.query or parts.fragment or "\\" in url or any(ord(c) < 33 for c in url):
        raise DataRefRefused(f'"data.url" may not carry a query, fragment, spaces or backslashes: '
                             f"{url[:200]!r}")
    if ".." in path.split("/") or "%2e" in url.lower() or "@" in parts.netloc:
        raise DataRefRefused(f'"data.url" may not contain "..", encoded dots or credentials: {url[:200]!r}')
    for prefix in config.data_sources:
        if _under(url, prefix):
            return
    raise DataRefRefused(f'"data.url" {url[:200]!r} is not under any of data_sources: '
                         f"{', '.join(config.data_sources)}")


def _under(url: str, prefix: str) -> bool:
    """True when ``url`` lies under ``prefix`` (same scheme and host, path below the prefix's)."""
    a, b = urlsplit(url), urlsplit(prefix)
    if a.scheme.lower() != b.scheme.lower() or a.netloc.lower() != b.netloc.lower():
        return False
    base = b.path if b.path.endswith("/") or not b.path else b.path
    path = posixpath.normpath(a.path) if a.path else a.path
    return path == base.rstrip("/") or path.startswith(base if base.endswith("/") else base + "/") or (
        base.endswith("/") and path.startswith(base))


def _files(pattern: str, config: Config) -> list[str]:
    """Return the files ``pattern`` matches inside the data roots (symlinks out of a root refused)."""
    found: list[str] = []
    for root in config.data_roots:
        real_root = os.path.realpath(root)
        for match in sorted(glob.glob(os.path.join(real_root, pattern))):
            real = os.path.realpath(match)
            if os.path.commonpath([real, real_root]) != real_root:
                raise DataRefRefused(f'"data.files": {os.path.relpath(match, real_root)!r} leads outside '
                                     f"its data root (a symbolic link); it is not read")
            if os.path.isfile(real):
                found.append(real)
        if found:
            return found
    raise DataRefRefused(f'"data.files": no file matches {pattern!r} in data_roots')


def _reader(kind: str, urls: list[str], options: dict) -> Any:
    read = read_jsonl if kind == "jsonl" else read_text
    if options and "storage_options" in inspect.signature(read).parameters:
        return read(urls, storage_options=options)
    return read(urls)


def resolve(ref: DataRef, store: DatasetStore, caller: Any = None) -> Any:
    """Return the input that ``ref`` names, read lazily by the executor from where the data lies.

    Raises DatasetNotFound for a dataset deleted (or expired) since the run was accepted."""
    if ref.kind == "dataset":
        datasets = []
        for dataset_id in ref.targets:
            dataset = store.find(dataset_id)
            if dataset is None:
                raise DatasetNotFound(f"dataset {dataset_id} does not exist any more (deleted or expired "
                                      f"before the run read it)", dataset_id=dataset_id)
            datasets.append(dataset)
        formats = {d.format for d in datasets}
        if len(formats) > 1:
            raise DataRefRefused("the datasets of one run must have one format; got "
                                 + ", ".join(sorted(formats)))
        return _reader(formats.pop(), [store.data_url(d.dataset_id) for d in datasets], store.storage_options)
    if ref.kind == "files":
        return _reader(ref.format or "text", _files(ref.targets[0], store.config), {})
    return _reader(ref.format or "text", list(ref.targets), store.storage_options)
