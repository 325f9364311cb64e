"""What the dataset store refuses: domain exceptions that ``atoll.service.http.errors.STATUSES`` answers."""

from __future__ import annotations

from typing import Any

__all__ = ["DatasetError", "DatasetNotFound", "DatasetInvalid", "DatasetEmpty", "DatasetTooLarge",
           "DatasetQuotaExceeded", "StoredBytesExceeded", "DatasetInUse", "DatasetFormatUnsupported",
           "DataRefRefused", "DatasetStoreUnavailable", "UploadNotFound", "UploadConflict"]


class DatasetError(Exception):
    """A refusal of the dataset store; ``extra`` holds JSON fields for the error answer."""

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.message = message
        self.extra = extra


class DatasetNotFound(DatasetError):
    """No dataset of that id (never stored, expired, deleted, or another caller's)."""


class DatasetInvalid(DatasetError):
    """The body is not what its Content-Type says (a line that is not JSON, broken gzip); nothing kept."""


class DatasetEmpty(DatasetInvalid):
    """The body holds no record."""


class DatasetTooLarge(DatasetError):
    """The body, sent or decompressed, is larger than ``dataset_max_bytes``."""


class DatasetQuotaExceeded(DatasetError):
    """Storing it would take the store past ``datasets_max_total_bytes``."""


class StoredBytesExceeded(DatasetError):
    """The caller keeps as many bytes as its ``max_stored_bytes`` allows, or this dataset would take it
    past them; nothing was stored."""

    #: the ``reason`` this refusal counts under in ``atoll_rejected_total``
    rejection = "stored_bytes"


class DatasetInUse(DatasetError):
    """A queued or running job reads the dataset."""


class DatasetFormatUnsupported(DatasetError):
    """A Content-Type or Content-Encoding the store does not take."""


class DataRefRefused(DatasetError):
    """A run's ``{"data": {...}}`` reference that is malformed or points outside what is allowed."""


class DatasetStoreUnavailable(DatasetError):
    """The store could not be read or written."""


class UploadNotFound(DatasetError):
    """No resumable upload of that id (never created, completed, aborted or expired)."""


class UploadConflict(DatasetError):
    """A part sent at an offset other than the upload's current one."""
