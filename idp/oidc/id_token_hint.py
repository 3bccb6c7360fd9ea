"""``id_token_hint``: an ID token we issued earlier, expired or not (OIDC Core 3.1.2.1)."""

from __future__ import annotations

from core.signing_keys import KeyRing


def subject_of_hint(keys: KeyRing, token: str, issuer: str, client_id: str) -> str | None:
    """The ``sub`` of a valid ID token of ours for this client (expiry ignored), else None."""
    verified = keys.verify(token)
    if verified is None:
        return None
    claims = verified[1]
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != issuer or client_id not in audiences:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None
