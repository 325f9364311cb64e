"""Results encoded by orjson (the ``fast`` extra) are the same JSON as the json module's, and a value
that is not JSON fails with the same error naming its type and place."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll import encoding
from atoll.encoding import EncodingError, to_json

orjson = pytest.importorskip("orjson")


def without_orjson(value, monkeypatch):
    """Return to_json(value) (or the error it raises) with orjson out of the way."""
    with monkeypatch.context() as m:
        m.setattr(encoding, "orjson", None)
        try:
            return to_json(value)
        except EncodingError as exc:
            return exc


def with_orjson(value):
    try:
        return to_json(value)
    except EncodingError as exc:
        return exc


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
keys = st.one_of(st.text(max_size=5), st.integers(-5, 5))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(keys, inner, max_size=4),
    st.frozensets(st.integers(-9, 9), max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_orjson_gives_the_json_modules_json(value):
    import _pytest.monkeypatch

    patch = _pytest.monkeypatch.MonkeyPatch()
    fast, plain = with_orjson(value), without_orjson(value, patch)
    assert json.loads(fast) == json.loads(plain)
    if "e-" not in plain:  # 1e-07 is 1e-7 to orjson: the same number, written another way
        assert fast == plain


@dataclasses.dataclass
class Row:
    n: int


@pytest.mark.parametrize("value", [
    {"when": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc), "day": dt.date(2024, 2, 29),
     "at": dt.time(8, 15, 1, 500), "took": dt.timedelta(seconds=90)},
    {"price": Decimal("1.10"), "id": uuid.UUID(int=5), "tags": {"b", "a"}, "n": float("nan")},
    {1: "int key", 2.5: "float key", None: "None key", False: "bool key"},
    [Row(1)], [{"ok": 1}, {"bad": object()}], {"k": {(1, 2): "tuple key"}}, [b"raw bytes"],
    ["\x00\x1f control", "é ü 中", "\ud800 lone surrogate"],
])
def test_special_values_and_errors_are_the_same(value, monkeypatch):
    fast, plain = with_orjson(value), without_orjson(value, monkeypatch)
    if isinstance(plain, EncodingError):
        assert isinstance(fast, EncodingError) and str(fast) == str(plain) and fast.path == plain.path
    else:
        assert fast == plain


def test_numpy_values_are_the_same(monkeypatch):
    np = pytest.importorskip("numpy")
    value = {"i": np.int64(7), "f": np.float32(0.5), "a": np.arange(6).reshape(2, 3), "b": np.bool_(True)}
    assert with_orjson(value) == without_orjson(value, monkeypatch)


def test_compact_results_go_through_orjson_and_other_formatting_does_not(monkeypatch):
    calls = []

    class Counting:
        OPT_PASSTHROUGH_DATETIME = orjson.OPT_PASSTHROUGH_DATETIME

        @staticmethod
        def dumps(*args, **kwargs):
            calls.append(args[0])
            return orjson.dumps(*args, **kwargs)

    monkeypatch.setattr(encoding, "orjson", Counting)
    assert to_json({"rows": [1, 2]}) == '{"rows":[1,2]}' and calls == [{"rows": [1, 2]}]
    assert to_json({"rows": [1]}, indent=2) == json.dumps({"rows": [1]}, indent=2, separators=(",", ":"))
    assert len(calls) == 1
