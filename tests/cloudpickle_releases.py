"""cloudpickle's code reducer as each release writes ``co_filename`` (a pytest plugin).

cloudpickle up to 3.1.2 keeps a shipped function's file name; 3.1.3 writes ``"<dynamic-code>"`` instead.
The ``cloudpickle_release`` fixture makes the installed cloudpickle behave as either, in this process
(where atoll pickles a pass), so a test runs against both whatever version is installed.
"""

from __future__ import annotations

import pickle
import types

import cloudpickle
import pytest

#: position of ``co_filename`` among the arguments of ``types.CodeType`` (Python 3.8 and later)
FILENAME = 10
DYNAMIC = "<dynamic-code>"


def _probe() -> None:
    """Stand-in function whose code object is reduced to check the argument layout."""


@pytest.fixture(params=["3.1.2", "3.1.3"])
def cloudpickle_release(request, monkeypatch) -> str:
    """Make cloudpickle's code reducer keep (3.1.2) or drop (3.1.3) file names; return the release."""
    table = cloudpickle.Pickler.dispatch_table.maps[0]  # cloudpickle's own reducers
    original = table[types.CodeType]
    constructor, args = original(_probe.__code__)
    assert args[FILENAME] in (_probe.__code__.co_filename, DYNAMIC), \
        "cloudpickle changed its code reducer: update tests/cloudpickle_releases.py"

    def reduce(code: types.CodeType) -> tuple:
        constructor, args = original(code)
        args = list(args)
        args[FILENAME] = code.co_filename if request.param == "3.1.2" else DYNAMIC
        return constructor, tuple(args)

    monkeypatch.setitem(table, types.CodeType, reduce)
    shipped = pickle.loads(cloudpickle.dumps(lambda: None)).__code__.co_filename
    assert (shipped == DYNAMIC) == (request.param == "3.1.3")
    return request.param
