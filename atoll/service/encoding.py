"""How results become JSON: the one place that decides, used by HTTP responses, Celery payloads and
callbacks alike.

Tuples become lists; NumPy scalars and arrays become numbers and lists; sets become (sorted when their
elements compare) lists; dates, datetimes and times become ISO 8601 strings; ``timedelta`` becomes
seconds; ``Decimal`` and ``UUID`` become strings; NaN and infinities become ``null`` (JSON has no such
numbers). Anything else raises :class:`EncodingError` naming the type and where it sits:

>>> to_json({"n": (1, 2), "tags": {"b", "a"}})
'{"n":[1,2],"tags":["a","b"]}'
>>> jsonable([{"score": 1}, {"score": object()}])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
atoll.service.encoding.EncodingError: results[1].score: cannot encode a builtins.object as JSON...
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import uuid
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask.json.provider import DefaultJSONProvider

from atoll.errors import AtollError

__all__ = ["EncodingError", "jsonable", "to_json", "AtollJSONProvider"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEQUENCES = (list, tuple, deque)
_SETS = (set, frozenset)


class EncodingError(AtollError, TypeError):
    """A value cannot be encoded as JSON; ``path`` says where it sits, ``type_name`` what it is."""

    def __init__(self, path: str, type_name: str):
        super().__init__(f"{path}: cannot encode a {type_name} as JSON; return lists, dicts, strings, "
                         f"numbers, booleans, None (or tuples, sets, NumPy values, dates, decimals)")
        self.path = path
        self.type_name = type_name


class _Unencodable(Exception):
    """Raised by the fast path's ``default`` hook; the slow path then finds where the value sits."""


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_numpy(obj: Any) -> bool:
    return type(obj).__module__ == "numpy"


def _scalar(obj: Any) -> Any:
    """Return the JSON form of a non-container value, or raise _Unencodable."""
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, Decimal | uuid.UUID):
        return str(obj)
    if _is_numpy(obj):
        if hasattr(obj, "tolist"):  # ndarray and numpy scalars (item() of a 0-d array too)
            return obj.tolist()
    raise _Unencodable(obj)


def _default(obj: Any) -> Any:
    """``json.dumps`` hook of the fast path."""
    if isinstance(obj, _SETS):
        return _sorted(obj)
    if isinstance(obj, deque):
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return _scalar(obj)


def _sorted(values: Any) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types do not compare: keep iteration order
        return list(values)


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(str(key))}]"


def _key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, int | float):
        return json.dumps(_number(key))
    try:
        value = _scalar(key)
    except _Unencodable:
        raise EncodingError(f"{path} (a key)", _type_name(key)) from None
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def jsonable(obj: Any, path: str = "results") -> Any:
    """Return ``obj`` as plain JSON values (dict, list, str, int, float, bool, None).

    Raise :class:`EncodingError` naming the type and its position (``path`` is the root's name).
    """
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, int | float):
        return _number(float(obj) if isinstance(obj, float) else int(obj))
    if isinstance(obj, Mapping):
        return {_key(k, _child(path, k)): jsonable(v, _child(path, k)) for k, v in obj.items()}
    if isinstance(obj, _SEQUENCES):
        return [jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, _SETS):
        return [jsonable(v, f"{path}[{i}]") for i, v in enumerate(_sorted(obj))]
    try:
        value = _scalar(obj)
    except _Unencodable:
        raise EncodingError(path, _type_name(obj)) from None
    return jsonable(value, path)


try:  # the ``fast`` extra: orjson encodes large results several times faster than the json module
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

# Dates and dataclasses go to ``_default`` as with the json module (ISO strings; an error naming the
# dataclass), not orjson's own encodings of them. Non-string keys, integers beyond 64 bits, NaN and
# anything else orjson refuses fall back to the json module below, so the text is the json module's.
_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS) if orjson else 0
_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


def to_json(obj: Any, path: str = "results", **dumps_kwargs: Any) -> str:
    """Return ``obj`` encoded as compact JSON text; raise :class:`EncodingError` as :func:`jsonable`.

    With orjson installed (the ``fast`` extra) compact text is encoded by orjson; whatever it
    refuses, and any other formatting asked for, goes through the json module as before.
    """
    dumps_kwargs.setdefault("separators", (",", ":"))
    dumps_kwargs.setdefault("ensure_ascii", False)
    if orjson is not None and dumps_kwargs == _COMPACT:
        try:
            return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS).decode()
        except (_Unencodable, TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
            pass
    try:  # fast path: the C encoder with a hook for the extra types
        return json.dumps(obj, default=_default, allow_nan=False, **dumps_kwargs)
    except (_Unencodable, TypeError, ValueError, RecursionError):
        # slow path: converts keys and NaN, and names the position of whatever cannot be encoded
        return json.dumps(jsonable(obj, path), allow_nan=False, **dumps_kwargs)


class AtollJSONProvider(DefaultJSONProvider):
    """Flask JSON provider: every response body goes through :func:`to_json`; keys keep their order."""

    sort_keys = False
    ensure_ascii = False
    compact = True

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Return ``obj`` as JSON text (see :func:`to_json`)."""
        kwargs.pop("default", None)
        kwargs.pop("sort_keys", None)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        return to_json(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON text, refusing the non-standard constants NaN and Infinity."""
        kwargs.setdefault("parse_constant", _refuse_constant)
        return json.loads(s, **kwargs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
