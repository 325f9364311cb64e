"""Python client of the atoll HTTP API::

    client = Client("http://127.0.0.1:8000", token=None)
    client.run("wordcount", ["a b", "b"])        # -> [['a', 1], ['b', 2]]

A failed call raises :class:`RemoteError` carrying the remote error's name, message, traceback, stage,
item and the HTTP status.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from atoll.dead_letters import RunResult
from atoll.errors import AtollError

__all__ = ["Client", "RemoteError", "Job", "Dataset"]

#: bytes sent per part of a resumable upload
UPLOAD_PART_BYTES = 8 * 1024 * 1024
#: tries of one part before an upload gives up (the upload can be resumed later by its id)
UPLOAD_TRIES = 5


class RemoteError(AtollError):
    """The service answered with an error: ``name``, ``message``, ``traceback``, ``stage``, ``item``,
    ``status`` (HTTP) and the whole ``payload`` (the ``error`` object)."""

    def __init__(self, name: str, message: str, status: int | None = None, traceback: str = "",
                 stage: dict | None = None, item: Any = None, payload: dict | None = None):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.status = status
        self.traceback = traceback or ""
        self.stage = stage
        self.item = item
        self.payload = payload or {}
        if self.traceback and hasattr(self, "add_note"):
            self.add_note("Remote traceback:\n" + self.traceback.rstrip())

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.name}{status}: {self.message}"

    @classmethod
    def from_error(cls, error: dict, status: int | None = None) -> RemoteError:
        """Return the RemoteError for an ``{"name", "message", ...}`` error object."""
        return cls(str(error.get("name", "RemoteError")), str(error.get("message", "")), status,
                   error.get("traceback") or "", error.get("stage"), error.get("item"), error)


class Client:
    """Calls a running atoll service at ``url``; ``token`` is sent as ``Authorization: Bearer``."""

    #: the most jobs :meth:`list_jobs` asks for in one request (the service answers at most 500)
    list_page_size = 500

    def __init__(self, url: str, token: str | None = None, timeout: float | None = 60.0):
        import requests

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,),
                params: dict | None = None, headers: dict | None = None, raw: bool = False) -> Any:
        """Send one request; return the decoded JSON answer (its text with ``raw``) or raise
        :class:`RemoteError`."""
        from atoll.encoding import to_json

        headers = dict(headers or {})
        data = None
        if body is not None:
            data = to_json(body, path="request").encode("utf-8")
            headers["Content-Type"] = "application/json"
        response = self.session.request(method, self.url + path, data=data, headers=headers,
                                        params=params, timeout=self.timeout)
        if raw and response.status_code in expect:
            return response.text
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code in expect and payload is not None:
            return payload
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise RemoteError.from_error(payload["error"], response.status_code)
        text = response.text[:500] if payload is None else json.dumps(payload)[:500]
        raise RemoteError("HTTPError", f"{method} {path} answered {response.status_code} "
                                       f"{response.reason}: {text}", response.status_code)

    def _pipeline_path(self, name: str) -> str:
        return "/pipelines/" + quote(name.strip("/"), safe="")

    # -- the API -----------------------------------------------------------------------------

    def run(self, name: str, data: Any, results_to: str | None = None, on_error: str | None = None,
            max_errors: int | float | None = None, **kwargs: Any) -> Any:
        """Run pipeline ``name`` on ``data`` (a :class:`~atoll.client.Dataset` or a list of them: by
        reference) with runtime ``kwargs``; return its results, or with ``results_to="dataset"`` the
        :class:`~atoll.client.Dataset` holding them.

        With ``on_error`` (and ``max_errors``, see :mod:`atoll.dead_letters`) the answer is a
        :class:`~atoll.dead_letters.RunResult` whose ``errors`` are the dead letters as JSON objects; a
        run whose pipeline was registered with a policy answers one too."""
        body: dict[str, Any] = {"data": _data(data), **_policy(on_error, max_errors)}
        if kwargs:
            body["kwargs"] = kwargs
        if results_to is not None:
            body["results_to"] = results_to
        answer = self.request("POST", self._pipeline_path(name), body)
        results = answer["results"] if results_to is None else Dataset(
            self, answer["results_dataset"], answer.get("dataset"))
        dropped = answer.get("element_errors")
        if dropped is None and on_error is None and max_errors is None:
            return results
        dropped = dropped or {"dead_letters": [], "skipped": 0, "by_stage": {}}
        return RunResult(results, dropped["dead_letters"], dropped["skipped"], dropped["by_stage"])

    def submit(self, name: str, data: Any, callback: str | None = None, idempotency_key: str | None = None,
               results_to: str | None = None, on_error: str | None = None,
               max_errors: int | float | None = None, **kwargs: Any) -> Job:
        """Queue pipeline ``name`` on ``data`` (a :class:`~atoll.client.Dataset` too) as an asynchronous
        job; return its :class:`Job`.

        With ``callback`` the service also POSTs the outcome to that URL. With ``idempotency_key``,
        submitting again with the same key and body returns the same job instead of a new one. With
        ``results_to="dataset"`` the results are stored as a dataset (``Job.result()`` returns it).
        ``on_error`` and ``max_errors`` as for :meth:`run`; the job's dead letters are
        :meth:`Job.dead_letters`.
        """
        body: dict[str, Any] = {"data": _data(data), **_policy(on_error, max_errors)}
        if kwargs:
            body["kwargs"] = kwargs
        if results_to is not None:
            body["results_to"] = results_to
        if callback is not None:
            body["callback"] = callback
        else:
            body["async"] = True
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        answer = self.request("POST", self._pipeline_path(name), body, expect=(202,), headers=headers)
        return Job(self, answer["job_id"], answer.get("status_url"))

    def map(self, name: str, inputs: Iterable[Any], timeout: float | None = None,
            **kwargs: Any) -> list[Any]:
        """Submit one job per input, wait for all; return their results in input order.

        The first failed job raises its :class:`RemoteError`; ``timeout`` bounds the whole wait.
        """
        jobs = [self.submit(name, data, **kwargs) for data in inputs]
        deadline = None if timeout is None else time.monotonic() + timeout
        return [job.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
                for job in jobs]

    def rerun(self, job_id: str, idempotency_key: str | None = None) -> Job:
        """Queue a new job with finished job ``job_id``'s request (same data, kwargs and callback);
        return its :class:`Job`, whose record's ``rerun_of`` is ``job_id``.

        Raises :class:`RemoteError`: 404 for an unknown job, 409 for one not finished, 410 when its
        request is no longer kept. ``idempotency_key`` works as for :meth:`submit`.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        answer = self.request("POST", f"/jobs/{quote(job_id, safe='')}/rerun", None, expect=(202,),
                              headers=headers)
        return Job(self, answer["job_id"], answer.get("status_url"))

    def job(self, job_id: str) -> Job:
        """Return the :class:`Job` of a job id returned earlier."""
        return Job(self, job_id)

    def list_jobs(self, status: str | None = None, pipeline: str | None = None,
                  limit: int = 50) -> list[Job]:
        """Return up to ``limit`` jobs, newest first, optionally only those with ``status`` or of
        ``pipeline`` (each :class:`Job` holds its record, without the results). A ``limit`` larger
        than one page (:attr:`list_page_size`) is gathered from several pages, following the cursors."""
        found: list[Job] = []
        cursor = None
        while len(found) < limit:
            params = {"limit": min(self.list_page_size, limit - len(found)), "status": status,
                      "pipeline": pipeline,
                      "cursor": cursor}
            page = self.request("GET", "/jobs", params={k: v for k, v in params.items() if v is not None})
            for record in page["jobs"]:
                job = Job(self, record["job_id"], record.get("status_url"))
                job._summary = record
                found.append(job)
            cursor = page["next"]
            if cursor is None:
                break
        return found

    # -- datasets ----------------------------------------------------------------------------

    def upload(self, source: str | os.PathLike | Iterable[Any], format: str | None = None,
               gzip: bool | None = None, progress: bool = False, resume: str | None = None,
               name: str | None = None, part_bytes: int = UPLOAD_PART_BYTES) -> Dataset:
        """Upload a file (JSON lines, text lines or a JSON array; ``.gz`` sent as gzip) or an iterable
        of records (JSON lines; strings as text lines with ``format="text"``); return its
        :class:`~atoll.client.Dataset`.

        The body goes in parts of a resumable upload: a part cut off (connection lost) is sent again
        from the offset the service has; an upload that fails for good raises with its ``upload_id``
        in the message, and ``resume=upload_id`` continues it with the same file. ``progress`` shows a
        progress bar (tqdm).
        """
        if isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            gzip = path.endswith(".gz") if gzip is None else gzip
            stem = path[:-3] if path.endswith(".gz") else path
            if format is None:
                format = "json" if stem.endswith(".json") else "text" if stem.endswith(".txt") else "jsonl"
            total: int | None = os.path.getsize(path)
            chunks = _file_parts(path, part_bytes)
        else:
            format, gzip, total = format or "jsonl", bool(gzip), None
            chunks = _record_parts(source, format, part_bytes)
        if resume is None:
            upload = self.request("POST", "/datasets/uploads", {"format": format, "gzip": gzip,
                                                                **({"name": name} if name else {})},
                                  expect=(201,))
            upload_id, offset = upload["upload_id"], 0
        else:
            upload_id = resume
            offset = int(self.request("GET", f"/datasets/uploads/{quote(resume, safe='')}")["offset"])
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc="upload")
        try:
            sent = 0
            for part in chunks:
                if sent + len(part) <= offset:  # resumed: the service has this part already
                    sent += len(part)
                    continue
                if sent < offset:
                    part, sent = part[offset - sent:], offset
                offset = self._send_part(upload_id, offset, part)
                sent = offset
                if bar is not None:
                    bar.update(len(part))
        finally:
            if bar is not None:
                bar.close()
        meta = self.request("POST", f"/datasets/uploads/{quote(upload_id, safe='')}/complete", expect=(201,))
        return Dataset(self, meta["dataset_id"], meta)

    def _send_part(self, upload_id: str, offset: int, part: bytes) -> int:
        """Send ``part`` at ``offset``, again after a cut connection from the offset the service has;
        return the new offset."""
        import requests

        path = f"{self.url}/datasets/uploads/{quote(upload_id, safe='')}"
        for attempt in range(UPLOAD_TRIES):
            try:
                response = self.session.patch(path, data=part, timeout=self.timeout, headers={
                    "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            except requests.RequestException as exc:
                if attempt + 1 == UPLOAD_TRIES:
                    raise RemoteError("UploadInterrupted", f"the upload was cut off ({exc}); resume it with "
                                                           f"upload(..., resume={upload_id!r})") from exc
                time.sleep(min(2 ** attempt * 0.2, 5))
                have = int(self.request("GET", f"/datasets/uploads/{quote(upload_id, safe='')}")["offset"])
                if have == offset + len(part):  # it arrived; only the answer was lost
                    return have
                continue
            if response.status_code == 204:
                return int(response.headers["Upload-Offset"])
            payload = response.json() if response.content else {}
            raise RemoteError.from_error(payload.get("error") or {"name": "HTTPError",
                                                                  "message": response.text[:300]},
                                         response.status_code)
        raise AssertionError("unreachable")

    def datasets(self, limit: int = 500) -> list[Dataset]:
        """Return up to ``limit`` stored datasets, newest first."""
        found: list[Dataset] = []
        cursor = None
        while len(found) < limit:
            params = {"limit": min(500, limit - len(found)), **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", "/datasets", params=params)
            found.extend(Dataset(self, meta["dataset_id"], meta) for meta in page["datasets"])
            cursor = page["next"]
            if cursor is None:
                break
        return found

    def dataset(self, dataset_id: str) -> Dataset:
        """Return the :class:`~atoll.client.Dataset` of an id (its metadata read now)."""
        return Dataset(self, dataset_id, self.request("GET", f"/datasets/{quote(dataset_id, safe='')}"))

    def pipelines(self) -> list[dict]:
        """Return the registered pipelines: name, endpoint, stages, kwargs, sig."""
        return self.request("GET", "/pipelines")["pipelines"]

    def health(self) -> dict:
        """Return the service's health report (also when it answers 503)."""
        return self.request("GET", "/health", expect=(200, 503))

    def openapi(self) -> dict:
        """Return the service's OpenAPI document."""
        return self.request("GET", "/openapi.json")


#: the statuses after which a job never changes (the service's ``JobStatus.finished``; the client
#: imports nothing of the service, tests/test_client.py checks that the two agree)
FINISHED = ("succeeded", "failed", "cancelled")


class Job:
    """An asynchronous job on the service, polled through ``GET /jobs/<id>``: the client's handle
    (``atoll.Job``). The record it reads is the service's :class:`atoll.service.jobs.model.Job`.

    ``status()`` is ``queued``, ``running``, ``retrying``, ``succeeded``, ``failed`` or ``cancelled``;
    ``result(timeout)`` waits for the results (raising the job's :class:`RemoteError` when it failed
    or was cancelled); ``cancel()``, ``logs()`` and ``progress`` do what they say.
    """

    #: the longest pause between two polls, seconds
    max_poll_interval = 0.5

    def __init__(self, client: Client, job_id: str, status_url: str | None = None):
        self.client = client
        self.job_id = job_id
        self.status_url = status_url
        self._record: dict | None = None
        #: the record as a listing gave it (no results), until the job is read
        self._summary: dict | None = None

    def __repr__(self) -> str:
        known = self._record or self._summary
        return f"Job({self.job_id!r}, status={known['status'] if known else 'unknown'!r})"

    def _path(self, tail: str = "") -> str:
        return "/jobs/" + quote(self.job_id, safe="") + tail

    def record(self) -> dict:
        """Return the job's current record: status, progress, results or error, timestamps."""
        if self._record is None or self._record.get("status") not in FINISHED:
            self._record = self.client.request("GET", self._path())
        return self._record

    def status(self) -> str:
        """Return ``queued``, ``running``, ``retrying``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self.record()["status"]

    def done(self) -> bool:
        """Return True once the job succeeded, failed or was cancelled."""
        return self.status() in FINISHED

    @property
    def progress(self) -> dict | None:
        """Return ``{"done", "total"}`` of chunks or partitions as the service last reported them
        (read now), or None while unknown."""
        return self.record().get("progress")

    def cancel(self) -> dict:
        """Cancel the job (it never runs, or its run is stopped); return its cancelled record.

        Raises :class:`RemoteError` with status 409 when the job had already finished.
        """
        self._record = self.client.request("DELETE", self._path())
        return self._record

    def rerun(self, idempotency_key: str | None = None) -> Job:
        """Queue a new job with this finished job's request; return it (see :meth:`Client.rerun`)."""
        return self.client.rerun(self.job_id, idempotency_key)

    def logs(self) -> list[dict]:
        """Return what the job's pipeline printed and logged: ``{"time", "stream", "message"}`` objects
        (with ``level`` and ``logger`` for log records), oldest first; empty while it runs."""
        text = self.client.request("GET", self._path("/logs"), raw=True)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def dead_letters(self) -> list[dict]:
        """Return the dead letters of a job run with ``on_error="collect"`` (``GET /jobs/<id>/errors``),
        each a JSON object: element, stage, error, message, traceback."""
        text = self.client.request("GET", self._path("/errors"), raw=True)
        return [json.loads(line) for line in text.splitlines() if line]

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job; return its results, raise its RemoteError (failed or cancelled), or
        TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job_id} is still {self._record['status']} after "
                                   f"{timeout} s")
            left = self.max_poll_interval if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(pause, left)))
            pause = min(pause * 2, self.max_poll_interval)
        record = self._record
        if record["status"] == "failed":
            raise RemoteError.from_error(record.get("error") or {"name": "JobFailed", "message": ""})
        if record["status"] == "cancelled":
            raise RemoteError("JobCancelled", f"job {self.job_id} was cancelled")
        if record.get("results_dataset"):  # stored as a dataset: read lazily by iterating it
            return Dataset(self.client, record["results_dataset"])
        if record.get("results_url"):  # too large to travel in the record
            return self.client.request("GET", self._path("/results"))["results"]
        return record.get("results")


def _policy(on_error: str | None, max_errors: int | float | None) -> dict:
    """Return the body fields of a call's error policy (none when both are None)."""
    fields = {"on_error": on_error, "max_errors": max_errors}
    return {key: value for key, value in fields.items() if value is not None}


def _data(data: Any) -> Any:
    """Return a run's ``data``: a :class:`~atoll.client.Dataset` (or a list of them) by reference, else
    as it is."""
    if isinstance(data, Dataset):
        return {"dataset": data.dataset_id}
    if isinstance(data, list | tuple) and data and all(isinstance(d, Dataset) for d in data):
        return {"dataset": [d.dataset_id for d in data]}
    return data


def _file_parts(path: str, size: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while part := handle.read(size):
            yield part


def _record_parts(records: Iterable[Any], format: str, size: int) -> Iterator[bytes]:
    """Yield ``records`` as lines (JSON lines, or text lines for ``text``) in parts of about ``size``."""
    from atoll.encoding import to_json

    lines: list[bytes] = []
    held = 0
    for record in records:
        if format == "text":
            line = (record if isinstance(record, str) else str(record)).encode("utf-8") + b"\n"
        else:
            line = to_json(record).encode("utf-8") + b"\n"
        lines.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(lines)
            lines, held = [], 0
    if lines:
        yield b"".join(lines)


class Dataset:
    """A dataset stored on the service: ``dataset_id``, its metadata (``meta``: format, bytes,
    records, sha256, created_at, expires_at), iterated lazily (records streamed from the service),
    downloaded with :meth:`download`, passed to ``Client.run``/``submit`` by reference."""

    def __init__(self, client: Client, dataset_id: str, meta: dict | None = None):
        self.client = client
        self.dataset_id = dataset_id
        self._meta = meta

    def __repr__(self) -> str:
        return f"Dataset({self.dataset_id!r})"

    def _path(self, tail: str = "") -> str:
        return "/datasets/" + quote(self.dataset_id, safe="") + tail

    @property
    def meta(self) -> dict:
        """The dataset's metadata (read once)."""
        if self._meta is None or "format" not in self._meta:
            self._meta = self.client.request("GET", self._path())
        return self._meta

    def _stream(self) -> Any:
        response = self.client.session.get(self.client.url + self._path("/data"), stream=True,
                                           timeout=self.client.timeout)
        if response.status_code != 200:
            payload = response.json()
            raise RemoteError.from_error(payload.get("error") or {}, response.status_code)
        return response

    def __iter__(self) -> Iterator[Any]:
        is_json = self.meta["format"] == "jsonl"
        with self._stream() as response:
            for line in response.iter_lines(chunk_size=1024 * 1024):
                yield json.loads(line) if is_json else line.decode("utf-8")

    def download(self, path: str | os.PathLike) -> str:
        """Write the dataset's records (one a line) to ``path``; return the path."""
        with self._stream() as response, open(path, "wb") as handle:
            for chunk in response.iter_content(chunk_size=1024 * 1024):
                handle.write(chunk)
        return os.fspath(path)

    def delete(self) -> None:
        """Delete the dataset (RemoteError 409 while a queued or running job reads it)."""
        response = self.client.session.delete(self.client.url + self._path(), timeout=self.client.timeout)
        if response.status_code != 204:
            raise RemoteError.from_error(response.json().get("error") or {}, response.status_code)
