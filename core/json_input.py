"""JSON that comes from outside (request parameters, tokens, cookies).

``json.loads`` raises ``RecursionError``, not ``ValueError``, for arrays or objects nested
deeper than Python's recursion limit (``[[[[...``): callers that catch ``ValueError`` for
bad input would answer such input with a 500. ``loads`` makes every bad input a
``ValueError``. It also refuses ``NaN``, ``Infinity`` and ``-Infinity``, which Python's
reader takes but are not JSON (RFC 8259 6): another reader of the same text would fail,
and numbers too large for a double (``1e400``), which it would read as infinity.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(number: str) -> float:
    """A JSON number as a float; one beyond a double's range (``1e400``) is refused rather
    than read as infinity, which JSON cannot hold either (and ``int()`` of it overflows)."""
    value = float(number)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def loads(data: str | bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested deeper than it can be read") from None


def loads_text(data: str | bytes) -> Any:
    """``loads`` for JSON whose strings are stored (SCIM): every string, keys too, must be
    text a database takes. JSON's ``\\u`` escapes can carry a lone surrogate (``\\ud800``:
    not Unicode, refused by every encoder) or NUL (refused by PostgreSQL); both are a
    ``ValueError`` here rather than a failure at the database."""
    value = loads(data)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and ("\x00" in item or not _encodable(item)):
            raise ValueError("JSON holds a NUL or a lone surrogate")
    return value


def jose_part(token: str, index: int) -> dict[str, Any]:
    """Part ``index`` of a compact JWS (0: header, 1: claims), base64url without padding:
    a JSON object read with ``loads_text`` (JOSE libraries' ``json.loads`` lets lone
    surrogates and ``NaN`` through). ``ValueError`` when it is no such object."""
    try:
        part = token.split(".")[index]
        value = loads_text(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, binascii.Error) as exc:
        raise ValueError("not a part of a compact JWS") from exc
    if not isinstance(value, dict):
        raise ValueError("a JWS header or claims set is a JSON object")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def known_members(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The members of ``data`` that the dataclass ``cls`` declares: what this version can
    load of a record a newer worker stored (a rolling deploy adds members)."""
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in fields}
