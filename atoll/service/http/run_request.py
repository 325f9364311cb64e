"""The run request: a ``POST /pipelines/<name>`` body parsed and checked once, at the edge.

Everything below it trusts a :class:`RunRequest`: the sync call, the job system that queues it (as a
:class:`~atoll.service.jobs.model.JobMessage`), the executor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from atoll.dead_letters import POLICIES, ErrorPolicy
from atoll.encoding import json_depth
from atoll.errors import PipelineError
from atoll.service.http.errors import ApiError
from atoll.service.jobs.model import JobMessage

__all__ = ["RunRequest", "BODY_FIELDS", "json_type"]

#: the fields a ``POST /pipelines/<name>`` body may carry
BODY_FIELDS = ("data", "kwargs", "callback", "async", "results_to", "on_error", "max_errors")
_BODY_FIELDS = frozenset(BODY_FIELDS)
_MAX_URL = 2048
#: characters no URL of an HTTP request line may hold as they are (RFC 3986; http.client refuses them)
_URL_UNSENDABLE = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")


@dataclass(frozen=True)
class RunRequest:
    """A ``POST /pipelines/<name>`` body, parsed and checked once: everything below trusts it."""

    pipeline: str
    data: Any
    kwargs: dict
    callback: str | None = None
    run_async: bool = False
    #: ``dataset`` to store the results as a new dataset (the answer or the job carries its id)
    results_to: str | None = None
    #: the call's own error policy (``on_error``, ``max_errors``); None: the pipeline's
    errors: ErrorPolicy | None = None

    @property
    def is_job(self) -> bool:
        """True when the run becomes a job (a callback URL or ``"async": true``)."""
        return self.callback is not None or self.run_async

    def job_message(self) -> JobMessage:
        """Return the task message that queues this request as a job."""
        return JobMessage(self.pipeline, self.data, self.kwargs, self.callback, results_to=self.results_to,
                          errors=self.errors.to_dict() if self.errors is not None else None)

    @classmethod
    def parse(cls, body: Mapping[str, Any], pipeline: Any, name: str,
              max_depth: int | None, raw: bytes | None = None,
              pipeline_policy: ErrorPolicy | None = None) -> RunRequest:
        """Return the request of JSON object ``body`` for registered ``pipeline`` (an atoll Pipeline)
        called ``name``; raise :class:`~atoll.service.http.errors.ApiError` naming the field that is wrong.

        ``data`` and each kwarg may nest arrays and objects ``max_depth`` levels deep; None skips
        that check. ``raw``, the body's bytes, skips it too when they hold no more ``[`` and ``{``
        than the limit: such a body cannot nest deeper. ``on_error`` and ``max_errors`` override the
        pipeline's registered policy (``pipeline_policy``), each alone too."""
        if raw is not None and max_depth is not None and raw.count(b"[") + raw.count(b"{") <= max_depth:
            max_depth = None
        if not body.keys() <= _BODY_FIELDS:
            unknown = sorted(body.keys() - _BODY_FIELDS)
            raise ApiError(400, "InvalidRequest", f"unknown fields {unknown}; a body may carry: "
                                                      f"{', '.join(BODY_FIELDS)}")
        if "data" not in body:
            raise ApiError(400, "MissingData", f'the body has no "data" field; send {{"data": ...}} '
                                                   f"to run pipeline {name!r}")
        kwargs = body.get("kwargs")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ApiError(400, "InvalidKwargs", f'"kwargs" must be a JSON object of runtime keyword '
                                                     f"arguments, got a {json_type(kwargs)}")
        try:
            pipeline.check_kwargs(kwargs)
        except PipelineError as exc:
            raise ApiError(400, "InvalidKwargs", exc.message,
                               expected=list(pipeline.expected_kwargs)) from None
        callback = body.get("callback")
        if callback is not None:
            _check_callback(callback)
        run_async = body.get("async", False)
        if not isinstance(run_async, bool):
            raise ApiError(400, "InvalidRequest", f'"async" must be true or false, got a '
                                                      f"{json_type(run_async)}")
        results_to = body.get("results_to")
        if results_to not in (None, "dataset"):
            raise ApiError(400, "InvalidRequest", f'"results_to" must be "dataset" or null, got '
                                                  f"{str(results_to)[:80]!r}")
        errors = _error_policy(body, pipeline_policy)
        if max_depth is not None:
            _check_depth(body["data"], "data", max_depth)
            for key, value in kwargs.items():
                _check_depth(value, f"kwargs.{key}", max_depth)
        return cls(name, body["data"], kwargs, callback, run_async, results_to, errors)


def _error_policy(body: Mapping[str, Any], registered: ErrorPolicy | None) -> ErrorPolicy | None:
    """Return the call's error policy: its ``on_error`` and ``max_errors``, each in place of the
    pipeline's own; None when the body has neither."""
    if body.get("on_error") is None and body.get("max_errors") is None:
        return None
    base = registered or ErrorPolicy()
    on_error = body.get("on_error", base.on_error) or base.on_error
    if on_error not in POLICIES:
        raise ApiError(400, "InvalidRequest", f'"on_error" must be one of {", ".join(POLICIES)}, got '
                                              f"{str(on_error)[:80]!r}", field="on_error")
    max_errors = body.get("max_errors", base.max_errors)
    try:
        return ErrorPolicy(on_error, max_errors)
    except ValueError as exc:
        raise ApiError(400, "InvalidRequest", f'"max_errors": {exc}', field="max_errors") from None


def json_type(value: Any) -> str:
    """Return the JSON name of ``value``'s type (object, array, string, number, boolean, null)."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_depth(value: Any, where: str, limit: int) -> None:
    """Refuse a value nested deeper than the limit: deep values exhaust the stack of whatever
    serialises them later (a worker handing a job to its pool, the encoder of the results)."""
    if json_depth(value, stop_above=limit) > limit:
        raise ApiError(400, "TooDeep", f'"{where}" nests arrays and objects more than max_json_depth = '
                                           f"{limit} levels deep", limit=limit)


def _check_callback(callback: Any) -> None:
    if not isinstance(callback, str):
        raise ApiError(400, "InvalidCallback", f'"callback" must be an http(s) URL string, got a '
                                                   f"{json_type(callback)}")
    if len(callback) > _MAX_URL:
        raise ApiError(400, "InvalidCallback", f'"callback" is longer than {_MAX_URL} characters')
    bad = _URL_UNSENDABLE.search(callback)
    if bad:  # an HTTP request line cannot carry it: delivery would fail on every attempt
        raise ApiError(400, "InvalidCallback", f'"callback" contains {bad.group()!r} at position '
                                                   f"{bad.start()}; spaces, control and non-ASCII "
                                                   f"characters must be percent-encoded (hosts in their "
                                                   f"xn-- form)")
    try:
        parts = urlsplit(callback)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ApiError(400, "InvalidCallback", f'"callback" is not a valid URL: {exc}') from None
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(400, "InvalidCallback", f'"callback" must be an absolute http:// or https:// URL '
                                                   f"with a host, got {callback[:200]!r}")
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parse_url(callback)
    except LocationParseError as exc:
        raise ApiError(400, "InvalidCallback", f'"callback" is not a valid URL: {exc}') from None
