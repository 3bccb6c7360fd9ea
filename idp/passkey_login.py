"""Passwordless sign-in with a passkey (usernameless: discoverable credentials).

``POST /login/passkey/options`` answers ``PublicKeyCredentialRequestOptions``
(JSON) for ``navigator.credentials.get``; ``POST /login/passkey/verify`` checks
the assertion (``mfa.webauthn.authenticate``), refuses accounts that may not sign
in (same reasons as the password form), starts a new SSO session with
``amr`` ``["hwk", "user", "mfa"]`` (user verified) or ``["hwk"]`` and the acr
that ``mfa.policy.acr_for`` gives them (``urn:edu:acr:mfa`` with user
verification), resumes the interaction ``ia`` like the password form does and
answers ``{"redirect": ...}``. Both take JSON and the CSRF token in the
``X-CSRF-Token`` header; errors answer ``{"error": "<translated message>"}``.

RFC 8176 ``hwk`` (proof of possession of a hardware-secured key) is used for
every passkey: the server cannot reliably tell a software authenticator.
Administrators must verify the user: :func:`mfa.webauthn.authenticate`
enforces it once the credential names the account.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from core.audit import Context, record
from core.db import utcnow
from core.web import i18n
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.templates import locale_of
from directory.models import Account
from idp import sessions
from idp.login import WAIT, _pending, _refusal, first_factor_done
from idp.oidc import authorize, frontchannel_logout
from mfa import guards
from mfa import webauthn as passkeys

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])



class OptionsBody(BaseModel):
    ia: str = Field("", max_length=100)


class VerifyBody(BaseModel):
    ia: str = Field("", max_length=100)
    credential: dict[str, Any]
    next: str = Field("", max_length=500)  # without ``ia``: a page of this site to go to


def _error(request: Request, message: str, status: int = 400, **params: object) -> Response:
    text = i18n.gettext(locale_of(request), message, **params)
    return JSONResponse({"error": text}, status_code=status)


@router.post("/login/passkey/options")
def passkey_options(request: Request, body: OptionsBody) -> Response:
    try:
        _pending(request, body.ia)
    except PageError as exc:
        return _error(request, exc.message)
    state = request.app.state
    options = passkeys.authentication_options(state.settings, state.store, None, False)
    return JSONResponse(options)


def _as_json(redirect: Response) -> Response:
    """A redirect (with its cookies) as the ``{"redirect": ...}`` the sign-in script
    follows."""
    response = JSONResponse({"redirect": redirect.headers["location"]})
    for cookie in redirect.headers.getlist("set-cookie"):
        response.headers.append("set-cookie", cookie)
    return response


@router.post("/login/passkey/verify")
def passkey_verify(request: Request, body: VerifyBody) -> Response:
    try:
        pending = _pending(request, body.ia)
    except PageError as exc:
        return _error(request, exc.message)
    state = request.app.state
    ip = request.client.host if request.client else "unknown"
    if wait := guards.wait_seconds(state.store, guards.IP, ip):
        return _error(request, WAIT, 429, seconds=wait)
    failure = refusal = ""
    with state.db.session() as session:
        try:
            verified = passkeys.authenticate(session, state.settings, state.store,
                                             body.credential, False, None,
                                             context=Context.of(request))
        except passkeys.PasskeyError as exc:  # audited; commit the audit row
            failure = exc.message
            guards.count_failure(session, state.store, guards.IP, ip, target=f"ip:{ip}",
                                 context=Context.of(request))
        else:
            account = session.get(Account, verified.account_id)
            assert account is not None
            refusal = _refusal(account)
            if refusal:
                record(session, actor=f"account:{account.id}", action="login.passkey",
                       outcome="refused", detail={"status": account.person.status},
                       context=Context.of(request))
            else:
                account.last_login_at = utcnow()
                record(session, actor=f"account:{account.id}", action="login.passkey",
                       outcome="success", context=Context.of(request))
                account_id, sub = account.id, account.sub
    if failure:
        return _error(request, failure)
    if refusal:
        return _error(request, refusal, 403)
    amr = ["hwk", "user", "mfa"] if verified.user_verified else ["hwk"]
    if pending is None:  # the policy's level, a second factor first if needed, as a password
        return _as_json(first_factor_done(request, account_id, sub, amr,
                                          next_url=body.next))
    pending.logged_in_at = int(time.time())  # the app's request: resume applies the policy
    signed_in = sessions.instead_of_current(state.store, request, account_id=account_id,
                                            sub=sub, amr=amr)
    sessions.save(state.store, signed_in.token, signed_in.session)
    pending.account_chosen = account_id
    authorize.save_interaction(request, pending, body.ia)
    response = JSONResponse({"redirect": frontchannel_logout.detour(
        request, signed_in.replaced, f"/oauth2/authorize/resume?ia={body.ia}")})
    sessions.set_cookie(response, request, signed_in.token)
    return response
