"""Scope values (RFC 6749 3.3): the provider's own, and how a request's ``scope`` is read.

A ``scope`` is scope values separated by single spaces, each of printable ASCII other than
``"`` and ``\\``; order does not matter and a value named twice counts once. Nothing else
(an ideographic space, a tab) separates values: such a request is ``invalid_scope``, not
read one way here and another way by the app.
"""

from __future__ import annotations

import re

# advertised in discovery (scopes_supported)
SCOPES = ("openid", "profile", "email", "phone", "address", "edu", "offline_access")
# about a person: never in a client_credentials token
USER_SCOPES = frozenset({*SCOPES, "guardian"})
_VALUE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def values(scope: str) -> list[str]:
    """The distinct values of ``scope``, in the order named; ValueError when it is not a
    well-formed scope."""
    found = [v for v in scope.split(" ") if v]
    if not all(_VALUE.fullmatch(v) for v in found):
        raise ValueError("scope values are printable ASCII separated by spaces")
    return list(dict.fromkeys(found))
