"""The token endpoint (RFC 6749 section 3.2): authenticate the client, then run its grant.

Grants: ``authorization_code`` (with PKCE, RFC 7636), ``refresh_token`` (rotation
with reuse detection) and ``client_credentials``. ``client_credentials`` runs
entirely on the event loop with no database or store access (cached client,
HMAC secret check, one signature): it is the path the benchmark measures (with a
``resource``, the cached API registry too). A DPoP proof (``idp.oidc.dpop``), when sent, is
checked first, before the client's credentials, in a worker thread (its ``jti`` is
remembered in the store), and the grant binds its tokens to the proof's key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from directory.apps import ClientMetadata
from idp.oidc import clients, codes, cors, dpop, refresh_tokens, resources, scopes
from idp.oidc.errors import OAuthError, invalid_request
from idp.oidc.tokens import Grant, issue_access_token

router = APIRouter(tags=["oidc"])
TOKEN_PATH = "/oauth2/token"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


MAX_BODY = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict; repeated parameters are an error (RFC 6749 3.2), and
    one sent without a value counts as omitted (RFC 6749 3.1).

    Parsed with ``urllib.parse`` rather than the multipart machinery: this is the hot path
    of every back-channel request, and only urlencoded bodies are allowed here."""
    if not is_form(request):
        raise invalid_request("the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise invalid_request("the body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100,
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("the body is not valid form data (UTF-8, at most 100 "
                              "parameters)") from None
    values: dict[str, str] = {}
    for name, value in resources.gathered(pairs):  # RFC 8707: resource may be repeated
        if not value:  # RFC 6749 3.1: as if omitted, wherever it comes (not a repeat)
            continue
        if name in values:
            raise invalid_request(f"parameter {name} is repeated")
        values[name] = value
    return values


def is_form(request: Request) -> bool:
    """Whether the body is urlencoded: the media type exactly, whatever its parameters
    (``; charset=UTF-8``); media types are case-insensitive (RFC 9110 8.3.1)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0]
    return media_type.strip().lower() == "application/x-www-form-urlencoded"


def assertion_audience(request: Request) -> clients.AssertionAudience:
    """What a client assertion's ``aud`` may name here: the issuer; unless
    ``IDP_CLIENT_ASSERTION_AUDIENCE=issuer``, also the token endpoint or the endpoint it is
    sent to (introspection, revocation), which libraries such as authlib put."""
    settings = request.app.state.settings
    issuer = settings.issuer
    if settings.client_assertion_audience == "issuer":
        return clients.AssertionAudience(issuer, frozenset({issuer}))
    return clients.AssertionAudience(
        issuer, frozenset({issuer, issuer + TOKEN_PATH, issuer + request.url.path}))


def token_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=NO_STORE)


def requested_scope(form: dict[str, str], client: ClientMetadata,
                    default: frozenset[str]) -> str:
    asked = form.get("scope")
    try:
        wanted = set(scopes.values(asked)) if asked is not None else set(default)
    except ValueError as malformed:
        raise OAuthError("invalid_scope", str(malformed)) from None
    if not wanted <= client.allowed_scopes:
        raise OAuthError("invalid_scope", "the client may not ask for: "
                         + " ".join(sorted(wanted - client.allowed_scopes)))
    return " ".join(sorted(wanted))


async def client_credentials(request: Request, form: dict[str, str],
                             client: ClientMetadata) -> dict[str, Any]:
    if client.is_public:
        raise OAuthError("unauthorized_client", "public clients cannot use client_credentials")
    scope = requested_scope(form, client, client.allowed_scopes - scopes.USER_SCOPES)
    if set(scope.split()) & scopes.USER_SCOPES:
        raise OAuthError("invalid_scope", "client_credentials carries no user scopes")
    state, jkt = request.app.state, dpop.key_of(request)
    # RFC 8707: the API the token is for (no resource: the issuer, no registry lookup)
    asked = resources.for_one_token(state.resources, form, client.client_id)
    audience = resources.audience(state.resources, asked, None, client.client_id)
    token = issue_access_token(state.keys, state.store, state.settings.issuer, client,
                               Grant(client_id=client.client_id, scope=scope), jkt, audience)
    body = {"access_token": token.token, "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": token.expires_in}
    if scope:
        body["scope"] = scope
    return body


GrantHandler = Callable[[Request, dict[str, str], ClientMetadata], Awaitable[dict[str, Any]]]
GRANTS: dict[str, GrantHandler] = {
    "authorization_code": codes.authorization_code,
    "refresh_token": refresh_tokens.refresh,
    "client_credentials": client_credentials,
}


async def token(request: Request) -> Response:
    """OAuth 2.0 token endpoint (a plain Starlette route: no dependency injection to solve)."""
    cors.share_publicly(request)  # until the client is known: only an error
    return dpop.with_nonce(request, await _token(request))


async def _token(request: Request) -> JSONResponse:
    try:
        form = await read_form(request)
        proven = await dpop.key_proven(request, TOKEN_PATH)  # before the credentials
        client = await authenticate_request(request, form)
        cors.share_with_client(request, client)
        grant_type = form.get("grant_type", "")
        if not grant_type:
            raise invalid_request("grant_type is required")
        handler = GRANTS.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type} is not supported")
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", f"the client may not use {grant_type}")
        bind_dpop(request, client, proven)
        return token_response(await handler(request, form, client))
    except OAuthError as error:
        return error.json_response()


def bind_dpop(request: Request, client: ClientMetadata, proven: str | None) -> None:
    """RFC 9449 5: keep the key of the request's DPoP proof (``proven``), if any, for the
    grant to bind the tokens to; an app registered with ``dpop_bound_access_tokens`` must
    send one."""
    if proven is None and client.dpop_bound_access_tokens:
        raise dpop.InvalidProof("this client must send a DPoP proof")
    dpop.remember(request, proven)


async def authenticate_request(request: Request, form: dict[str, str]) -> ClientMetadata:
    state = request.app.state
    args = (form, request.headers.get("authorization", ""), state.clients, state.settings,
            state.store, assertion_audience(request))
    if form.get("client_assertion"):  # touches the store (jti): leave the event loop
        return await run_in_threadpool(clients.authenticate, *args)
    return clients.authenticate(*args)


router.add_route(TOKEN_PATH, token, methods=["POST"], include_in_schema=False)
