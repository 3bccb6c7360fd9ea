"""Token introspection (RFC 7662) for confidential clients.

A client learns only about tokens issued to it, except that a client registered as a
protected resource (``protected_resource: true``: an API or a gateway in front of several)
learns about every app's access tokens. Anything else, and every
invalid, expired or revoked token, is ``{"active": false}``; so is a token of an
account that may no longer sign in (disabled, or its person suspended, graduated,
transferred or gone), learnt within 30 seconds (``directory.people.StandingBySub``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core import json_input
from core.db import utcnow
from directory import subjects
from directory.apps import ClientMetadata
from idp.oidc import refresh_tokens, resources
from idp.oidc.access_tokens import issued_at, read_access_token
from idp.oidc.errors import OAuthError, invalid_client
from idp.oidc.tokens import Grant

router = APIRouter(tags=["oidc"])
PUBLIC = ("iss", "sub", "aud", "exp", "iat", "client_id", "scope", "jti", "auth_time", "acr",
          "amr", "sid", "cnf")


def _access(request: Request, token: str, client: ClientMetadata) -> dict[str, Any] | None:
    """The answer for an access token; None when ``token`` is no (valid) access token."""
    claims = read_access_token(request, token)
    if claims is None:
        return None
    if claims.get("client_id") != client.client_id and not _for(claims, client):
        return {"active": False}
    if request.app.state.clients.get(str(claims.get("client_id"))) is None:
        return {"active": False}  # the app was suspended (within 30 s)
    audience = str(claims.get("aud"))
    if audience != request.app.state.settings.issuer and resources.given_up_since(
            request.app.state.store, audience, int(claims.get("iat") or 0)):
        return {"active": False}  # for an API that gave up the identifier since
    sub = claims.get("sub")
    if sub and sub != claims.get("client_id") and not request.app.state.standing.allows(
            str(sub), issued_at(claims)):
        return {"active": False}  # the person may no longer sign in, or signed out
        # everywhere after it was issued (within 30 s)
    return {"active": True, "token_type": "DPoP" if "cnf" in claims else "Bearer",
            **{k: claims[k] for k in PUBLIC if k in claims}}


def _for(claims: dict[str, Any], client: ClientMetadata) -> bool:
    """Whether a protected resource may learn about another app's access token: a gateway
    (no ``resource_identifiers``) about all; an API that registered identifiers only about
    the tokens for it (RFC 8707): a token for another API or for the issuer, replayed at
    it, is ``active: false`` even to an API that reads nothing but ``active``."""
    if not client.protected_resource:
        return False
    return not client.resource_identifiers or claims.get("aud") in client.resource_identifiers


def _refresh(request: Request, token: str, client: ClientMetadata) -> dict[str, Any] | None:
    """The answer for a refresh token (only ever the client's own: refresh tokens go to
    no resource server); None when ``token`` is no refresh token."""
    state = request.app.state
    row = refresh_tokens.find(state.db, state.settings, token)
    if row is None:
        return None
    if (row.client_id != client.client_id or row.revoked_at or row.used_at
            or row.expires_at <= utcnow()
            or not refresh_tokens.account_may_continue(state.db, row)):
        return {"active": False}
    try:
        grant = Grant.read(json_input.loads(row.grant_json))
    except (OAuthError, ValueError):  # one the token endpoint refuses too (another version's)
        return {"active": False}
    if refresh_tokens.session_ended(state.store, grant):  # no offline_access, and its
        return {"active": False}  # sign-in has ended (signed out, idled out)
    if grant.resources and not resources.held_as_granted(state.resources, grant.resources,
                                                          grant.resource_owners):
        return {"active": False}  # every API it names is another app's now
    sub = grant.sub
    if client.sector is not None and isinstance(sub, str):  # the id the app knows
        with state.db.session() as session:
            sub = subjects.known(session, client.sector, row.account_id, sub)
    about = {"sub": sub, "scope": grant.scope}
    return {"active": True, "client_id": row.client_id,
            **{k: v for k, v in about.items() if isinstance(v, str)},
            "exp": int(row.expires_at.timestamp()), "iss": state.settings.issuer}


def _inspect(request: Request, token: str, hint: str | None,
             client: ClientMetadata) -> dict[str, Any]:
    """RFC 7662 2.1: the hint only says where to look first; the other kind is searched
    too when the token is not found there."""
    kinds = [_refresh, _access] if hint == "refresh_token" else [_access, _refresh]
    for inspect_kind in kinds:
        if (answer := inspect_kind(request, token, client)) is not None:
            return answer
    return {"active": False}


@router.post("/oauth2/introspect", summary="Token introspection (RFC 7662)")
async def introspect(request: Request) -> JSONResponse:
    from idp.oidc.token_endpoint import authenticate_request, read_form

    try:
        form = await read_form(request)
        client = await authenticate_request(request, form)
        if client.is_public:
            raise invalid_client("public clients cannot introspect")
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        body = await run_in_threadpool(_inspect, request, token, form.get("token_type_hint"),
                                       client)
    except OAuthError as error:
        return error.json_response()
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
