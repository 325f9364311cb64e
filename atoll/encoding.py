"""How results become JSON: the one place that decides, used by HTTP responses, Celery payloads,
callbacks and the client alike. Needs nothing beyond the standard library (the Flask JSON provider built
on it lives in :mod:`atoll.service.encoding`).

Tuples become lists; NumPy scalars and arrays become numbers and lists; sets become (sorted when their
elements compare) lists; dates, datetimes and times become ISO 8601 strings; ``timedelta`` becomes
seconds; ``Decimal`` and ``UUID`` become strings; NaN and infinities become ``null`` (JSON has no such
numbers). Anything else raises :class:`EncodingError` naming the type and where it sits:

>>> to_json({"n": (1, 2), "tags": {"b", "a"}})
'{"n":[1,2],"tags":["a","b"]}'
>>> jsonable([{"score": 1}, {"score": object()}])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
atoll.encoding.EncodingError: results[1].score: cannot encode a builtins.object as JSON...
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

from atoll.errors import AtollError

__all__ = ["EncodingError", "Counts", "jsonable", "to_json", "refuse_constant", "find_surrogate",
           "json_depth"]

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


class Counts(dict):
    """A dict of counts (``countByValue``'s and ``countByKey``'s result): in Python a plain dict
    ``{element: count}``; as JSON a list of ``[element, count]`` pairs, so that keys that are not
    strings (numbers, ``None``, tuples) keep their type.

    >>> to_json(Counts({"a": 2, None: 1, (1, 2): 1}))
    '[["a",2],[null,1],[[1,2],1]]'
    """

    __slots__ = ()

    def __reduce__(self):
        return (Counts, (dict(self),))


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
    if type(obj) is Counts:
        return [[jsonable(k, f"{path}[{i}][0]"), jsonable(v, f"{path}[{i}][1]")]
                for i, (k, v) in enumerate(obj.items())]
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


#: a UTF-16 surrogate code point on its own: Python strings may hold one, UTF-8 cannot encode it
_SURROGATE = re.compile("[\ud800-\udfff]")


try:  # the ``fast`` extra: orjson encodes large results several times faster than the json module
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

# Dates and dataclasses go to ``_default`` as with the json module (ISO strings; an error naming the
# dataclass), not orjson's own encodings of them. Non-string keys, integers beyond 64 bits, NaN, lone
# surrogates and anything else orjson refuses fall back to the json module below, so the text is the
# json module's.
_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS) if orjson else 0
_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


def to_json(obj: Any, path: str = "results", **dumps_kwargs: Any) -> str:
    """Return ``obj`` encoded as compact JSON text; raise :class:`EncodingError` as :func:`jsonable`.

    With orjson installed (the ``fast`` extra) compact text is encoded by orjson; whatever it
    refuses, and any other formatting asked for, goes through the json module as before.

    The text always encodes as UTF-8: when a string holds a lone surrogate, the text is written in
    ASCII with ``\\u`` escapes, which JSON readers take back as the same string.

    >>> to_json(["café", chr(0xD800)])
    '["caf\\\\u00e9","\\\\ud800"]'
    """
    dumps_kwargs.setdefault("separators", (",", ":"))
    dumps_kwargs.setdefault("ensure_ascii", False)
    if _holds_counts(obj):
        obj = jsonable(obj, path)
    if orjson is not None and dumps_kwargs == _COMPACT:
        try:
            return orjson.dumps(obj, default=_default, option=_ORJSON_OPTIONS).decode()
        except (_Unencodable, TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
            pass
    text = _dumps(obj, path, dumps_kwargs)
    if not text.isascii() and _SURROGATE.search(text):
        text = _dumps(obj, path, {**dumps_kwargs, "ensure_ascii": True})
    return text


def _holds_counts(obj: Any) -> bool:
    """Return True when ``obj`` is :class:`Counts`, or a list or tuple with one among its items (a
    fork's results, a nested pipeline's per element): the encoders would write them as objects."""
    if type(obj) is Counts:
        return True
    return isinstance(obj, _SEQUENCES) and any(type(x) is Counts for x in obj)


def _dumps(obj: Any, path: str, dumps_kwargs: dict) -> str:
    try:  # fast path: the C encoder with a hook for the extra types
        return json.dumps(obj, default=_default, allow_nan=False, **dumps_kwargs)
    except (_Unencodable, TypeError, ValueError, RecursionError):
        # slow path: converts keys and NaN, and names the position of whatever cannot be encoded
        return json.dumps(jsonable(obj, path), allow_nan=False, **dumps_kwargs)


def find_surrogate(obj: Any, path: str = "body") -> str | None:
    """Return where the first string (or key) holding a lone surrogate sits in JSON ``obj``, or None.

    >>> find_surrogate({"data": ["ok", chr(0xD800)]})
    'body.data[1]'
    """
    stack = [(obj, path)]
    while stack:  # iterative: input nested deeper than the recursion limit is still walked
        value, where = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return where
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if _SURROGATE.search(key):
                    return f"{_child(where, key)} (a key)"
                stack.append((item, _child(where, key)))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


def json_depth(value: Any, stop_above: int | None = None) -> int:
    """Return how deeply arrays and objects nest in ``value`` (0 for a scalar, 1 for ``[1, 2]``).

    Walks level by level without recursion, so any depth is measured safely; stops counting once
    the depth passes ``stop_above``.

    >>> json_depth({"a": [1, [2]]}), json_depth("text"), json_depth([[[[]]]], stop_above=2)
    (3, 0, 3)
    """
    depth = 0
    level = [value] if isinstance(value, (list, dict)) else []
    while level:
        depth += 1
        if stop_above is not None and depth > stop_above:
            break
        level = [item for container in level
                 for item in (container.values() if isinstance(container, dict) else container)
                 if isinstance(item, (list, dict))]
    return depth


def refuse_constant(name: str) -> Any:
    """``parse_constant`` hook of ``json.loads``: raise ValueError for NaN and Infinity."""
    raise ValueError(f"{name} is not valid JSON")
