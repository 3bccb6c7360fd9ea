"""Pushed authorization requests (RFC 9126) as the store keeps them.

The PAR endpoint (``idp.oidc.par``) checks an authenticated client's authorization request
and keeps its parameters under a random ``request_uri`` (``urn:ietf:params:oauth:
request_uri:`` and 256 random bits) for ``LIFETIME`` seconds; the authorization endpoint
takes them back, once (``take``), when the browser brings ``client_id`` and that
``request_uri``. Any other ``request_uri`` stays refused (``request_uri_not_supported``).
"""

from __future__ import annotations

import json
import re
import secrets

from core.store import Store

URN = "urn:ietf:params:oauth:request_uri:"
LIFETIME = 60  # seconds: RFC 9126 suggests 5 to 600; the browser goes there at once
HANDLE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def is_pushed(request_uri: str | None) -> bool:
    return bool(request_uri) and request_uri.startswith(URN)


def save(store: Store, client_id: str, params: dict[str, str]) -> str:
    """Keep an accepted request's parameters; its ``request_uri``."""
    handle = secrets.token_urlsafe(32)
    store.set(f"par:{handle}", json.dumps({**params, "client_id": client_id}).encode(),
              ttl=LIFETIME)
    return URN + handle


def take(store: Store, request_uri: str) -> dict[str, str] | None:
    """The pushed parameters, once; ``None`` when unknown, expired or already used."""
    handle = request_uri.removeprefix(URN)
    if not HANDLE.fullmatch(handle):  # what ``save`` makes, nothing else reaches the store
        return None
    raw = store.take(f"par:{handle}")
    if raw is None:
        return None
    try:
        params = json.loads(raw)
    except ValueError:  # an entry no version writes (a damaged store)
        return None
    if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        return None
    return params
