"""The embedded broker and result store: Celery on the local disk, with no server to install.

:class:`EmbeddedTransport` is kombu's ``filesystem://`` transport made safe for several processes:

* a message is written to a temporary name and renamed into the queue folder, so a consumer never
  reads a half-written file (stock kombu creates the file first and writes it after; a worker that
  reads it in between dies on a JSON decode error — kombu issue 1551);
* a consumer takes a message by renaming it into its own folder under ``consumers/`` on the same
  filesystem, which exactly one process can win; stock kombu moves it to the system temp folder, which
  on another filesystem is a copy and a delete that two workers can both perform;
* a message taken stays in that folder until it is acknowledged (late acknowledgement that survives
  the consumer): each consuming process holds a POSIX record lock on a file in its folder for as long
  as it lives. The kernel drops the lock when the process dies, however it dies (``kill -9`` too), and
  forked pool children never hold it. Every consumer looks about once a second for folders whose
  lock nobody holds and moves their messages back into the queue, so another worker runs them;
* a queue declared ``auto_delete`` (Celery's per-worker control queues and reply queues) is deleted,
  bindings and messages, once no living process consumes it, as RabbitMQ does: broadcasts to a worker
  that died are not written at all instead of piling up in the queue folder;
* an exchange's binding table is created atomically for the same reason as messages.

:class:`FileResultBackend` is Celery's ``file://`` result backend with the same write-then-rename rule,
so ``GET /jobs/<id>`` never reads a result while the worker is writing it, and without the test file
that Celery's writes whenever a backend object is made (once per thread): on a full disk that made
reads fail too, with a message about permissions.

:func:`live_consumers` lists the consuming processes that are alive and their queues; the service's
health check counts workers with it, without sending a message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from celery.backends.filesystem import FilesystemBackend
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

__all__ = ["EmbeddedTransport", "EmbeddedChannel", "FileResultBackend", "TRANSPORT", "RESULT_BACKEND",
           "TMP_PREFIX", "embedded_options", "live_consumers", "redact_url"]

log = logging.getLogger("atoll.broker")

#: kombu transport path used by the Celery app when no ``worker_broker`` is configured
TRANSPORT = "atoll.service.transport:EmbeddedTransport"
#: Celery result backend class path for ``file://`` result URLs
RESULT_BACKEND = "atoll.service.transport:FileResultBackend"

#: names of files being written (renamed into place when whole); never read as messages or records
TMP_PREFIX = ".tmp-"
_LOCK_NAME = "owner.lock"
_QUEUES_NAME = "queues.json"
#: seconds between two looks for the folders of dead consumers (per channel)
RECOVERY_INTERVAL = 1.0


def _write_atomically(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path`` and rename it into place."""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}-{name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _Owner:
    """This process's folder of taken messages, locked for as long as the process lives.

    The folder is made under a temporary name, its lock taken, and only then renamed into place, so
    nobody ever sees an owner folder whose lock is not (yet) held by a living process.
    """

    def __init__(self, root: str):
        os.makedirs(root, exist_ok=True)
        tmp = os.path.join(root, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        os.mkdir(tmp)
        self._fd = os.open(os.path.join(tmp, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        # a POSIX record lock (not flock): released when this process dies, never held by forked children
        fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = os.path.join(root, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
        os.rename(tmp, self.path)
        self._queues: dict[str, list] = {}  # queue -> [consumer count, auto_delete]
        self._lock = threading.Lock()

    def consume(self, queue: str, auto_delete: bool) -> None:
        """Record that this process consumes ``queue``."""
        with self._lock:
            entry = self._queues.setdefault(queue, [0, auto_delete])
            entry[0] += 1
            self._write_queues()

    def cancel(self, queue: str) -> bool:
        """Record that one consumer of ``queue`` in this process stopped; return True if it was the
        last one here."""
        with self._lock:
            entry = self._queues.get(queue)
            if entry is None:
                return False
            entry[0] -= 1
            if entry[0] <= 0:
                del self._queues[queue]
            self._write_queues()
            return queue not in self._queues

    def _write_queues(self) -> None:
        payload = {queue: auto_delete for queue, (_, auto_delete) in self._queues.items()}
        _write_atomically(os.path.join(self.path, _QUEUES_NAME), dumps(payload).encode("utf-8"))


_owners: dict[tuple[str, int], _Owner] = {}
_owners_lock = threading.Lock()


def _own_folder(root: str) -> _Owner:
    """Return this process's owner folder under ``root`` (a forked child makes its own)."""
    key = (root, os.getpid())
    owner = _owners.get(key)
    if owner is None:
        with _owners_lock:
            owner = _owners.get(key)
            if owner is None:
                owner = _owners[key] = _Owner(root)
    return owner


def _is_own(folder: str) -> bool:
    return any(owner.path == folder for (_, pid), owner in list(_owners.items()) if pid == os.getpid())


def _try_lock(folder: str) -> int | None:
    """Return a descriptor holding the lock of a dead owner's ``folder``; None while its owner lives.

    Never call this on one of this process's own folders: closing any descriptor of a locked file
    drops the process's record lock on it.
    """
    try:
        fd = os.open(os.path.join(folder, _LOCK_NAME), os.O_RDWR)
    except OSError:  # being removed by another process that found it dead
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return None
        raise
    return fd


def _read_queues(folder: str) -> dict[str, bool]:
    try:
        with open(os.path.join(folder, _QUEUES_NAME), "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return {}


def _remove_abandoned_starts(root: str, age: float = 60.0) -> None:
    """Remove the temporary folders of consumers that died while making their owner folder.

    Only folders older than ``age`` seconds: a younger one may be a living process between creating
    its lock file and locking it.
    """
    import shutil

    try:
        names = [name for name in os.listdir(root) if name.startswith(TMP_PREFIX)]
    except FileNotFoundError:
        return
    for name in names:
        folder = os.path.join(root, name)
        try:
            if os.stat(folder).st_mtime > time.time() - age:
                continue
        except FileNotFoundError:
            continue
        if not os.path.exists(os.path.join(folder, _LOCK_NAME)):  # died before making its lock file
            shutil.rmtree(folder, ignore_errors=True)
            continue
        fd = _try_lock(folder)
        if fd is not None:
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(fd)


def _owner_folders(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [os.path.join(root, name) for name in names if not name.startswith(TMP_PREFIX)]


def live_consumers(options: dict[str, Any]) -> list[dict[str, Any]]:
    """Return ``{"pid", "queues"}`` of every living process consuming from the embedded broker.

    ``options`` are the broker's transport options (:func:`embedded_options`). Reads files only.
    """
    root = options["consumer_folder"]
    found = []
    for folder in _owner_folders(root):
        if _is_own(folder):
            alive = True
        else:
            fd = _try_lock(folder)
            alive = fd is None and os.path.exists(folder)
            if fd is not None:
                os.close(fd)  # the next consumer's recovery pass removes it
        if alive:
            pid = os.path.basename(folder).partition("-")[0]
            found.append({"pid": int(pid) if pid.isdigit() else None, "queues": sorted(_read_queues(folder))})
    return found


class EmbeddedChannel(filesystem.Channel):
    """A filesystem channel whose put, get and bind are atomic and whose unacknowledged messages
    survive the consuming process (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._taken: dict[str, str] = {}  # delivery tag -> file in this process's owner folder
        self._backlog: dict[str, list[str]] = {}  # queue -> names listed and not yet tried
        self._no_ack_queues: set[str] = set()
        self._auto_delete_queues: set[str] = set()
        self._next_recovery = 0.0

    # -- publishing -----------------------------------------------------------------------

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # nanoseconds of the system-wide monotonic clock: names sort in publishing order
        name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_atomically(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"cannot add a message to {self.data_folder_out!r}: {exc}") from exc

    # -- consuming ------------------------------------------------------------------------

    def _get(self, queue: str) -> Any:
        if monotonic() >= self._next_recovery:
            self._next_recovery = monotonic() + RECOVERY_INTERVAL
            self.recover_dead_consumers()
        owner = _own_folder(self._consumer_folder)
        backlog = self._backlog.get(queue)
        if not backlog:
            backlog = self._backlog[queue] = self._list(queue)
        while backlog:
            name = backlog.pop()
            taken = os.path.join(owner.path, name)
            try:  # rename is atomic: exactly one consumer wins the message
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except OSError:
                continue
            try:
                with open(taken, "rb") as fh:
                    payload = fh.read()
            except OSError as exc:
                raise ChannelError(f"cannot read message {taken!r}: {exc}") from exc
            try:
                message = loads(bytes_to_str(payload))
            except ValueError as exc:  # not a message: set it aside, never stop the consumer
                dead = os.path.join(self._dead_folder, name)
                os.replace(taken, dead)
                log.error("%s is not a message (%s); moved to %s", name, exc, dead)
                continue
            tag = message.get("properties", {}).get("delivery_tag")
            if queue in self._no_ack_queues or tag is None:  # nobody will acknowledge it
                self._settle_file(taken)
            else:
                self._taken[tag] = taken
            return message
        raise filesystem.Empty()

    def _list(self, queue: str) -> list[str]:
        """Return the names of ``queue``'s messages, oldest last.

        One listing serves the following gets until it is used up: listing and sorting a folder of N
        messages for each of them would cost N² with a backlog of N.
        """
        wanted = f"{queue}.msg"
        return sorted((name for name in os.listdir(self.data_folder_in)
                       if not name.startswith(TMP_PREFIX) and name.partition(".")[2] == wanted),
                      reverse=True)

    def queue_declare(self, queue: str | None = None, passive: bool = False, **kwargs: Any) -> Any:
        """Declare ``queue``, remembering whether it is ``auto_delete``."""
        declared = super().queue_declare(queue, passive, **kwargs)
        if kwargs.get("auto_delete"):
            self._auto_delete_queues.add(declared.queue)
        return declared

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> Any:
        """Consume ``queue``; record it in this process's owner folder."""
        if no_ack:
            self._no_ack_queues.add(queue)
        _own_folder(self._consumer_folder).consume(queue, queue in self._auto_delete_queues)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Stop a consumer; forget its queue in this process's owner folder."""
        queue = self._tag_to_queue.get(consumer_tag) if consumer_tag in self._consumers else None
        cancelled = super().basic_cancel(consumer_tag)
        if queue is not None and _own_folder(self._consumer_folder).cancel(queue) \
                and queue in self._auto_delete_queues and not self._consumed_elsewhere(queue):
            self._delete_queue(queue)  # its last consumer left: deleted, as RabbitMQ does
        return cancelled

    def _consumed_elsewhere(self, queue: str) -> bool:
        return any(queue in c["queues"] for c in live_consumers(self.transport_options)
                   if c["pid"] != os.getpid())

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Return the next message of ``queue`` or None (removed at once when ``no_ack``)."""
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Acknowledge a message: only now is its file removed."""
        super().basic_ack(delivery_tag, multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Reject a message: back into its queue with ``requeue``, else removed."""
        super().basic_reject(delivery_tag, requeue)
        self._settle(delivery_tag)

    def _restore(self, message: Any) -> None:
        # a message this process took goes back under its old name: first in line, and never twice
        taken = self._taken.pop(message.delivery_tag, None)
        if taken is None:
            super()._restore(message)
            return
        try:
            os.rename(taken, os.path.join(self.data_folder_out, os.path.basename(taken)))
        except OSError as exc:
            raise ChannelError(f"cannot return message {taken!r} to its queue: {exc}") from exc

    def _settle(self, delivery_tag: str) -> None:
        taken = self._taken.pop(delivery_tag, None)
        if taken is not None:
            self._settle_file(taken)

    def _settle_file(self, taken: str) -> None:
        try:
            if self.store_processed:
                os.replace(taken, os.path.join(self.processed_folder, os.path.basename(taken)))
            else:
                os.unlink(taken)
        except FileNotFoundError:
            pass

    # -- dead consumers -------------------------------------------------------------------

    def recover_dead_consumers(self) -> int:
        """Return the messages of dead consumers to their queues and delete the auto-delete queues
        nobody living consumes; return how many messages went back."""
        root = self._consumer_folder
        dead: list[tuple[str, int]] = []
        living_queues: set[str] = set()
        for folder in _owner_folders(root):
            if _is_own(folder):
                living_queues.update(_read_queues(folder))
                continue
            fd = _try_lock(folder)
            if fd is None:
                living_queues.update(_read_queues(folder))
            else:
                dead.append((folder, fd))
        restored = 0
        for folder, fd in dead:
            try:
                restored += self._recover(folder, living_queues)
            finally:
                os.close(fd)
        _remove_abandoned_starts(root)
        return restored

    def _recover(self, folder: str, living_queues: set[str]) -> int:
        restored = 0
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.endswith(".msg"):
                try:
                    os.rename(os.path.join(folder, name), os.path.join(self.data_folder_out, name))
                    restored += 1
                except FileNotFoundError:
                    pass
        for queue, auto_delete in _read_queues(folder).items():
            if auto_delete and queue not in living_queues:
                self._delete_queue(queue)
        for name in (_QUEUES_NAME, _LOCK_NAME):
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(folder)
        except OSError:
            pass
        if restored:
            log.warning("a consumer of the embedded broker died: %d message(s) it had taken went back "
                        "to their queue", restored)
        return restored

    def _delete_queue(self, queue: str) -> None:
        """Unbind ``queue`` from every exchange and remove its messages."""
        for table in self.control_folder.glob("*.exchange"):
            exchange = table.name[: -len(".exchange")]
            for routing_key, pattern, bound in self.get_table(exchange):
                if bound == queue:
                    self._delete(queue, exchange, routing_key, pattern)
        self._purge(queue)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        table = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        if not table.exists():
            # create the table file whole, never empty-then-written; a concurrent creator's link fails
            tmp = table.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{table.name}")
            tmp.write_bytes(str_to_bytes(dumps([])))
            try:
                os.link(tmp, table)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)

    @property
    def _consumer_folder(self) -> str:
        return self.transport_options.get("consumer_folder") or os.path.join(
            os.path.dirname(os.path.abspath(self.data_folder_in)), "consumers")

    @property
    def _dead_folder(self) -> str:
        folder = self.transport_options.get("dead_folder") or os.path.join(
            os.path.dirname(os.path.abspath(self.data_folder_in)), "dead")
        os.makedirs(folder, exist_ok=True)
        return folder


class EmbeddedTransport(filesystem.Transport):
    """kombu transport of atoll's embedded broker (see the module docstring); polls every 10 ms."""

    Channel = EmbeddedChannel
    polling_interval = 0.01
    driver_type = "filesystem"
    driver_name = "atoll-embedded"


def embedded_options(state_dir: str | os.PathLike) -> dict[str, Any]:
    """Return the kombu transport options that put the embedded broker under ``state_dir``."""
    root = Path(state_dir).resolve() / "broker"
    folders = {"queue": root / "queue", "processed": root / "processed", "control": root / "control",
               "consumers": root / "consumers", "dead": root / "dead"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "consumer_folder": str(folders["consumers"]),
        "dead_folder": str(folders["dead"]),
        "store_processed": False,
        "polling_interval": 0.01,
    }


class FileResultBackend(FilesystemBackend):
    """Celery's ``file://`` result backend with atomic writes (readers never see a partial result) and
    records that expire ``result_expires`` seconds after their last write.

    A record past its time reads as missing at once; :meth:`cleanup` removes the files (atoll's
    workers call it periodically, see :mod:`atoll.service.jobs.queue`).
    """

    def _do_directory_test(self, key: bytes) -> None:
        """Check that the folder exists and can be read; write nothing.

        Celery writes, reads and removes a test file here, and Celery makes a backend object per
        thread: on a full disk every new thread of a web process then failed to *read* records, with
        ImproperlyConfigured "make sure that it exists and has the correct permissions". A write that
        fails later raises its own error (no space, permission denied), which the job store reports.
        """
        folder = os.fsdecode(self.path)
        if not os.path.isdir(folder):
            raise FileNotFoundError(errno.ENOENT, "the job store's folder does not exist", folder)
        if not os.access(folder, os.R_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "the job store's folder cannot be read", folder)

    def set(self, key: bytes, value: Any) -> None:
        """Store ``value`` under ``key`` by writing a temporary file and renaming it into place."""
        _write_atomically(os.fsdecode(self._filename(key)),
                          value if isinstance(value, bytes) else str_to_bytes(value))

    def get(self, key: bytes) -> bytes | None:
        """Return the record stored under ``key``, or None when there is none or it has expired."""
        path = os.fsdecode(self._filename(key))
        try:
            with open(path, "rb") as fh:
                if self._expired(os.fstat(fh.fileno()).st_mtime, time.time()):
                    return None
                return fh.read()
        except FileNotFoundError:
            return None

    def cleanup(self) -> int:
        """Remove the records older than ``result_expires`` (and temporary files a crashed writer
        left behind); return how many files were removed."""
        now = time.time()
        removed = 0
        folder = os.fsdecode(self.path)
        for name in os.listdir(folder):
            is_record = name.startswith(tuple(map(os.fsdecode, (
                self.task_keyprefix, self.group_keyprefix, self.chord_keyprefix))))
            if not (is_record or name.startswith(TMP_PREFIX)):
                continue
            path = os.path.join(folder, name)
            try:
                if self._expired(os.stat(path).st_mtime, now):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:  # rewritten (renamed over) or removed meanwhile
                pass
        return removed

    def _expired(self, mtime: float, now: float) -> bool:
        return bool(self.expires) and mtime < now - self.expires


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (for logs and error messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
