"""Access tokens, ID tokens and their revocation.

- **JWT access tokens** (RFC 9068, header ``typ: at+jwt``), signed with the
  client's ``access_token_signed_response_alg``; nothing is written per token.
  Revoking one puts its ``jti`` on a deny list in the store until it expires;
  introspection and UserInfo consult it. (A resource server that validates the
  JWT locally cannot see revocation: keep access tokens short-lived.) Their
  ``aud`` is the API the app named with ``resource`` (RFC 8707, ``idp.oidc.resources``),
  else the issuer (the UserInfo resource). Bound to a DPoP key, a token carries
  ``cnf.jkt`` (RFC 9449 6).
- **Opaque access tokens**: 256 random bits; the store keeps their claims under
  ``SM3(token)`` until they expire.
- **ID tokens** (OpenID Connect Core 2), signed with the client's
  ``id_token_signed_response_alg``; ``at_hash`` / ``c_hash`` use SM3 for SM2 and
  the SHA-2 of the algorithm otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from core.gm.jose import sm3_half_hash
from core.signing_keys import KeyRing
from core.store import Store
from directory.apps import ClientMetadata
from idp.oidc.errors import invalid_grant

ACCESS_TOKEN_SECONDS = 3600
ID_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class Grant:
    """Who authorised what: carried from the authorization to every token of a grant."""

    client_id: str
    scope: str
    sub: str | None = None  # None for client_credentials
    account_id: int | None = None
    sid: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    nonce: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)  # the OIDC claims request
    # when the SSO session ``sid`` ends at the latest (its sign-in plus its maximum age):
    # refresh tokens that live with the session expire then too
    session_ends_at: int | None = None
    # the DPoP key (RFC 9449 thumbprint) the grant's code or refresh tokens are bound to
    jkt: str | None = None
    # RFC 8707 (idp.oidc.resources): the APIs its access tokens may be for, and the
    # client_id of the app that held each identifier when the person signed in (a stored
    # grant naming APIs without them is refused: ``from_json``)
    resources: tuple[str, ...] = ()
    resource_owners: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "scope": self.scope, "sub": self.sub,
                "account_id": self.account_id, "sid": self.sid, "auth_time": self.auth_time,
                "acr": self.acr, "amr": list(self.amr), "nonce": self.nonce,
                "claims": self.claims, "session_ends_at": self.session_ends_at,
                # only when bound: a worker of the version before reads the rest (a
                # rolling deploy, a rollback), and refuses (fails closed on) a binding
                **({"jkt": self.jkt} if self.jkt else {}),
                **({"resources": list(self.resources),
                    "resource_owners": list(self.resource_owners)} if self.resources else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        """ValueError for a member this version does not know: a newer version's grant
        (a rollback) may carry a binding or a limit that must not be dropped, so its code
        or refresh token is refused (``read``), never used without it."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"a grant with members this version does not know: {unknown}")
        resources, owners = data.get("resources") or [], data.get("resource_owners") or []
        if not (isinstance(resources, list) and isinstance(owners, list)
                and len(owners) == len(resources)
                and all(isinstance(x, str) and x for x in resources + owners)):
            # the version before kept no owners: its grant cannot tell the API it was
            # made for from the next app to hold the identifier (idp.oidc.resources)
            raise ValueError("a grant naming APIs without the apps that held them")
        return cls(**{**data, "amr": tuple(data.get("amr") or ()),
                      "resources": tuple(resources), "resource_owners": tuple(owners)})

    @classmethod
    def read(cls, data: dict[str, Any]) -> Grant:
        """A stored grant (a code's, a refresh token's); ``invalid_grant`` when this version
        cannot read it all."""
        try:
            return cls.from_json(data)
        except ValueError:
            raise invalid_grant("the grant was made by another version of the service: "
                                "sign in again") from None


def half_hash(value: str, alg: str) -> str:
    """``at_hash`` / ``c_hash``: left half of the hash that matches the signing algorithm."""
    if alg == "SM2":
        return sm3_half_hash(value)
    digest = {"RS256": hashlib.sha256, "ES256": hashlib.sha256,
              "EdDSA": hashlib.sha512}[alg](value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def token_key(token: str) -> str:
    return hashlib.new("sm3", token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    expires_in: int
    jti: str


def issue_access_token(keys: KeyRing, store: Store, issuer: str, client: ClientMetadata,
                       grant: Grant, jkt: str | None = None,
                       audience: str | None = None) -> IssuedAccessToken:
    """``jkt``: the DPoP key the token is bound to (``cnf``, RFC 9449 6); ``audience``:
    the API it is for (RFC 8707; None: the issuer)."""
    now = int(time.time())
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "iss": issuer, "exp": now + ACCESS_TOKEN_SECONDS, "aud": audience or issuer,
        "sub": grant.sub or client.client_id, "client_id": client.client_id, "iat": now,
        "jti": jti, "scope": grant.scope,
    }
    if grant.sub:
        claims.update({"auth_time": grant.auth_time, "amr": list(grant.amr)})
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.sid:
            claims["sid"] = grant.sid
    if jkt:
        claims["cnf"] = {"jkt": jkt}
    if client.access_token_format == "opaque":
        token = secrets.token_urlsafe(32)
        store.set("at:" + token_key(token), json.dumps(claims).encode(),
                  ttl=ACCESS_TOKEN_SECONDS)
        return IssuedAccessToken(token, ACCESS_TOKEN_SECONDS, jti)
    token = keys.sign(claims, client.access_token_signed_response_alg, typ="at+jwt")
    return IssuedAccessToken(token, ACCESS_TOKEN_SECONDS, jti)


def issue_id_token(keys: KeyRing, issuer: str, client: ClientMetadata, grant: Grant,
                   claims: dict[str, Any], *, access_token: str | None = None,
                   code: str | None = None) -> str:
    now = int(time.time())
    alg = client.id_token_signed_response_alg
    payload: dict[str, Any] = {
        "iss": issuer, "sub": grant.sub, "aud": client.client_id, "exp": now + ID_TOKEN_SECONDS,
        "iat": now, "auth_time": grant.auth_time,
    }
    optional = {"nonce": grant.nonce, "acr": grant.acr, "sid": grant.sid,
                "amr": list(grant.amr) or None}
    payload.update({k: v for k, v in optional.items() if v})
    if access_token:
        payload["at_hash"] = half_hash(access_token, alg)
    if code:
        payload["c_hash"] = half_hash(code, alg)
    payload.update({k: v for k, v in claims.items() if k not in payload})
    return keys.sign(payload, alg, typ="JWT")
