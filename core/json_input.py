"""JSON that comes from outside (request parameters, tokens, cookies).

``json.loads`` raises ``RecursionError``, not ``ValueError``, for arrays or objects nested
deeper than Python's recursion limit (``[[[[...``): callers that catch ``ValueError`` for
bad input would answer such input with a 500. ``loads`` makes every bad input a
``ValueError``.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested deeper than it can be read") from None
