"""A tiny demo relying party, served in dev mode at ``/demo/rp``.

It is an ordinary confidential client of this provider (registered by
``idp demo``, credentials in ``var/demo.json``): it sends the browser to the
authorization endpoint with PKCE, redeems the code at the token endpoint over
HTTP like any app would, and shows the ID token, its claims, and whether its
SM2 signature verifies against the published JWKS. Newcomers click "log in"
and see the whole protocol at work.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from core import json_input
from core.gm import jose as gm_jose
from core.web.safe_methods import no_action_on_head
from core.web.templates import render

router = APIRouter(prefix="/demo/rp", include_in_schema=False)
CLIENT_NAME = "示范应用（SM2）"
COOKIE = "demo_rp"


def _client(request: Request) -> dict[str, Any] | None:
    from idp.demo import demo_path

    try:
        content = json.loads(demo_path(request.app.state.settings).read_text())
    except (OSError, ValueError):
        return None
    return next((c for c in content.get("clients", []) if c.get("demo_rp")), None)


def _callback(request: Request) -> str:
    return request.app.state.settings.issuer + "/demo/rp/callback"


@router.get("")
@router.get("/")
def start(request: Request) -> Response:
    return render(request, "demo_rp.html", {"client": _client(request), "result": None})


@router.get("/login", dependencies=[Depends(no_action_on_head)])
def login(request: Request) -> Response:
    client = _client(request)
    if client is None:
        return RedirectResponse("/demo/rp", status_code=303)
    verifier, state, nonce = (secrets.token_urlsafe(48), secrets.token_urlsafe(16),
                              secrets.token_urlsafe(16))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client["client_id"], "scope": "openid profile edu",
        "redirect_uri": _callback(request), "state": state, "nonce": nonce,
        "code_challenge": challenge.decode(), "code_challenge_method": "S256",
    })
    response = RedirectResponse(f"/oauth2/authorize?{query}", status_code=303)
    response.set_cookie(COOKIE, json.dumps([state, nonce, verifier]), httponly=True,
                        samesite="lax", max_age=600, path="/demo/rp")
    return response


def _post_token(request: Request, client: dict[str, Any], code: str,
                verifier: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": _callback(request),
                                   "code_verifier": verifier}).encode()
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode())
    call = urllib.request.Request(  # noqa: S310 - our own issuer URL
        request.app.state.settings.issuer + "/oauth2/token", data=body, method="POST",
        headers={"Authorization": "Basic " + basic.decode(),
                 "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read() or b"{}")
    except (urllib.error.URLError, TimeoutError) as error:  # the issuer URL does not answer
        return {"error": "the token endpoint cannot be reached", "error_description": str(
            getattr(error, "reason", error))}


def _verify(request: Request, id_token: str) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    header_b64 = id_token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    with urllib.request.urlopen(  # noqa: S310 - our own issuer URL
        request.app.state.settings.issuer + "/oauth2/jwks/all", timeout=10
    ) as answer:
        jwks = json.loads(answer.read())
    try:
        claims = json.loads(gm_jose.verify_jws(id_token, gm_jose.import_key_set(jwks)))
        return True, header, claims
    except Exception:  # any failure is "does not verify", shown to the person
        return False, header, {}


def _sign_out_url(request: Request, id_token: str) -> str:
    """RP-initiated logout: back to this page once the provider has signed the person out."""
    return "/oauth2/logout?" + urllib.parse.urlencode({
        "id_token_hint": id_token, "post_logout_redirect_uri": _start_page(request),
        "state": secrets.token_urlsafe(16)})


def _start_page(request: Request) -> str:
    return request.app.state.settings.issuer + "/demo/rp"


@router.get("/callback", dependencies=[Depends(no_action_on_head)])
def callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
    client = _client(request)
    try:
        expected_state, nonce, verifier = json_input.loads(request.cookies.get(COOKIE, "[]"))
    except (ValueError, TypeError):  # a cookie this page did not write
        expected_state = nonce = verifier = ""
    if error or not code or state != expected_state or client is None:
        result = {"error": error or "state mismatch or missing code"}
        return render(request, "demo_rp.html", {"client": client, "result": result})
    tokens = _post_token(request, client, code, verifier)
    if "id_token" not in tokens:
        return render(request, "demo_rp.html", {"client": client, "result": tokens})
    valid, header, claims = _verify(request, tokens["id_token"])
    result = {"valid": valid and claims.get("nonce") == nonce, "header": header,
              "claims": claims, "id_token": tokens["id_token"],
              "sign_out": _sign_out_url(request, tokens["id_token"])}
    response = render(request, "demo_rp.html", {"client": client, "result": result})
    response.delete_cookie(COOKIE, path="/demo/rp")
    return response
