"""The pushed authorization request endpoint (RFC 9126).

A client posts its authorization request to ``/oauth2/par`` over the back channel,
authenticated as at the token endpoint (a public client names its ``client_id``); the
request gets the authorization endpoint's checks at once, answered as JSON, and is kept for
``pushed_requests.LIFETIME`` seconds: only the parameters the authorization endpoint
reads (``authorize.PARAMETERS``; never the client's credentials; of a request object
(RFC 9101), its verified parameters). The answer (201) is a
``request_uri`` that the
browser then brings to the authorization endpoint with the ``client_id``, once. Parameters
cannot be tampered with in the browser, and the request needs no length budget in a URL.
An app registered with ``require_pushed_authorization_requests`` may sign people in only
this way.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from idp.oidc import authorize, cors, dpop, pushed_requests
from idp.oidc.errors import OAuthError, invalid_request
from idp.oidc.token_endpoint import NO_STORE, authenticate_request, read_form

router = APIRouter(tags=["oidc"])
PAR_PATH = "/oauth2/par"


async def pushed_authorization_request(request: Request) -> Response:
    """Check, keep, answer: ``{"request_uri": ..., "expires_in": 60}`` (201)."""
    cors.share_publicly(request)  # until the client is known: only an error
    return dpop.with_nonce(request, await _push(request))


async def _push(request: Request) -> JSONResponse:
    try:
        form = await read_form(request)
        proven = await dpop.key_proven(request, PAR_PATH)  # before the credentials
        client = await authenticate_request(request, form)
        cors.share_with_client(request, client)  # a single-page app may push too
        if "request_uri" in form:  # RFC 9126 2.1
            raise invalid_request("request_uri cannot be pushed")
        params = await run_in_threadpool(  # signatures (a request object, id_token_hint)
            authorize.check_pushed, request,
            {k: v for k, v in form.items() if k in authorize.PARAMETERS}, client)
        params = _with_proof_key(params, proven)
        request_uri = await run_in_threadpool(pushed_requests.save, request.app.state.store,
                                              client.client_id, params)
    except OAuthError as error:
        return error.json_response()
    return JSONResponse({"request_uri": request_uri, "expires_in": pushed_requests.LIFETIME},
                        status_code=201, headers=NO_STORE)


def _with_proof_key(params: dict[str, str], jkt: str | None) -> dict[str, str]:
    """RFC 9449 10.1: a DPoP proof sent with the push (of key ``jkt``) binds the code to
    its key, as ``dpop_jkt`` would (both: the same key)."""
    if jkt is None:
        return params
    if params.get("dpop_jkt", jkt) != jkt:
        raise dpop.InvalidProof("dpop_jkt and the DPoP proof name different keys")
    return {**params, "dpop_jkt": jkt}


router.add_route(PAR_PATH, pushed_authorization_request, methods=["POST"],
                 include_in_schema=False)
