"""Datasets over HTTP: upload (whole or resumable), list, read, download and delete.

=========================================  =======================================================
``POST /datasets``                         the body, streamed: JSON lines, text lines or a JSON array
                                           (by ``Content-Type``), maybe ``Content-Encoding: gzip``;
                                           201 with ``Location`` and the dataset
``GET /datasets``                          newest first; ``limit=`` (50, at most 500), ``cursor=``
``GET /datasets/<id>``                     the dataset, with the ids of the jobs that read it
``DELETE /datasets/<id>``                  204; 409 while a queued or running job reads it
``GET /datasets/<id>/data``                the records, streamed; ``Range: bytes=a-b`` answers 206
``POST /datasets/uploads``                 start a resumable upload ``{"format", "gzip"?}``: 201
``HEAD /datasets/uploads/<u>``             its ``Upload-Offset`` (bytes received so far)
``PATCH /datasets/uploads/<u>``            the part starting at ``Upload-Offset``: 204, new offset
``POST /datasets/uploads/<u>/complete``    check the whole upload and store it: 201 with the dataset
``DELETE /datasets/uploads/<u>``           abandon it: 204, its parts removed
=========================================  =======================================================

Bodies are read from ``wsgi.input`` in chunks (never whole) and are bounded by ``dataset_max_bytes``,
not ``max_request_bytes``; ``atoll serve``'s web server hands them over as a stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, g, request, url_for
from werkzeug.wsgi import get_input_stream

from atoll.service.datasets.errors import DatasetFormatUnsupported, DatasetInUse
from atoll.service.datasets.ingest import FORMATS, format_of
from atoll.service.datasets.store import DatasetStore
from atoll.service.http.errors import ApiError

__all__ = ["blueprint", "STREAMED", "caller", "LIST_LIMIT_MAX"]

blueprint = Blueprint("datasets", __name__)

#: (method, path prefix) of the requests whose bodies the web server streams instead of buffering
STREAMED = (("POST", "/datasets"), ("PATCH", "/datasets/uploads/"))
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 500
_CHUNK = 256 * 1024


def caller() -> Any:
    """Return the caller of this request (None without named callers)."""
    return getattr(g, "caller", None)


def _owner() -> str | None:
    who = caller()
    return who.name if who is not None else None


def _store() -> DatasetStore:
    return current_app.extensions["atoll"].datasets()


def _body() -> Iterator[bytes]:
    """Yield the request body in chunks, as it arrives."""
    stream = get_input_stream(request.environ, max_content_length=None)
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _gzip() -> bool:
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise DatasetFormatUnsupported(f"Content-Encoding {encoding!r} is not supported; send the body as "
                                       f"it is or with 'Content-Encoding: gzip'")
    return encoding != "identity"


def _kind(mimetype: str) -> str:
    kind = format_of(mimetype or "")
    if kind is None:
        raise DatasetFormatUnsupported(f"Content-Type {mimetype or 'none'!r} is not a dataset format; use "
                                       f"one of {', '.join(FORMATS)}")
    return kind


def _created(dataset: Any) -> Response:
    location = url_for("datasets.get_dataset", dataset_id=dataset.dataset_id, _external=True)
    response = current_app.json.response(dataset.public())
    response.status_code = 201
    response.headers["Location"] = location
    return response


@blueprint.post("/datasets")
def upload() -> Response:
    """Store the streamed body as a new dataset: 201 with its metadata."""
    kind, gzip = _kind(request.mimetype), _gzip()
    name = request.args.get("name")
    return _created(_store().create(_body(), kind, gzip, _owner(), name))


@blueprint.get("/datasets")
def list_datasets() -> Response:
    """Return ``{"datasets": [...], "next": cursor}``, newest first."""
    try:
        limit = int(request.args.get("limit", LIST_LIMIT_DEFAULT))
    except ValueError:
        raise ApiError(400, "InvalidLimit",
                       f"limit must be a whole number from 1 to {LIST_LIMIT_MAX}") from None
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise ApiError(400, "InvalidLimit", f"limit must be a whole number from 1 to {LIST_LIMIT_MAX}")
    cursor = request.args.get("cursor") or None
    from atoll.service.datasets.store import is_dataset_id

    if cursor is not None and not is_dataset_id(cursor):
        raise ApiError(400, "InvalidCursor", "cursor must be the 'next' of an earlier page")
    store = _store()
    page, after = store.list(limit, cursor, caller())
    return current_app.json.response({"datasets": [{**d.public(), "jobs": store.uses(d.dataset_id)}
                                                   for d in page], "next": after})


@blueprint.get("/datasets/<dataset_id>")
def get_dataset(dataset_id: str) -> Response:
    """Return the dataset's metadata and the jobs that read it."""
    store = _store()
    dataset = store.get(dataset_id, caller())
    return current_app.json.response({**dataset.public(), "jobs": store.uses(dataset_id)})


def _running_users(store: DatasetStore, dataset_id: str) -> list[str]:
    system = current_app.extensions.get("atoll.jobs")
    if system is None:
        return []
    busy = []
    for job_id in store.uses(dataset_id):
        job = system.get(job_id)
        if job is not None and not job.status.finished:
            busy.append(job_id)
    return busy


@blueprint.delete("/datasets/<dataset_id>")
def delete_dataset(dataset_id: str) -> Response:
    """Delete the dataset: 204; 409 while a queued or running job reads it."""
    store = _store()
    store.get(dataset_id, caller())
    busy = _running_users(store, dataset_id)
    if busy:
        raise DatasetInUse(f"dataset {dataset_id} is read by {len(busy)} queued or running job(s): "
                           f"{', '.join(busy[:10])}; cancel them or wait until they finish", jobs=busy)
    store.delete(dataset_id, caller())
    return Response(status=204)


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return (first, last) byte of a single ``bytes=`` range, None for the whole; 416 when unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # several ranges or another unit: the whole body, as RFC 9110 allows
    first_text, _, last_text = spec.strip().partition("-")
    try:
        if not first_text:
            length = int(last_text)
            first, last = max(size - length, 0), size - 1
        else:
            first = int(first_text)
            last = min(int(last_text), size - 1) if last_text else size - 1
    except ValueError:
        return None
    if first < 0 or first >= size or last < first:
        raise ApiError(416, "RangeNotSatisfiable",
                       f"the range {spec!r} is outside the dataset's {size} bytes",
                       headers={"Content-Range": f"bytes */{size}"})
    return first, last


@blueprint.get("/datasets/<dataset_id>/data")
def get_data(dataset_id: str) -> Response:
    """Stream the dataset's records (one a line); ``Range`` answers 206 with the part."""
    store = _store()
    dataset = store.get(dataset_id, caller())
    wanted = _range(request.headers.get("Range"), dataset.bytes)
    first, last = wanted if wanted is not None else (0, dataset.bytes - 1)
    handle = store.open(dataset_id)

    def chunks() -> Iterator[bytes]:
        try:
            handle.seek(first)
            left = last - first + 1
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    mimetype = "application/x-ndjson" if dataset.format == "jsonl" else "text/plain; charset=utf-8"
    response = Response(chunks(), status=206 if wanted is not None else 200, mimetype=mimetype)
    response.headers["Content-Length"] = str(last - first + 1)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = f'"{dataset.sha256}"'
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{dataset.bytes}"
    return response


# -- resumable uploads ---------------------------------------------------------------------------

def _upload_answer(upload: Any, status: int) -> Response:
    url = url_for("datasets.append_part", upload_id=upload.upload_id, _external=True)
    response = current_app.json.response({**upload.public(), "upload_url": url})
    response.status_code = status
    response.headers["Upload-Offset"] = str(upload.offset)
    response.headers["Location"] = url
    return response


@blueprint.post("/datasets/uploads")
def start_upload() -> Response:
    """Start a resumable upload: ``{"format": "jsonl"|"text"|"json", "gzip"?: bool, "name"?: str}``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequest", 'send {"format": "jsonl" | "text" | "json", "gzip"?: bool}')
    kind = body.get("format", "jsonl")
    if kind not in ("jsonl", "text", "json"):
        raise ApiError(400, "InvalidRequest", f'"format" must be jsonl, text or json; got {kind!r}')
    gzip = body.get("gzip", False)
    if not isinstance(gzip, bool):
        raise ApiError(400, "InvalidRequest", '"gzip" must be true or false')
    name = body.get("name")
    upload = _store().start_upload(kind, gzip, _owner(), name if isinstance(name, str) else None)
    return _upload_answer(upload, 201)


@blueprint.route("/datasets/uploads/<upload_id>", methods=["GET", "HEAD"])
def get_upload(upload_id: str) -> Response:
    """Return the upload and, in ``Upload-Offset``, the bytes received so far."""
    return _upload_answer(_store().upload(upload_id, caller()), 200)


@blueprint.patch("/datasets/uploads/<upload_id>")
def append_part(upload_id: str) -> Response:
    """Store the part that starts at ``Upload-Offset``: 204 with the new ``Upload-Offset``."""
    try:
        offset = int(request.headers["Upload-Offset"])
    except (KeyError, ValueError):
        raise ApiError(400, "InvalidOffset", "send the part's first byte's offset in 'Upload-Offset' "
                                             "(HEAD the upload to learn it)") from None
    upload = _store().append(upload_id, offset, _body(), caller())
    return Response(status=204, headers={"Upload-Offset": str(upload.offset)})


@blueprint.post("/datasets/uploads/<upload_id>/complete")
def complete_upload(upload_id: str) -> Response:
    """Check the whole upload and store it as a dataset: 201 with its metadata."""
    return _created(_store().complete(upload_id, caller()))


@blueprint.delete("/datasets/uploads/<upload_id>")
def abort_upload(upload_id: str) -> Response:
    """Abandon the upload: 204, its parts removed."""
    _store().abort(upload_id, caller())
    return Response(status=204)
