"""Reading our own access tokens back: JWT (RFC 9068) or opaque (store)."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request

from core.store import Store
from idp.oidc.tokens import token_key


def revoke_access_jti(store: Store, jti: str, expires_in: float) -> None:
    """Deny-list an access token (JWT or opaque) by ``jti`` until it expires."""
    store.set(f"at-revoked:{jti}", b"1", ttl=max(1.0, expires_in))


def is_revoked(store: Store, jti: str) -> bool:
    return store.get(f"at-revoked:{jti}") is not None


def issued_at(claims: dict[str, Any]) -> float:
    """When the token was issued, as a "sign out everywhere" compares it
    (``directory.people.sign_out_everywhere``): ``iat`` holds whole seconds, so a token is
    taken as issued at the end of its second; one issued in the very second of a sign-out,
    before it, still holds (a token issued just after it, in a new sign-in, must)."""
    return int(claims.get("iat") or 0) + 1


def _read_jwt(request: Request, token: str) -> dict[str, Any] | None:
    verified = request.app.state.keys.verify(token)
    if verified is None or verified[0].get("typ") != "at+jwt":
        return None
    claims = verified[1]
    return claims if claims.get("iss") == request.app.state.settings.issuer else None


def read_access_token(request: Request, token: str,
                      check_revoked: bool = True) -> dict[str, Any] | None:
    """The claims of a live access token we issued, else None."""
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
