"""The UserInfo endpoint (OIDC Core 5.3), GET and POST, bearer token in the header or body.

A token bound to a DPoP key (RFC 9449, ``cnf.jkt``) comes as ``Authorization: DPoP``
with a proof of that key (``idp.oidc.dpop``), never as ``Bearer`` or in the body; an
unbound token never as ``DPoP``.

The claims come as JSON, or, for an app registered with ``userinfo_signed_response_alg``
(OIDC Core 5.3.2), as a JWT signed like an ID token (``application/jwt``, SM2 included),
which adds ``iss``, ``aud`` (the app) and ``iat``: an app can then hand the response on and
anyone can check that this provider said it.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from idp.oidc import cors, dpop
from idp.oidc.access_tokens import issued_at, read_access_token
from idp.oidc.claims import userinfo_claims
from idp.oidc.token_endpoint import is_form
from idp.oidc.tokens import Grant

router = APIRouter(tags=["oidc"])
USERINFO_PATH = "/oauth2/userinfo"


def _bearer_error(error: str, description: str, status: int = 401, *,
                  scheme: str = "Bearer", headers: dict[str, str] | None = None) -> JSONResponse:
    challenge = f'{scheme} error="{error}", error_description="{description}"'
    if scheme == "DPoP":  # RFC 9449 7.1: the algorithms a proof may use
        challenge += f', algs="{" ".join(dpop.ALGS)}"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store",
                                 **(headers or {})})


async def _token_from(request: Request) -> tuple[str | None, str, str | None]:
    """``(token, scheme, problem)``: the token, sent one way only (RFC 6750 2: the header
    or the form body, never both, never twice), how (``bearer``, ``dpop`` or ``body``), or
    why the request is malformed. A token in the URL (RFC 6750 2.3) is refused: URLs end
    up in logs and browser histories."""
    if "access_token" in request.query_params:
        return None, "", "send the token in the Authorization header, not in the URL"
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        return None, "", "send one Authorization header"
    found: list[str] = []
    scheme, _, value = (headers or [""])[0].partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "dpop"):
        if not value.strip():
            return None, "", f"the {scheme} credentials are empty"
        found.append(value.strip())
    else:
        scheme = "body"
    if request.method == "POST" and is_form(request):
        in_body = [v for v in (await request.form()).getlist("access_token")
                   if not isinstance(v, str) or v]  # empty: omitted (RFC 6749 3.2)
        found += [v for v in in_body if isinstance(v, str)]  # an upload is no token
        if len(in_body) > 1:
            return None, "", "send access_token once"
    if len(found) > 1:
        return None, "", "send the token in one place only"
    return (found[0] if found else None), scheme, None


@router.get(USERINFO_PATH, summary="UserInfo endpoint", operation_id="userinfo_get")
@router.post(USERINFO_PATH, summary="UserInfo endpoint", operation_id="userinfo_post")
async def userinfo(request: Request) -> Response:
    cors.share_publicly(request)  # until the client is known: only an error
    token, scheme, problem = await _token_from(request)
    if problem:
        return _bearer_error("invalid_request", problem, 400)
    if not token:  # RFC 6750 3.1: no credentials, so no error code either
        return Response(status_code=401, headers={
            "WWW-Authenticate": f'Bearer, DPoP algs="{" ".join(dpop.ALGS)}"',
            "Cache-Control": "no-store"})
    return dpop.with_nonce(request, await run_in_threadpool(_answer, request, token, scheme))


def _answer(request: Request, token: str, scheme: str) -> Response:
    """The claims for a valid token with the ``openid`` scope, or the error to send (a
    DPoP-bound token's with the DPoP scheme, RFC 9449 7.1)."""
    challenge = "DPoP" if scheme == "dpop" else "Bearer"
    claims = read_access_token(request, token)
    if claims is None or claims.get("sub") == claims.get("client_id"):
        return _bearer_error("invalid_token", "the access token is invalid or expired",
                             scheme=challenge)
    if refused := _unproven(request, token, scheme, claims):
        return refused
    if claims.get("aud") != request.app.state.settings.issuer:  # RFC 8707: an API's token
        return _bearer_error("invalid_token", "the access token is for another resource",
                             scheme=challenge)
    client = request.app.state.clients.get(str(claims.get("client_id")))
    if client is None:  # the app was suspended: its tokens stop working (within 30 s)
        return _bearer_error("invalid_token", "the access token is invalid or expired",
                             scheme=challenge)
    cors.share_with_client(request, client)
    if "openid" not in str(claims.get("scope", "")).split():
        return _bearer_error("insufficient_scope", "the token lacks the openid scope", 403,
                             scheme=challenge)
    grant = Grant(client_id=claims["client_id"], scope=claims["scope"], sub=claims["sub"])
    answer = userinfo_claims(request.app.state.db, request.app.state.settings, grant,
                             issued_at(claims))
    if answer is None:  # the account may no longer sign in, or signed out everywhere
        return _bearer_error("invalid_token", "the access token is invalid or expired",
                             scheme=challenge)
    if client.userinfo_signed_response_alg:
        return _signed(request, answer, client.client_id, client.userinfo_signed_response_alg)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


def _unproven(request: Request, token: str, scheme: str,
              claims: dict[str, Any]) -> JSONResponse | None:
    """RFC 9449 7: a bound token needs the DPoP scheme and a proof of its key; an unbound
    one is a bearer token."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt is None:
        if scheme == "dpop":
            return _bearer_error("invalid_token", "the access token is not DPoP-bound",
                                 scheme="DPoP")
        return None
    if scheme != "dpop":
        return _bearer_error("invalid_token", "a DPoP-bound access token comes with the "
                             "DPoP scheme and a proof", scheme="DPoP")
    try:
        proven = dpop.key_shown(request, USERINFO_PATH, token)
        if proven is None:
            raise dpop.InvalidProof("a DPoP proof is required")
    except (dpop.InvalidProof, dpop.UseNonce) as error:  # RFC 9449 9: a nonce to use
        return _bearer_error(error.error, error.description, scheme="DPoP",
                             headers=error.headers)
    if proven != jkt:  # RFC 9449 7.1: the token's key binding fails
        return _bearer_error("invalid_token", "Invalid DPoP key binding", scheme="DPoP")
    return None


def _signed(request: Request, claims: dict[str, Any], client_id: str, alg: str) -> Response:
    """OIDC Core 5.3.2: the claims as a JWT, with ``iss`` and ``aud`` (and ``iat``). No
    ``typ``: ID tokens say ``JWT``, and this is none (it cannot be an ``id_token_hint``)."""
    state = request.app.state
    payload = {**claims, "iss": state.settings.issuer, "aud": client_id,
               "iat": int(time.time())}
    return Response(state.keys.sign(payload, alg), media_type="application/jwt",
                    headers={"Cache-Control": "no-store"})
