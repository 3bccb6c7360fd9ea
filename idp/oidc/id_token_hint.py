"""``id_token_hint``: an ID token we issued earlier, expired or not (OIDC Core 3.1.2.1)."""

from __future__ import annotations

import base64
import binascii
import json

from joserfc.jws import JWSRegistry

from core.signing_keys import KeyRing


def subject_of_hint(keys: KeyRing, token: str, issuer: str, client_id: str) -> str | None:
    """The ``sub`` of a valid ID token of ours for this client (expiry ignored), else None."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_decode(header_b64))
        claims = json.loads(_decode(payload_b64))
        signature = _decode(signature_b64)
    except (ValueError, binascii.Error):
        return None
    found = keys.verification_key(str(header.get("kid", "")))
    if found is None or found[0] != header.get("alg"):
        return None
    alg, key = found
    if not JWSRegistry.algorithms[alg].verify(f"{header_b64}.{payload_b64}".encode(), signature,
                                              key):
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != issuer or client_id not in audiences:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def _decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
