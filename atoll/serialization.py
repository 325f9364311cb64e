"""How a pipeline's functions travel to worker processes: cloudpickle that keeps their source location.

cloudpickle pickles lambdas, closures and functions of ``__main__`` *by value*: their code objects travel
inside the payload. From cloudpickle 3.1.3 on, it writes ``co_filename = "<dynamic-code>"`` into every
such code object (so that payloads are deterministic), and a worker-side traceback then names neither the
user's file nor the failing source line. atoll hands that traceback back to the caller, so :func:`dumps`
wraps cloudpickle's own code reducer — whatever it does to the file name — and puts the original
``co_filename`` back when the code object is rebuilt in the worker.

>>> import pickle
>>> def double(x):
...     return 2 * x
>>> pickle.loads(dumps(double)).__code__.co_filename == double.__code__.co_filename
True
"""

from __future__ import annotations

import io
import types
from collections import ChainMap
from typing import Any

import cloudpickle

__all__ = ["dumps"]


def _code_at(constructor: Any, args: tuple, filename: str) -> types.CodeType:
    """Return the code object ``constructor(*args)`` with ``co_filename`` set to ``filename``."""
    code = constructor(*args)
    if code.co_filename != filename:
        code = code.replace(co_filename=filename)
    return code


def _reduce_code(code: types.CodeType) -> tuple:
    """Reduce ``code`` as cloudpickle does, then restore its file name on load."""
    # looked up at each call, not at import, so the reducer of the cloudpickle in use is the one wrapped
    constructor, args = cloudpickle.Pickler.dispatch_table[types.CodeType](code)
    return _code_at, (constructor, args, code.co_filename)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler with code objects that keep their ``co_filename``."""

    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    """Return ``obj`` pickled by cloudpickle, code objects keeping the file they were defined in.

    The payload loads with plain :func:`pickle.loads` (or ``cloudpickle.loads``) wherever atoll is
    importable, as every atoll worker is.
    """
    with io.BytesIO() as file:
        _Pickler(file, protocol=protocol).dump(obj)
        return file.getvalue()
