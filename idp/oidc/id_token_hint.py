"""``id_token_hint``: an ID token we issued earlier, expired or not (OIDC Core 3.1.2.1,
RP-Initiated Logout 1.0 section 2)."""

from __future__ import annotations

from typing import Any

from core.signing_keys import KeyRing


def hint_claims(keys: KeyRing, token: str, issuer: str) -> dict[str, Any] | None:
    """The claims of an ID token signed by us for our issuer (expiry ignored), else None.
    Only an ID token (``typ: JWT``, with an ``exp``): an access token (``at+jwt``), a
    logout token (``logout+jwt``) or a signed UserInfo answer (no ``typ``, no ``exp``) is
    no hint."""
    verified = keys.verify(token)
    if verified is None or verified[0].get("typ") != "JWT" or verified[1].get("iss") != issuer:
        return None
    expires = verified[1].get("exp")
    if not isinstance(expires, int) or isinstance(expires, bool):
        return None
    return verified[1]


def audiences(claims: dict[str, Any]) -> list[Any]:
    audience = claims.get("aud")
    return audience if isinstance(audience, list) else [audience]


def subject_of_hint(keys: KeyRing, token: str, issuer: str, client_id: str) -> str | None:
    """The ``sub`` of a valid ID token of ours for this client (expiry ignored), else None."""
    claims = hint_claims(keys, token, issuer)
    if claims is None or client_id not in audiences(claims):
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None
