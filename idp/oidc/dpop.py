"""DPoP (RFC 9449): tokens bound to a key the app holds, so a stolen token is not enough.

- **A proof** is the ``DPoP`` header, sent once: a JWT typed ``dpop+jwt``, signed with
  the private key of the public ``jwk`` in its header, with one of ``ALGS`` (never a MAC,
  never ``none``, never a private key in the header). Its claims: ``jti`` (each seen once
  per key while proofs of its age are taken), ``htm`` the request's method, ``htu`` the
  endpoint's URL as the issuer names it (query and fragment ignored), ``iat`` at most
  ``MAX_AGE`` seconds old and ``MAX_AHEAD`` ahead, and at UserInfo ``ath``, the base64url
  SHA-256 of the access token. A proof's ``jti`` stops its replay.
- **Nonces** (RFC 9449 8, 9): with ``IDP_DPOP_NONCE=required`` a proof must carry a
  ``nonce`` the provider gave in a ``DPoP-Nonce`` header; without one (or with a stale
  one) the answer is ``use_dpop_nonce`` with a fresh nonce, and every answer to a request
  with a proof carries a fresh one. A proof made on a stolen phone in advance is then
  useless within ``NONCE_SECONDS`` to twice that. A nonce is stateless: the time window it
  was made in and a keyed MAC of it and of the issuer (``core.keyring``), so every worker
  checks every other worker's, and a deployment sharing the master key (a staging copy)
  makes none that this one takes. With nonces off, a proof's ``nonce`` is ignored (a
  client that kept one from before keeps working).
- **The key** is named by its RFC 7638 thumbprint (``jkt``, SHA-256).
- **At the token endpoint** (``idp.oidc.token_endpoint``) a proof binds the access token to
  its key (``cnf.jkt``, ``token_type: DPoP``) and a public app's refresh tokens too; a
  confidential app's refresh tokens are bound to its credentials already (RFC 9449 5).
- **Where the key is checked**: refreshing a bound refresh token, redeeming a code asked
  for with ``dpop_jkt`` (or pushed with a proof, RFC 9449 10), and UserInfo with a bound
  access token (``Authorization: DPoP``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from joserfc.jws import JWSRegistry
from starlette.concurrency import run_in_threadpool

from core import json_input
from core.gm import jose as gm_jose
from core.keyring import keyed_mac
from core.settings import Settings
from core.store import Store
from directory.apps import DEFAULT_PORTS, MIN_RSA_BITS, PRIVATE_KEY_MEMBERS, rsa_bits
from idp.oidc.clients import ASSERTION_ALGS
from idp.oidc.errors import OAuthError

HEADER = "dpop"
TYP = "dpop+jwt"
ALGS = ASSERTION_ALGS  # SM2, RS256, ES256, EdDSA and Ed25519
MAX_AGE = 300  # seconds a proof's iat may lie in the past
MAX_AHEAD = 60  # and in the future (a phone's clock running ahead)
MAX_PROOF = 8192
JKT = re.compile(r"[A-Za-z0-9_-]{43}")  # a base64url SHA-256 thumbprint (dpop_jkt)
_STATE = "dpop_jkt"  # request.state: the key of the token request's proof
NONCE_HEADER = "DPoP-Nonce"
NONCE_SECONDS = 300  # a nonce serves from this long to twice this


class _ProofRegistry(JWSRegistry):
    """joserfc's JWS rules with room for the key in the header: an RSA key's ``n`` alone
    outgrows joserfc's default 512 bytes of header."""

    max_header_length = 2048


_REGISTRY = _ProofRegistry(algorithms=ALGS)


class InvalidProof(OAuthError):
    """``invalid_dpop_proof`` (RFC 9449 5, 7.1)."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_dpop_proof", description)


class UseNonce(OAuthError):
    """``use_dpop_nonce`` (RFC 9449 8, 9), with a nonce to use in the ``DPoP-Nonce``
    header."""

    def __init__(self, settings: Settings, description: str) -> None:
        super().__init__("use_dpop_nonce", description,
                         headers={NONCE_HEADER: fresh_nonce(settings)})


def fresh_nonce(settings: Settings) -> str:
    return _nonce(settings, int(time.time() // NONCE_SECONDS))


def _nonce(settings: Settings, window: int) -> str:
    mac = keyed_mac(settings, "dpop-nonce/v1", f"{settings.issuer}|{window}")
    return f"{window}.{mac[:32]}"


_NONCE = re.compile(r"(\d{1,12})\.[0-9a-f]{32}")


def _check_nonce(settings: Settings, nonce: Any) -> None:
    """When nonces are required: one made in this time window or the one before (or, by a
    worker whose clock runs a little ahead, the next)."""
    if settings.dpop_nonce != "required":
        return
    found = _NONCE.fullmatch(nonce) if isinstance(nonce, str) else None
    window = int(found[1]) if found else None
    now = int(time.time() // NONCE_SECONDS)
    if window is None or not now - 1 <= window <= now + 1 or not hmac.compare_digest(
            nonce.encode(), _nonce(settings, window).encode()):
        raise UseNonce(settings, "send the DPoP-Nonce in the proof's nonce"
                       if nonce is None else "the DPoP proof's nonce is stale: use this one")


def with_nonce(request: Request, response: Response) -> Response:
    """The answer to a request with a proof, with a fresh nonce when nonces are required
    (RFC 9449 8.2: the client keeps using the latest); kept when it has one already."""
    settings = request.app.state.settings
    if (settings.dpop_nonce == "required" and HEADER in request.headers
            and NONCE_HEADER not in response.headers):
        response.headers[NONCE_HEADER] = fresh_nonce(settings)
    return response


def proof_of(request: Request) -> str | None:
    """The request's ``DPoP`` header; ``None`` when absent; two are refused."""
    values = request.headers.getlist(HEADER)
    if len(values) > 1:
        raise InvalidProof("send one DPoP header")
    return values[0] if values else None


def key_shown(request: Request, path: str, access_token: str | None = None) -> str | None:
    """The ``jkt`` of the request's proof for this endpoint (``path`` under the issuer;
    the method as the client sent it, ``HEAD`` included), ``None`` when it sent none.
    Touches the store (the ``jti``): call it off the event loop."""
    proof = proof_of(request)
    if proof is None:
        return None
    state = request.app.state
    method = "HEAD" if getattr(request.state, "head", False) else request.method
    return check(state.store, proof, method, state.settings.issuer + path, access_token,
                 state.settings)


async def key_proven(request: Request, path: str) -> str | None:
    """``key_shown`` off the event loop, without a thread hop when there is no proof.
    Called before the client is authenticated: a retry for a nonce (``use_dpop_nonce``)
    then spends no client assertion (its ``jti`` is kept once it is checked)."""
    if proof_of(request) is None:
        return None
    return await run_in_threadpool(key_shown, request, path)


def check(store: Store, proof: str, method: str, url: str, access_token: str | None,
          settings: Settings) -> str:
    """The ``jkt`` of a valid ``proof`` for ``method`` ``url`` (and ``access_token``), its
    nonce checked against ``settings`` (``UseNonce``)."""
    if len(proof) > MAX_PROOF or proof.count(".") != 2:
        raise InvalidProof("the DPoP proof is not a signed JWT")
    header = _header(proof)
    jwk = header.get("jwk")
    if header.get("typ") != TYP or header.get("alg") not in ALGS or not isinstance(jwk, dict):
        raise InvalidProof(f"a DPoP proof is typed {TYP}, signed with one of "
                           f"{', '.join(ALGS)} and holds its public key in jwk")
    if PRIVATE_KEY_MEMBERS & set(jwk):
        raise InvalidProof("the DPoP proof's jwk must be a public key")
    if jwk.get("kty") == "RSA" and rsa_bits(jwk.get("n")) < MIN_RSA_BITS:
        raise InvalidProof(f"an RSA key in a DPoP proof has at least {MIN_RSA_BITS} bits")
    claims, thumbprint = _verified(proof, jwk, header["alg"])
    _check_claims(claims, method, url, access_token)
    # the nonce before the jti is kept: the retry it asks for comes with a new proof
    _check_nonce(settings, claims.get("nonce"))
    jti = hashlib.sha256(f"{thumbprint}:{claims['jti']}".encode()).hexdigest()
    if not store.set_if_absent(f"dpop-jti:{jti}", b"1", ttl=MAX_AGE + MAX_AHEAD):
        raise InvalidProof("the DPoP proof was already used (jti)")
    return thumbprint


def _header(proof: str) -> dict[str, Any]:
    try:
        return json_input.jose_part(proof, 0)
    except ValueError:
        raise InvalidProof("the DPoP proof's header is not a JSON object") from None


def _verified(proof: str, jwk: dict[str, Any], alg: str) -> tuple[dict[str, Any], str]:
    """The proof's claims (strict JSON) once its signature checks with ``jwk``, and the
    key's thumbprint."""
    try:
        if jwk.get("crv") == gm_jose.CRV:
            key: Any = gm_jose.SM2Key.import_key(dict(jwk))
            thumbprint = gm_jose.sm2_jwk_thumbprint(jwk)
        else:
            key = JWKRegistry.import_key(dict(jwk))
            thumbprint = key.thumbprint()
        jwt.decode(proof, key, algorithms=[alg], registry=_REGISTRY)
        claims = json_input.jose_part(proof, 1)
    except (JoseError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise InvalidProof("the DPoP proof's signature or claims are invalid") from None
    return claims, thumbprint


def _check_claims(claims: dict[str, Any], method: str, url: str,
                  access_token: str | None) -> None:
    now, issued = time.time(), claims.get("iat")
    jti, htu = claims.get("jti"), claims.get("htu")
    problems = [
        (not isinstance(jti, str) or not 0 < len(jti) <= 256, "jti is required"),
        (claims.get("htm") != method, f"htm must be {method}"),
        (not isinstance(htu, str) or _normal(htu) != _normal(url), f"htu must be {url}"),
        (not isinstance(issued, int | float) or isinstance(issued, bool)
         or not now - MAX_AGE <= issued <= now + MAX_AHEAD,
         "iat is missing, too old or in the future"),
        (access_token is not None and claims.get("ath") != token_hash(access_token),
         "ath must be the access token's hash"),
    ]
    for failed, message in problems:
        if failed:
            raise InvalidProof(message)


def _normal(url: str) -> tuple[str, str, int | None, str]:
    """RFC 9449 4.3: the URI without query and fragment, compared after the usual
    normalisation (scheme and host without case, a default port left out); a URL that
    cannot be read matches nothing."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # "http://[::1/x", a port that is no number, a host NFKC breaks
        return "", "", -1, url
    scheme = parts.scheme.lower()
    if port == DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def token_hash(access_token: str) -> str:
    """``ath``: base64url of the SHA-256 of the access token (RFC 9449 4.2)."""
    return base64.urlsafe_b64encode(
        hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()


def remember(request: Request, jkt: str | None) -> None:
    """Keep the token request's proof key for the grant that runs next."""
    setattr(request.state, _STATE, jkt)


def key_of(request: Request) -> str | None:
    """The key of the token request's proof (``remember``), if it had one."""
    return getattr(request.state, _STATE, None)
