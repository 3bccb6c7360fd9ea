"""Request objects (RFC 9101, OIDC Core 6.1): an authorization request the app signed.

- **How it comes.** By value, as ``request``, at the authorization endpoint or the PAR
  endpoint (RFC 9126 3). A ``request_uri`` of the app's own (a URL to fetch) stays refused
  with ``request_uri_not_supported``; a PAR ``request_uri`` is this provider's own.
- **Signed, by the app's key.** A JWS signed with a key of the app's registered ``jwks``:
  with its ``request_object_signing_alg`` when it registered one, else any of SM2, ES256,
  RS256 and EdDSA (Ed25519). Never ``alg: none``, never a MAC: client secrets are kept as a
  keyed hash only, so there is nothing to check an HS256 with. An encrypted object (a
  JWE) is refused. Its ``typ``, when present, is ``oauth-authz-req+jwt`` (RFC 9101 10.8)
  or ``JWT``: another kind of JWT the app signed (a client assertion) is no request.
- **Its claims.** Strict JSON (no lone surrogates, NUL or NaN: they would reach pages and
  tokens). ``iss`` is the app's ``client_id``, ``aud`` is the issuer (a string, or an
  array of that one alone, as for client assertions), ``exp`` has not passed and is at
  most ``MAX_SECONDS`` away, ``nbf`` (when present) has come, and ``client_id`` (when
  present) is the ``client_id`` of the query, which must be there.
- **Only the object counts** (RFC 9101 6.3). The authorization request's parameters are
  the object's; what else the query carries is ignored. ``max_age`` may be a number and
  ``claims`` an object: they become the text the plain parameters would be.
- **Apps that must.** ``require_signed_request_object`` (RFC 9101 10.5) in an app's
  metadata: each of its authorization requests must be a request object (pushed or not).
- **Replays.** An object may be used again until it expires, as an authorization URL can:
  it starts a sign-in, nothing more; the code it leads to still needs the app's
  credentials (a public app: the PKCE verifier).
"""

from __future__ import annotations

import json
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from core import json_input
from core.gm import jose as gm_jose
from directory.apps import ClientMetadata
from idp.oidc import resources
from idp.oidc.clients import fully_specified, registered_algs

MAX_SECONDS = 3600  # how far away an object's exp may be
CLOCK_SKEW = 60
TYP = "oauth-authz-req+jwt"
_TYPES = frozenset({TYP, "jwt"})  # compared without case, "application/" optional


class InvalidRequestObject(ValueError):
    """The object cannot be used; the message says why (no secrets, no claims' values)."""


def unpack(token: str, client: ClientMetadata, issuer: str, query_client_id: str,
           names: frozenset[str]) -> dict[str, str]:
    """The authorization parameters (of ``names``) an object carries, once verified."""
    if not client.jwks:
        raise InvalidRequestObject("the client has no registered keys to check a request "
                                   "object with")
    if token.count(".") != 2:  # five parts: a JWE
        raise InvalidRequestObject("the request object must be a signed JWT (JWS)")
    try:
        keys = gm_jose.import_key_set(fully_specified(client.jwks))
        decoded = jwt.decode(token, keys,
                             algorithms=registered_algs(client.request_object_signing_alg))
    except (JoseError, ValueError, RecursionError, TypeError, KeyError, AttributeError):
        raise InvalidRequestObject("the request object's signature is invalid") from None
    typ = str(decoded.header.get("typ", TYP)).lower().removeprefix("application/")
    if typ not in _TYPES:
        raise InvalidRequestObject(f"a request object's typ is {TYP}")
    claims = _strict_claims(token)
    _check_claims(claims, client.client_id, issuer, query_client_id)
    return _parameters(claims, names)


def _strict_claims(token: str) -> dict[str, Any]:
    """The verified payload read again strictly: joserfc's ``json.loads`` lets through lone
    surrogates (a 500 where a page or a token is made) and ``NaN`` (an ``exp`` no time
    passes)."""
    try:
        return json_input.jose_part(token, 1)
    except ValueError:
        raise InvalidRequestObject("the request object's claims are not a strict JSON "
                                   "object") from None


def _check_claims(claims: dict[str, Any], client_id: str, issuer: str,
                  query_client_id: str) -> None:
    now = time.time()
    expires, not_before = claims.get("exp"), claims.get("nbf")
    audience = claims.get("aud")
    audience = audience[0] if isinstance(audience, list) and len(audience) == 1 else audience
    problems = [
        (claims.get("iss") != client_id, "iss must be the client_id"),
        (audience != issuer, "aud must be the issuer"),
        (not isinstance(expires, int | float) or expires < now, "the request object expired "
         "or has no exp"),
        (isinstance(expires, int | float) and expires > now + MAX_SECONDS,
         "the request object lives too long (exp)"),
        (not_before is not None and (not isinstance(not_before, int | float)
                                     or not_before > now + CLOCK_SKEW),
         "the request object is not valid yet (nbf)"),
        (claims.get("client_id", client_id) != client_id or query_client_id != client_id,
         "client_id must be the same in the request object and the request"),
        ("request" in claims or "request_uri" in claims,
         "a request object must not hold request or request_uri"),
    ]
    for failed, message in problems:
        if failed:
            raise InvalidRequestObject(message)


def _parameters(claims: dict[str, Any], names: frozenset[str]) -> dict[str, str]:
    """The object's authorization parameters as the endpoint reads them: text."""
    params: dict[str, str] = {}
    for name in sorted(names - {"request", "request_uri"}):
        value = claims.get(name)
        if value is None or value == "":
            continue
        if name == "claims" and isinstance(value, dict):
            value = json.dumps(value)
        elif name == "max_age" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif name == resources.PARAMETER:
            try:
                value = resources.from_object(value)
            except ValueError as problem:
                raise InvalidRequestObject(str(problem)) from None
        if not isinstance(value, str):
            raise InvalidRequestObject(f"{name} in the request object must be a string")
        params[name] = value
    return params

