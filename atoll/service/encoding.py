"""Flask's side of JSON encoding: :class:`AtollJSONProvider` makes every response body go through
:func:`atoll.encoding.to_json`. The encoding itself lives in :mod:`atoll.encoding` (no Flask needed) and
is re-exported here for the code that imports it from this module.
"""

from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider

from atoll.encoding import EncodingError, find_surrogate, json_depth, jsonable, refuse_constant, to_json

__all__ = ["EncodingError", "jsonable", "to_json", "find_surrogate", "json_depth", "AtollJSONProvider"]


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
        kwargs.setdefault("parse_constant", refuse_constant)
        return json.loads(s, **kwargs)
