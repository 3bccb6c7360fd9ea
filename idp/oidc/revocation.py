"""Token revocation (RFC 7009) and the access-token deny list.

Any client may revoke its own tokens (public clients identify themselves with
``client_id``). Revoking a refresh token revokes its whole family and the access
tokens issued with it (RFC 7009 2.1); revoking a JWT access token puts its ``jti``
on a deny list until it expires; an opaque access token is deleted. The answer is
200 whether or not the token existed; a token issued to another client is refused
with ``invalid_request`` (RFC 7009 2.1) and stays valid. A token bound to a DPoP key (an
access token's ``cnf``, a public app's refresh token) is revoked only with a proof of
that key (``invalid_dpop_proof`` otherwise): without the key, whoever holds a copy of it,
or an old rotated one, cannot sign the person out of the app.
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from idp.oidc import cors, dpop, refresh_tokens
from idp.oidc.access_tokens import read_access_token, revoke_access_jti
from idp.oidc.errors import OAuthError

router = APIRouter(tags=["oidc"])
REVOKE_PATH = "/oauth2/revoke"


NOT_YOURS = OAuthError("invalid_request", "the token was not issued to this client")


def _revoke_refresh(request: Request, token: str, client_id: str) -> bool:
    """Revoke a refresh token's family and the access tokens issued with it; False when
    ``token`` is no refresh token."""
    state = request.app.state
    row = refresh_tokens.find(state.db, state.settings, token)
    if row is None:
        return False
    if row.client_id != client_id:
        raise NOT_YOURS
    _check_key(request, json.loads(row.grant_json).get("jkt"))
    refresh_tokens.revoke_family(state.db, state.store, row.family)
    return True


def _check_key(request: Request, jkt: str | None) -> None:
    """A bound token: the request must hold a DPoP proof of its key (checked before the
    client's credentials, ``dpop.key_proven``)."""
    if jkt and dpop.key_of(request) != jkt:
        raise dpop.InvalidProof("the token is bound to a DPoP key: send a proof made with it")


def _revoke_access(request: Request, token: str, client_id: str) -> bool:
    """Deny-list a JWT access token, delete an opaque one; False when it is neither."""
    claims = read_access_token(request, token, check_revoked=False)
    if claims is None:
        return False
    if claims.get("client_id") != client_id:
        raise NOT_YOURS
    cnf = claims.get("cnf")
    _check_key(request, cnf.get("jkt") if isinstance(cnf, dict) else None)
    if claims.get("_opaque_key"):
        request.app.state.store.delete(claims["_opaque_key"])
    revoke_access_jti(request.app.state.store, claims["jti"], claims["exp"] - time.time())
    return True


def _revoke(request: Request, token: str, hint: str | None, client_id: str) -> None:
    """RFC 7009 2.1: the hint only says where to look first; the other kind is searched
    too when the token is not found there."""
    kinds = [_revoke_refresh, _revoke_access]
    if hint == "access_token":
        kinds.reverse()
    for revoke_kind in kinds:
        if revoke_kind(request, token, client_id):
            return


@router.post(REVOKE_PATH, summary="Token revocation (RFC 7009)")
async def revoke(request: Request) -> Response:
    cors.share_publicly(request)  # until the client is known: only an error
    return dpop.with_nonce(request, await _revoke_request(request))


async def _revoke_request(request: Request) -> Response:
    from idp.oidc.token_endpoint import authenticate_request, read_form

    try:
        form = await read_form(request)
        dpop.remember(request, await dpop.key_proven(request, REVOKE_PATH))
        client = await authenticate_request(request, form)
        cors.share_with_client(request, client)
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        hint = form.get("token_type_hint")
        await run_in_threadpool(_revoke, request, token, hint, client.client_id)
    except OAuthError as error:
        return error.json_response()
    return JSONResponse({}, headers={"Cache-Control": "no-store"})


