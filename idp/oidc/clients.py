"""Clients: a cached registry and client authentication at the token endpoint.

Methods (OpenID Connect Core 9): ``client_secret_basic``, ``client_secret_post``,
``private_key_jwt`` (RFC 7523 assertions signed with SM2, ES256, RS256 or
EdDSA/Ed25519; each ``jti`` accepted once; ``aud`` one value, as updated by
draft-ietf-oauth-rfc7523bis: ``AssertionAudience``) and ``none`` for public clients
(which must then use PKCE). A client may only use the method it registered.

Client metadata is cached per process for ``CACHE_SECONDS``: the token
endpoint must not query the database on every request. Suspending an app
therefore takes effect within that time on every worker.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import unquote

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy.orm import Session, sessionmaker

from core import json_input
from core.gm import jose as gm_jose
from core.settings import Settings
from core.store import Store
from directory import apps
from directory.apps import AppStatus, ClientMetadata, check_secret, find_app, metadata_of
from idp.oidc.errors import invalid_client, invalid_request

CACHE_SECONDS = 30.0
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = list(apps.ASSERTION_ALGS)
ASSERTION_MAX_AGE = 600
# draft-ietf-oauth-rfc7523bis 4: an assertion typed so says its aud is the issuer alone
TYPED_ASSERTION = "client-authentication+jwt"


class AssertionAudience(NamedTuple):
    """What a client assertion's ``aud`` may be here: ``accepted`` (the issuer, and with
    ``IDP_CLIENT_ASSERTION_AUDIENCE=issuer_or_endpoint`` the token endpoint and the endpoint
    called), and, for an assertion typed ``client-authentication+jwt``, ``issuer`` alone."""
    issuer: str
    accepted: frozenset[str]


CLOCK_SKEW = 60  # seconds an app server's clock may run ahead of ours (nbf)


class ClientRegistry:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._cache: dict[str, tuple[float, ClientMetadata | None]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str) -> ClientMetadata | None:
        """An approved client's metadata, or None (unknown, pending or suspended)."""
        if not client_id or len(client_id) > 64 or "\x00" in client_id:  # NUL: no DB takes it
            return None
        now = time.monotonic()
        cached = self._cache.get(client_id)
        if cached and cached[0] > now:
            return cached[1]
        with self._sessions() as session:
            app = find_app(session, client_id)
            client = metadata_of(app) if app else None
        if client and client.status != AppStatus.approved.value:
            client = None
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[client_id] = (now + CACHE_SECONDS, client)
        return client

    def forget(self, client_id: str) -> None:
        self._cache.pop(client_id, None)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # bad base64 (binascii.Error), non-ASCII, or not UTF-8 inside
        raise invalid_client("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed Basic credentials")
    # RFC 6749 2.3.1: both parts are form-urlencoded inside Basic
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def authenticate(
    form: dict[str, str], authorization: str, registry: ClientRegistry, settings: Settings,
    store: Store, audience: AssertionAudience,
) -> ClientMetadata:
    """The authenticated client of a back-channel request, or ``invalid_client``."""
    basic = _basic_credentials(authorization) if authorization else None
    assertion = form.get("client_assertion")
    methods_sent = sum(bool(m) for m in (basic, form.get("client_secret"), assertion))
    if methods_sent > 1:
        raise invalid_request("more than one client authentication method was used")
    if basic:
        client_id, secret = basic
        if form.get("client_id") and form["client_id"] != client_id:  # RFC 6749 3.2.1
            raise invalid_request("client_id does not match the client authenticated")
        return _by_secret(registry, settings, client_id, secret, "client_secret_basic")
    if form.get("client_secret"):
        return _by_secret(registry, settings, form.get("client_id", ""), form["client_secret"],
                          "client_secret_post")
    if assertion:
        return _by_assertion(form, registry, store, audience)
    client = registry.get(form.get("client_id", ""))
    if client is None or client.token_endpoint_auth_method != "none":
        raise invalid_client("client authentication is required")
    return client


def _by_secret(registry: ClientRegistry, settings: Settings, client_id: str, secret: str,
               method: str) -> ClientMetadata:
    client = registry.get(client_id)
    if client is None or client.token_endpoint_auth_method != method:
        raise invalid_client("unknown client or wrong authentication method")
    if not check_secret(settings, client, secret):
        raise invalid_client("client authentication failed")
    return client


def _by_assertion(form: dict[str, str], registry: ClientRegistry, store: Store,
                  audience: AssertionAudience) -> ClientMetadata:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise invalid_request("client_assertion_type must be " + ASSERTION_TYPE)
    token = form["client_assertion"]
    claims = _unverified_claims(token)
    client_id = claims.get("sub") or claims.get("iss") or ""
    if not isinstance(client_id, str):
        raise invalid_client("unknown client or wrong authentication method")
    client = registry.get(str(client_id))
    if client is None or client.token_endpoint_auth_method != "private_key_jwt" or not client.jwks:
        raise invalid_client("unknown client or wrong authentication method")
    try:
        keys = gm_jose.import_key_set(fully_specified(client.jwks))
        decoded = jwt.decode(token, keys, algorithms=assertion_algs(client))
    except (JoseError, ValueError, RecursionError,  # joserfc parses with json.loads
            TypeError, KeyError, AttributeError):  # a key set stored before it was checked
        raise invalid_client("client assertion signature is invalid") from None
    verified = decoded.claims
    if _is_request_object(decoded.header, verified):
        raise invalid_client("a request object is no client assertion")
    _check_assertion_claims(verified, client.client_id, _audiences(decoded.header, audience))
    if form.get("client_id") and form["client_id"] != client.client_id:
        raise invalid_client("client_id does not match the assertion")
    ttl = max(1, int(verified["exp"] - time.time()) + 60)
    if not store.set_if_absent(f"jti:{client.client_id}:{verified['jti']}", b"1", ttl=ttl):
        raise invalid_client("client assertion was already used")
    return client


def _is_request_object(header: dict[str, Any], claims: dict[str, Any]) -> bool:
    """RFC 9101 10.8: a request object (typed so, or holding authorization parameters) the
    app signed with the same key: it travels in browsers, so it must not authenticate."""
    typ = str(header.get("typ", "")).lower().removeprefix("application/")
    return typ == "oauth-authz-req+jwt" or "response_type" in claims or "redirect_uri" in claims


def _audiences(header: dict[str, Any], audience: AssertionAudience) -> frozenset[str]:
    """The issuer alone for an assertion typed ``client-authentication+jwt`` (a media type:
    compared without case, ``application/`` optional); else what the settings accept."""
    typ = str(header.get("typ", "")).lower().removeprefix("application/")
    return frozenset({audience.issuer}) if typ == TYPED_ASSERTION else audience.accepted


def assertion_algs(client: ClientMetadata) -> list[str]:
    """The registered ``token_endpoint_auth_signing_alg`` alone, if any (OIDC Dynamic
    Client Registration 2: assertions signed otherwise MUST be rejected), else all."""
    return registered_algs(client.token_endpoint_auth_signing_alg)


def registered_algs(registered: str | None) -> list[str]:
    """What a JWT the client signs may use: the alg it registered alone (``EdDSA`` and
    ``Ed25519`` name the same for an Ed25519 key, RFC 9864 2), else ``ASSERTION_ALGS``."""
    if registered in _SAME_ED25519:
        return list(_SAME_ED25519)
    return [registered] if registered else ASSERTION_ALGS


_SAME_ED25519 = ("EdDSA", "Ed25519")


def fully_specified(jwks: dict[str, Any]) -> dict[str, Any]:
    """The client's keys that may check its signatures (``apps.key_problem``: a key stored
    before registration checked it, a short RSA key say, is left out), where an Ed25519
    key labelled ``"alg": "EdDSA"`` also stands as ``"Ed25519"``: RFC 9864's
    fully-specified name for the same signatures, which oauth4webapi 3 signs with
    (joserfc picks a key by ``kid`` and ``alg`` both)."""
    keys = [k for k in jwks.get("keys", []) if apps.key_problem(k) is None]
    also = [{**k, "alg": "Ed25519"} for k in keys
            if k.get("alg") == "EdDSA" and k.get("crv") == "Ed25519"]
    return {**jwks, "keys": keys + also}


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        return json_input.jose_part(token, 1)
    except ValueError:
        raise invalid_client("client assertion is not a JWT") from None


def _check_assertion_claims(claims: dict[str, Any], client_id: str,
                            accepted_audiences: frozenset[str]) -> None:
    """RFC 7523 3 as updated by draft-ietf-oauth-rfc7523bis: ``aud`` is one of
    ``accepted_audiences`` (a string, or an array of exactly one: several audiences are
    what let an assertion made for one server be replayed at another), ``nbf`` has come
    (with ``CLOCK_SKEW``), ``exp`` has not (and is at most ``ASSERTION_MAX_AGE`` away)."""
    now = time.time()
    expires, not_before = claims.get("exp"), claims.get("nbf")
    has_exp = isinstance(expires, int | float)
    audience = claims.get("aud")
    audience = audience[0] if isinstance(audience, list) and len(audience) == 1 else audience
    problems = [
        (claims.get("iss") != client_id or claims.get("sub") != client_id,
         "iss and sub must be the client_id"),
        (not isinstance(audience, str) or audience not in accepted_audiences,
         "aud must be the issuer" if len(accepted_audiences) == 1
         else "aud must name the issuer or the endpoint called"),
        (not has_exp or expires < now, "assertion expired"),
        (has_exp and expires > now + ASSERTION_MAX_AGE, "assertion lives too long"),
        (not_before is not None and (not isinstance(not_before, int | float)
                                     or not_before > now + CLOCK_SKEW),
         "assertion not valid yet (nbf)"),
        (not isinstance(claims.get("jti"), str) or not claims["jti"], "jti is required"),
    ]
    for failed, message in problems:
        if failed:
            raise invalid_client(message)
