"""The dataset store: datasets kept under one fsspec URL, ``datasets_url``.

Layout under the URL (the same on a local folder, ``s3://bucket/prefix`` or any fsspec file system)::

    <id>/data                 the records, one a line, uncompressed (JSON lines or text lines)
    <id>/meta.json            written last: a dataset exists once its metadata does
    uses/<id>/<job_id>        a job that reads the dataset (DELETE answers 409 while it is queued/running)
    uploads/<upload>/meta.json, uploads/<upload>/part-<offset>   a resumable upload's parts
    reservations/<id>         bytes of ``datasets_max_total_bytes`` held by a dataset being written
    quota.lock                (a local store) the lock that makes checking and reserving one step

An upload that fails half-way leaves ``<id>/data`` without metadata: invisible, removed at once, and
by :meth:`DatasetStore.sweep` if the process died first. Workers and Spark executors read ``<id>/data``
straight from the store (:meth:`DatasetStore.data_url`); no dataset byte travels through the broker.

The quota ``datasets_max_total_bytes`` counts stored datasets and the reservations of those being
written. A writer reserves room before it writes (:class:`Reservation`): a block at a time, the
stored and reserved bytes counted and its reservation recorded in one step under a lock. On a local
store the lock is ``fcntl.flock`` on ``quota.lock``, which holds across processes, so concurrent
uploads and results never exceed the quota together. An object store (``s3://``) has no such lock:
there it is a lock of this process only, and writers in *different* processes can each be granted
the same room; together they exceed the quota by at most the room each was granted beyond the bytes
it has written, a block of at most ``max(RESERVE_BYTES, a quarter of its size so far)`` per writer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from atoll.config import Config
from atoll.service.datasets.errors import (
    DatasetNotFound,
    DatasetQuotaExceeded,
    DatasetStoreUnavailable,
    StoredBytesExceeded,
    UploadConflict,
    UploadNotFound,
)
from atoll.service.datasets.ingest import Ingested, ingest

__all__ = ["DatasetStore", "Dataset", "Upload", "Reservation", "RESERVE_BYTES", "RESERVATION_SECONDS",
           "is_dataset_id", "new_dataset_id", "visible_to",
           "store_url"]

log = logging.getLogger("atoll.datasets")

_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1024 * 1024

#: the least room a writer reserves beyond what it is about to write (a quarter of its size once larger)
RESERVE_BYTES = 8 * 1024 * 1024
#: a reservation not renewed for this long is of a writer that died: it counts no more (live writers
#: renew theirs at least every half of it while they write)
RESERVATION_SECONDS = 3600.0

_quota_lock = threading.Lock()  # the threads of this process; a local store adds fcntl.flock


_last_id = [0, 0]
_id_lock = threading.Lock()


def new_dataset_id() -> str:
    """Return a new id: 32 hex digits that sort by creation time (milliseconds, a counter within one
    millisecond of this process, then random)."""
    with _id_lock:
        ms = max(int(time.time() * 1000), _last_id[0])
        _last_id[1] = _last_id[1] + 1 if ms == _last_id[0] else 0
        _last_id[0] = ms
        count = _last_id[1]
    return f"{ms:012x}{count:04x}{secrets.token_hex(8)}"


def is_dataset_id(text: Any) -> bool:
    """True for a string shaped like an id this store issues (nothing else reaches a path).

    >>> is_dataset_id("0" * 32), is_dataset_id("../etc"), is_dataset_id(None)
    (True, False, False)
    """
    return isinstance(text, str) and bool(_ID.match(text))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def store_url(config: Config) -> str:
    """Return the datasets store's URL: ``datasets_url``, or ``datasets`` under ``state_dir``."""
    return config.datasets_url or os.path.join(os.path.abspath(config.state_dir), "datasets")


def visible_to(owner: str | None, caller: Any) -> bool:
    """True when ``caller`` (None without named callers, or an object with ``name``/``is_admin``) may see
    a dataset owned by ``owner``: no caller, an admin, or its owner.

    >>> from types import SimpleNamespace as Caller
    >>> visible_to("ann", None), visible_to("ann", Caller(name="ann", is_admin=False))
    (True, True)
    >>> visible_to("ann", Caller(name="bob", is_admin=False))
    False
    >>> visible_to("ann", Caller(name="root", is_admin=True))
    True
    """
    if caller is None or getattr(caller, "is_admin", False):
        return True
    return owner is not None and owner == getattr(caller, "name", None)


@dataclass
class Dataset:
    """A stored dataset's metadata, as ``GET /datasets/<id>`` answers it."""

    dataset_id: str
    format: str
    bytes: int
    records: int
    sha256: str
    created_at: str
    expires_at: str
    owner: str | None = None
    job_id: str | None = None  # the job whose results it holds, if any
    name: str | None = None

    def public(self) -> dict:
        """Return the JSON form of the metadata."""
        return asdict(self)


@dataclass
class Upload:
    """A resumable upload under way: its format, encoding, the bytes received so far."""

    upload_id: str
    format: str
    gzip: bool
    created_at: str
    expires_at: str
    offset: int = 0
    owner: str | None = None
    name: str | None = None
    parts: list[int] = field(default_factory=list)

    def public(self) -> dict:
        """Return the JSON form of the upload (parts left out)."""
        record = asdict(self)
        del record["parts"]
        return record


class DatasetStore:
    """Datasets under ``datasets_url`` (see the module docstring); one per service and process."""

    def __init__(self, config: Config):
        import fsspec.core

        self.config = config
        self.url = store_url(config).rstrip("/")
        self.storage_options = dict(config.datasets_storage_options)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as exc:
            raise DatasetStoreUnavailable(f"datasets_url {self.url!r} cannot be opened: {exc}") from None
        self.root = self.root.rstrip("/")
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if self.protocol in ("file", "local"):
            self.fs.auto_mkdir = True  # an object store has no folders to make
            self.fs.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"<DatasetStore {self.url}>"

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def data_url(self, dataset_id: str) -> str:
        """Return the fsspec URL of dataset ``dataset_id``'s records (what workers read)."""
        path = self._path(dataset_id, "data")
        return path if self.protocol in ("file", "local") else f"{self.protocol}://{path}"

    # -- datasets --------------------------------------------------------------------------

    def create(self, chunks: Iterable[bytes], kind: str, gzip: bool, owner: str | None = None,
               name: str | None = None, job_id: str | None = None) -> Dataset:
        """Check and store the body ``chunks`` (see ``atoll.service.datasets.ingest``);
        return the new dataset. Nothing stays behind when it raises."""
        dataset_id = new_dataset_id()
        caller_left = self.stored_bytes_left(owner)
        room = Reservation(self, dataset_id)

        def reserve(size: int) -> None:  # the caller's own limit, then room in the store's quota
            if caller_left is not None and size > caller_left:
                raise self._over(owner, f"storing this dataset would take it past its limit "
                                        f"({caller_left} bytes were left); nothing was kept")
            room.cover(size)

        data_path = self._path(dataset_id, "data")
        try:
            room.cover(0)  # a full store refuses before the body is read
            with self.fs.open(data_path, "wb") as handle:
                stored = ingest(chunks, kind, gzip, handle.write, self.config.dataset_max_bytes, reserve)
            dataset = self._finish(dataset_id, "text" if kind == "text" else "jsonl", stored, owner,
                                   name, job_id)
        except BaseException:
            self._remove(dataset_id)
            raise
        finally:
            room.release()  # once the metadata counts its bytes, or nothing was kept
        log.info("dataset %s stored: %d records, %d bytes", dataset_id, dataset.records, dataset.bytes)
        return dataset

    def writer(self, kind: str, owner: str | None = None, job_id: str | None = None) -> DatasetWriter:
        """Return a writer of a new dataset from records produced one by one (a job's results)."""
        return DatasetWriter(self, kind, owner, job_id)

    def _finish(self, dataset_id: str, kind: str, stored: Ingested, owner: str | None, name: str | None,
                job_id: str | None) -> Dataset:
        created = time.time()
        dataset = Dataset(dataset_id, kind, stored.bytes, stored.records, stored.sha256, _iso(created),
                          _iso(created + self.config.dataset_expires), owner, job_id, name)
        self._write_json(self._path(dataset_id, "meta.json"), dataset.public())
        return dataset

    # -- the quota ---------------------------------------------------------------------------

    @contextmanager
    def _quota_locked(self) -> Iterator[None]:
        """Hold the quota's lock: this process's, and on a local store ``quota.lock``'s flock."""
        with _quota_lock:
            if self.protocol not in ("file", "local"):
                yield
                return
            import fcntl

            with open(os.path.join(self.root, "quota.lock"), "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
                yield

    def reserve(self, dataset_id: str, size: int) -> int:
        """Reserve room for dataset ``dataset_id`` being written: at least ``size`` bytes, more while
        there is room (see ``RESERVE_BYTES``); return the bytes reserved. Raises
        DatasetQuotaExceeded when the stored datasets and the others' reservations leave less."""
        limit = int(self.config.datasets_max_total_bytes)
        with self._quota_locked():
            others = self._reserved(but=dataset_id)
            left = limit - self.total_bytes() - others
            if left <= 0 or size > left:
                raise DatasetQuotaExceeded(
                    f"storing this dataset would exceed datasets_max_total_bytes = {limit} bytes: "
                    f"{max(left, 0)} bytes are left ({others} held by datasets being written); delete "
                    f"datasets or wait for them to expire; nothing was kept", available=max(left, 0))
            granted = min(left, size + max(RESERVE_BYTES, size // 4))
            self._write_json(self._path("reservations", dataset_id), {"bytes": granted, "at": time.time()})
        return granted

    def release(self, dataset_id: str) -> None:
        """Drop dataset ``dataset_id``'s reservation (stored, or given up)."""
        try:
            self.fs.rm(self._path("reservations", dataset_id))
        except FileNotFoundError:
            pass
        except Exception as exc:  # it lapses after RESERVATION_SECONDS
            log.warning("dataset %s: could not drop its reservation: %s", dataset_id, exc)

    def _reservations(self) -> Iterator[tuple[str, dict | None]]:
        try:
            names = self.fs.ls(self._path("reservations"), detail=False, **(
                {} if self.protocol in ("file", "local") else {"refresh": True}))
        except FileNotFoundError:
            return
        for name in names:
            dataset_id = name.rstrip("/").rsplit("/", 1)[-1]
            if is_dataset_id(dataset_id):
                yield dataset_id, self._read_json(self._path("reservations", dataset_id))

    def _reserved(self, but: str) -> int:
        """Return the bytes that live reservations (not of dataset ``but``) hold."""
        lapsed = time.time() - RESERVATION_SECONDS
        return sum(record["bytes"] for dataset_id, record in self._reservations()
                   if dataset_id != but and record is not None and record["at"] > lapsed)

    def stored_bytes_limit(self, owner: str | None) -> tuple[int | None, str]:
        """Return the bytes caller ``owner`` may keep (None: no limit, as for no caller) and the key
        that says so: its own ``max_stored_bytes`` or ``caller_max_stored_bytes`` (0 = no limit)."""
        entry = self.config.callers.get(owner, {}) if owner is not None else {}
        if entry.get("max_stored_bytes") is not None:
            limit, key = entry["max_stored_bytes"], "max_stored_bytes"
        else:
            limit, key = self.config.caller_max_stored_bytes, "caller_max_stored_bytes"
        return (limit or None) if owner is not None else None, key

    def stored_bytes(self, owner: str) -> int:
        """Return the bytes caller ``owner``'s datasets take (uploaded, or a job's results)."""
        return sum(d.bytes for d in self._all() if d.owner == owner)

    def stored_bytes_left(self, owner: str | None) -> int | None:
        """Return the bytes caller ``owner`` may still store (None: no limit); raise
        StoredBytesExceeded when it has none left. Read before storing: two uploads at the same
        instant may both pass."""
        limit, _ = self.stored_bytes_limit(owner)
        if limit is None:
            return None
        left = limit - self.stored_bytes(str(owner))
        if left <= 0:
            raise self._over(owner, "delete some of its datasets (DELETE /datasets/<id>) or wait for "
                                    "them to expire; nothing was stored")
        return left

    def _over(self, owner: str | None, what: str) -> StoredBytesExceeded:
        limit, key = self.stored_bytes_limit(owner)
        used = self.stored_bytes(str(owner))
        return StoredBytesExceeded(f"caller {owner!r} keeps {used} bytes of datasets, its limit is "
                                   f"{key} = {limit} bytes: {what}", limit=key, caller=owner,
                                   max_stored_bytes=limit, stored_bytes=used)

    def total_bytes(self) -> int:
        """Return the bytes all stored datasets take."""
        return sum(d.bytes for d in self._all())

    def get(self, dataset_id: str, caller: Any = None) -> Dataset:
        """Return dataset ``dataset_id``'s metadata; raise DatasetNotFound (also for another caller's)."""
        dataset = self.find(dataset_id)
        if dataset is None or not visible_to(dataset.owner, caller):
            raise DatasetNotFound(f"no dataset {dataset_id!r}: never stored here, deleted, or expired "
                                  f"(dataset_expires = {self.config.dataset_expires} s)")
        return dataset

    def find(self, dataset_id: str) -> Dataset | None:
        """Return dataset ``dataset_id``'s metadata, or None (unknown, expired or malformed id)."""
        if not is_dataset_id(dataset_id):
            return None
        record = self._read_json(self._path(dataset_id, "meta.json"))
        if record is None:
            return None
        dataset = Dataset(**{k: record.get(k) for k in Dataset.__dataclass_fields__})
        if _seconds(dataset.expires_at) <= time.time():
            return None
        return dataset

    def _ids(self) -> list[str]:
        try:
            names = self.fs.ls(self.root, detail=False, refresh=True) if self.protocol not in (
                "file", "local") else self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise DatasetStoreUnavailable(f"the datasets store cannot be listed: {type(exc).__name__}: "
                                          f"{exc}") from None
        return sorted((n.rstrip("/").rsplit("/", 1)[-1] for n in names
                       if is_dataset_id(n.rstrip("/").rsplit("/", 1)[-1])), reverse=True)

    def _all(self) -> Iterator[Dataset]:
        for dataset_id in self._ids():
            dataset = self.find(dataset_id)
            if dataset is not None:
                yield dataset

    def list(self, limit: int, after: str | None = None,
             caller: Any = None) -> tuple[list[Dataset], str | None]:
        """Return up to ``limit`` datasets newest first, those older than id ``after``, and the id to
        continue from (None on the last page)."""
        page: list[Dataset] = []
        for dataset_id in self._ids():
            if after is not None and dataset_id >= after:
                continue
            dataset = self.find(dataset_id)
            if dataset is None or not visible_to(dataset.owner, caller):
                continue
            if len(page) == limit:
                return page, page[-1].dataset_id
            page.append(dataset)
        return page, None

    def delete(self, dataset_id: str, caller: Any = None) -> Dataset:
        """Delete dataset ``dataset_id`` (its metadata first: it is gone at once); return what it was."""
        dataset = self.get(dataset_id, caller)
        self._remove(dataset_id)
        log.info("dataset %s deleted", dataset_id)
        return dataset

    def _remove(self, dataset_id: str) -> None:
        for path in (self._path(dataset_id, "meta.json"), self._path(dataset_id)):
            try:
                self.fs.rm(path, recursive=True)
            except FileNotFoundError:
                pass
            except Exception as exc:  # the sweep removes what is left
                log.warning("dataset %s: could not remove %s: %s", dataset_id, path, exc)
        self._forget_uses(dataset_id)

    def open(self, dataset_id: str) -> Any:
        """Return dataset ``dataset_id``'s records, opened for reading in binary (seekable)."""
        return self.fs.open(self._path(dataset_id, "data"), "rb", block_size=_CHUNK)

    # -- jobs that read a dataset ------------------------------------------------------------

    def add_use(self, dataset_id: str, job_id: str) -> None:
        """Record that job ``job_id`` reads dataset ``dataset_id``."""
        self.fs.pipe_file(self._path("uses", dataset_id, job_id), b"")

    def uses(self, dataset_id: str) -> list[str]:
        """Return the ids of the jobs recorded as reading dataset ``dataset_id``."""
        try:
            names = self.fs.ls(self._path("uses", dataset_id), detail=False)
        except FileNotFoundError:
            return []
        return sorted(n.rstrip("/").rsplit("/", 1)[-1] for n in names)

    def _forget_uses(self, dataset_id: str) -> None:
        try:
            self.fs.rm(self._path("uses", dataset_id), recursive=True)
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("dataset %s: could not remove its job list: %s", dataset_id, exc)

    # -- resumable uploads -----------------------------------------------------------------

    def start_upload(self, kind: str, gzip: bool, owner: str | None = None,
                     name: str | None = None) -> Upload:
        """Start a resumable upload of format ``kind``; its parts come with :meth:`append`."""
        self.stored_bytes_left(owner)
        created = time.time()
        upload = Upload(new_dataset_id(), kind, gzip, _iso(created),
                        _iso(created + self.config.dataset_expires), 0, owner, name)
        self._save_upload(upload)
        return upload

    def _save_upload(self, upload: Upload) -> None:
        self._write_json(self._path("uploads", upload.upload_id, "meta.json"), asdict(upload))

    def upload(self, upload_id: str, caller: Any = None) -> Upload:
        """Return upload ``upload_id``; raise UploadNotFound."""
        record = self._read_json(self._path("uploads", upload_id, "meta.json")) if is_dataset_id(
            upload_id) else None
        if record is None or not visible_to(record.get("owner"), caller):
            raise UploadNotFound(f"no upload {upload_id!r}: never started here, completed, aborted or "
                                 f"expired (dataset_expires = {self.config.dataset_expires} s)")
        return Upload(**record)

    def append(self, upload_id: str, offset: int, chunks: Iterable[bytes], caller: Any = None) -> Upload:
        """Store the part that starts at byte ``offset`` of upload ``upload_id``; return the upload.

        A part cut off on the way is not kept: the client asks the offset again (``HEAD``) and resends."""
        upload = self.upload(upload_id, caller)
        if offset != upload.offset:
            raise UploadConflict(f"upload {upload_id} has {upload.offset} bytes; send the part that starts "
                                 f"there (Upload-Offset: {upload.offset}), not at {offset}",
                                 offset=upload.offset)
        limit = self.config.dataset_max_bytes
        caller_left = self.stored_bytes_left(upload.owner)
        path = self._path("uploads", upload_id, f"part-{offset:016d}")
        size = 0
        try:
            with self.fs.open(path, "wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if offset + size > limit:
                        from atoll.service.datasets.errors import DatasetTooLarge

                        raise DatasetTooLarge(f"the upload is larger than dataset_max_bytes = {limit} "
                                              f"bytes", limit=limit)
                    if caller_left is not None and offset + size > caller_left:
                        raise self._over(upload.owner, f"this upload would take it past its limit "
                                                       f"({caller_left} bytes were left); this part "
                                                       f"was not kept")
                    handle.write(chunk)
        except BaseException:
            try:
                self.fs.rm(path)
            except Exception:  # noqa: BLE001 - the upload's expiry removes it
                pass
            raise
        upload.parts.append(offset)
        upload.offset += size
        self._save_upload(upload)
        return upload

    def complete(self, upload_id: str, caller: Any = None) -> Dataset:
        """Check the whole upload as one body and store it as a dataset; the parts are removed."""
        upload = self.upload(upload_id, caller)

        def chunks() -> Iterator[bytes]:
            for offset in upload.parts:
                with self.fs.open(self._path("uploads", upload_id, f"part-{offset:016d}"), "rb") as part:
                    while True:
                        chunk = part.read(_CHUNK)
                        if not chunk:
                            break
                        yield chunk

        try:
            return self.create(chunks(), upload.format, upload.gzip, upload.owner, upload.name)
        finally:
            self.abort(upload_id)

    def abort(self, upload_id: str, caller: Any = None) -> None:
        """Remove upload ``upload_id`` and its parts."""
        if caller is not None:
            self.upload(upload_id, caller)
        try:
            self.fs.rm(self._path("uploads", upload_id), recursive=True)
        except FileNotFoundError:
            pass

    # -- expiry ------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove expired datasets, data without metadata older than ``dataset_expires`` (an upload
        whose process died) and expired resumable uploads; return how many were removed. Lapsed
        reservations (older than ``RESERVATION_SECONDS``) are dropped too, uncounted."""
        removed = 0
        now = time.time()
        for dataset_id in self._ids():
            record = self._read_json(self._path(dataset_id, "meta.json"))
            if record is not None:
                expired = _seconds(record["expires_at"]) <= now
            else:  # the id's first 12 digits are its creation time in milliseconds
                expired = int(dataset_id[:12], 16) / 1000 + self.config.dataset_expires <= now
            if expired:
                self._remove(dataset_id)
                removed += 1
        try:
            uploads = self.fs.ls(self._path("uploads"), detail=False)
        except FileNotFoundError:
            uploads = []
        for name in uploads:
            upload_id = name.rstrip("/").rsplit("/", 1)[-1]
            expires = int(upload_id[:12], 16) / 1000 + self.config.dataset_expires if is_dataset_id(
                upload_id) else None
            if expires is not None and expires <= now:
                self.abort(upload_id)
                removed += 1
        lapsed = now - RESERVATION_SECONDS
        for dataset_id, record in self._reservations():  # of writers that died
            if record is None or record["at"] <= lapsed:
                self.release(dataset_id)
        return removed

    # -- files -------------------------------------------------------------------------------

    def _write_json(self, path: str, value: dict) -> None:
        self.fs.pipe_file(path, json.dumps(value).encode("utf-8"))

    def _read_json(self, path: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("unreadable metadata at %s", path)
            return None


class DatasetWriter:
    """Writes a new dataset from records produced one by one (see :meth:`DatasetStore.writer`)."""

    def __init__(self, store: DatasetStore, kind: str, owner: str | None, job_id: str | None):
        self.store, self.kind, self.owner, self.job_id = store, kind, owner, job_id
        self.dataset_id = new_dataset_id()

    def write(self, records: Iterable[Any], encode: Callable[[Any], bytes]) -> Dataset:
        """Store ``records`` (each turned into one line's bytes by ``encode``); return the dataset."""
        import hashlib

        digest = hashlib.sha256()
        size = count = 0
        limit = self.store.config.dataset_max_bytes
        room = Reservation(self.store, self.dataset_id)
        try:
            room.cover(0)  # a full store refuses before the pipeline runs
            with self.store.fs.open(self.store._path(self.dataset_id, "data"), "wb") as handle:
                for record in records:
                    line = encode(record) + b"\n"
                    size += len(line)
                    count += 1
                    if size > limit:
                        from atoll.service.datasets.errors import DatasetTooLarge

                        raise DatasetTooLarge(f"the results are larger than dataset_max_bytes = {limit} "
                                              f"bytes", limit=limit)
                    room.cover(size)
                    digest.update(line)
                    handle.write(line)
            return self.store._finish(self.dataset_id, self.kind,
                                      Ingested(size, count, digest.hexdigest(), size),
                                      self.owner, None, self.job_id)
        except BaseException:
            self.store._remove(self.dataset_id)
            raise
        finally:
            room.release()


class Reservation:
    """A dataset being written's share of ``datasets_max_total_bytes`` (none without that limit): grown
    as the dataset grows, renewed while it is written, released once it is stored or given up."""

    def __init__(self, store: DatasetStore, dataset_id: str):
        self.store, self.dataset_id = store, dataset_id
        self.limited = store.config.datasets_max_total_bytes is not None
        self.granted, self.at = 0, 0.0

    def cover(self, size: int) -> None:
        """Make sure ``size`` bytes are reserved before they are written; raise DatasetQuotaExceeded
        when the store has no room for them."""
        if not self.limited or (size <= self.granted and time.time() - self.at < RESERVATION_SECONDS / 2):
            return
        self.granted, self.at = self.store.reserve(self.dataset_id, size), time.time()

    def release(self) -> None:
        """Give the reservation back."""
        if self.granted:
            self.store.release(self.dataset_id)
            self.granted = 0
