"""Reading our own access tokens back: JWT (RFC 9068) or opaque (store)."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from fastapi import Request
from joserfc.jws import JWSRegistry

from idp.oidc.tokens import token_key


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _read_jwt(request: Request, token: str) -> dict[str, Any] | None:
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(payload_b64))
        signature = _b64decode(signature_b64)
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or header.get("typ") != "at+jwt":
        return None
    found = request.app.state.keys.verification_key(str(header.get("kid", "")))
    if found is None or found[0] != header.get("alg"):
        return None
    algorithm = JWSRegistry.algorithms[found[0]]
    if not algorithm.verify(f"{header_b64}.{payload_b64}".encode(), signature, found[1]):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != request.app.state.settings.issuer:
        return None
    return claims


def read_access_token(request: Request, token: str,
                      check_revoked: bool = True) -> dict[str, Any] | None:
    """The claims of a live access token we issued, else None."""
    from idp.oidc.revocation import is_revoked

    if not token or len(token) > 8192:
        return None
    store = request.app.state.store
    if token.count(".") == 2:
        claims = _read_jwt(request, token)
    else:
        key = "at:" + token_key(token)
        raw = store.get(key)
        claims = {**json.loads(raw), "_opaque_key": key} if raw else None
    if claims is None or not isinstance(claims.get("exp"), int | float):
        return None
    if claims["exp"] <= time.time():
        return None
    if check_revoked and is_revoked(store, str(claims.get("jti"))):
        return None
    return claims
