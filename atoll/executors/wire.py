"""What travels between the calling process and the workers (local processes or Spark's Python workers).

A **pass** (its fused steps and aggregate) is serialised once per pass with cloudpickle (dill when
asked, on the local executor) by :func:`dumps_pass` and sent with every chunk or partition as bytes;
each worker unpickles it once and keeps it in a small least-recently-used cache
(:data:`PAYLOAD_CACHE_SIZE` passes), so a chunk of a pass already seen costs a dictionary lookup.

A local **chunk** and its result travel pickled by the C pickler (protocol 5) as one bytes object
(:func:`pack`), which the pool then moves without looking inside: cloudpickle would call back into
Python for every tuple and list in the data. Data that plain pickle cannot carry (a class defined in
``__main__``, a lambda inside an element) travels as it is, with cloudpickle. A worker that cannot load
a packed chunk by name answers :data:`RESEND`, and the caller sends the chunk again unpacked.

>>> unpack(pack([1, (2, "x")]))
[1, (2, 'x')]
>>> type(pack([1, 2])).__name__, type(pack(range(3))).__name__
('Packed', 'range')
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

import cloudpickle

from atoll import serialization

__all__ = ["SERIALIZERS", "PAYLOAD_CACHE_SIZE", "dumps_pass", "loads_pass", "Packed", "pack", "unpack",
           "RESEND", "Failed"]

#: the serializers a pass can travel with
SERIALIZERS = ("cloudpickle", "dill")

#: passes a worker process keeps unpickled (the least recently used is dropped first)
PAYLOAD_CACHE_SIZE = 16

_payloads: OrderedDict[bytes, Any] = OrderedDict()


def dumps_pass(steps: Any, serializer: str = "cloudpickle") -> bytes:
    """Return a pass (``(steps, aggregate)``) serialised for the workers."""
    if serializer == "dill":
        import dill

        return dill.dumps(steps, recurse=True)
    return serialization.dumps(steps)


def loads_pass(payload: bytes, serializer: str = "cloudpickle") -> Any:
    """Worker side: return the unpickled pass, cached so each chunk does not unpickle it again."""
    hit = _payloads.get(payload)
    if hit is None:
        if serializer == "dill":
            import dill

            hit = dill.loads(payload)
        else:
            hit = cloudpickle.loads(payload)
        _payloads[payload] = hit
        while len(_payloads) > PAYLOAD_CACHE_SIZE:
            _payloads.popitem(last=False)
    else:
        _payloads.move_to_end(payload)
    return hit


class Packed:
    """A value pickled by the C pickler: the pool moves the bytes, nobody walks the value twice."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob

    def __reduce__(self):
        return (Packed, (self.blob,))


def pack(value: Any) -> Any:
    """Return ``value`` as a :class:`Packed`, or unchanged when plain pickle cannot carry it.

    A reference to ``__main__`` would not resolve in a worker (cloudpickle sends such classes by
    value), so a pickle that names it is not used; a false alarm only costs the slower path.
    """
    if type(value) is range:
        return value
    try:
        blob = pickle.dumps(value, protocol=5)
    except Exception:
        return value
    return value if b"__main__" in blob else Packed(blob)


def unpack(value: Any) -> Any:
    """Return the value that :func:`pack` packed."""
    return pickle.loads(value.blob) if type(value) is Packed else value


#: a chunk's answer when plain pickle could not load it in the worker (a module the worker cannot
#: import by name): the caller sends that chunk again with cloudpickle
RESEND = "atoll: resend this chunk with cloudpickle"


class Failed:
    """A chunk's PipelineError, returned rather than raised so the pool does not wrap it."""

    def __init__(self, error: BaseException):
        self.error = error
