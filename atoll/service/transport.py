"""The embedded broker and result store: Celery on the local disk, with no server to install.

:class:`EmbeddedTransport` is kombu's ``filesystem://`` transport made safe for several processes:

* a message is written to a temporary name and renamed into the queue folder, so a consumer never
  reads a half-written file (stock kombu creates the file first and writes it after; a worker that
  reads it in between dies on a JSON decode error — kombu issue 1551);
* a consumer claims a message by renaming it into a claim folder on the same filesystem, which exactly
  one process can win; stock kombu moves it to the system temp folder, which on another filesystem is
  a copy and a delete that two workers can both perform;
* an exchange's binding table is created atomically for the same reason as messages.

:class:`FileResultBackend` is Celery's ``file://`` result backend with the same write-then-rename rule,
so ``GET /jobs/<id>`` never reads a result while the worker is writing it.

Unacknowledged messages are held in the worker's main process: a job whose pool child is killed is
re-queued (late acknowledgement), but a job whose worker *main process* is killed is lost. Deployments
that need redelivery in that case use RabbitMQ (``worker_broker: amqp://...``).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from celery.backends.filesystem import FilesystemBackend
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger("atoll.jobs")

__all__ = ["EmbeddedTransport", "EmbeddedChannel", "FileResultBackend", "TRANSPORT", "RESULT_BACKEND",
           "embedded_options", "redact_url"]

#: kombu transport path used by the Celery app when no ``worker_broker`` is configured
TRANSPORT = "atoll.service.transport:EmbeddedTransport"
#: Celery result backend class path for ``file://`` result URLs
RESULT_BACKEND = "atoll.service.transport:FileResultBackend"

_TMP_PREFIX = ".tmp-"


def _write_atomically(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path`` and rename it into place."""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{uuid.uuid4().hex}-{name}")
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


class EmbeddedChannel(filesystem.Channel):
    """A filesystem channel whose put, get and bind are atomic across processes."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_atomically(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"cannot add a message to {self.data_folder_out!r}: {exc}") from exc

    def _get(self, queue: str) -> Any:
        wanted = f"{queue}.msg"
        claims = self._claim_folder
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(_TMP_PREFIX) or name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(claims, f"{os.getpid()}-{name}")
            try:  # rename is atomic: exactly one consumer wins the message
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue
            try:
                with open(claimed, "rb") as fh:
                    payload = fh.read()
                try:
                    message = loads(bytes_to_str(payload))
                except ValueError as exc:  # not a message: set it aside, never stop the consumer
                    dead = os.path.join(self._dead_folder, name)
                    os.replace(claimed, dead)
                    log.error("broker: %s is not a message (%s); moved to %s", name, exc, dead)
                    continue
                if self.store_processed:
                    os.replace(claimed, os.path.join(self.processed_folder, name))
                else:
                    os.unlink(claimed)
            except OSError as exc:
                raise ChannelError(f"cannot read message {claimed!r}: {exc}") from exc
            return message
        raise filesystem.Empty()

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        table = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        if not table.exists():
            # create the table file whole, never empty-then-written; a concurrent creator's link fails
            tmp = table.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}-{table.name}")
            tmp.write_bytes(str_to_bytes(dumps([])))
            try:
                os.link(tmp, table)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)

    @property
    def _dead_folder(self) -> str:
        folder = self.transport_options.get("dead_folder") or os.path.join(
            os.path.dirname(os.path.abspath(self.data_folder_in)), "dead")
        os.makedirs(folder, exist_ok=True)
        return folder

    @property
    def _claim_folder(self) -> str:
        folder = self.transport_options.get("claim_folder") or os.path.join(
            os.path.dirname(os.path.abspath(self.data_folder_in)), "claimed")
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
               "claimed": root / "claimed", "dead": root / "dead"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "claim_folder": str(folders["claimed"]),
        "dead_folder": str(folders["dead"]),
        "store_processed": False,
        "polling_interval": 0.01,
    }


class FileResultBackend(FilesystemBackend):
    """Celery's ``file://`` result backend with atomic writes (readers never see a partial result)."""

    def set(self, key: bytes, value: Any) -> None:
        """Store ``value`` under ``key`` by writing a temporary file and renaming it into place."""
        _write_atomically(os.fsdecode(self._filename(key)),
                          value if isinstance(value, bytes) else str_to_bytes(value))


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (for logs and error messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
