"""Self-service passkeys: list them (name, added, last use), add one, remove one.

``GET /account/security/passkeys`` is the page; adding a passkey is two JSON
calls made by ``/static/admin/webauthn.js``: ``POST .../options`` (``{"password"}``:
the current password, for an account that has one; creation options) and ``POST
.../register`` (``{"name", "credential"}``), answered with ``{"redirect": ...}`` or
``{"error": ...}``. The current password is asked even right after a sign-in (an account
that has none sets one first, with a code to its phone: ``admin_ui.security_password``): a passkey
signs in on its own (with user verification, as two factors), so one added by whoever sat
down at a session left open on a classroom computer would be theirs for good, surviving a
password change. (An authenticator app or recovery codes are second factors only: without
the password they sign no one in, and the recent sign-in suffices for them.)
``POST .../remove`` is a plain form. All of them are CSRF-protected (scripts send
``X-CSRF-Token``). Administrators' passkeys must verify the user (PIN, fingerprint or
face).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from admin_ui.security_password import current_password_refusal
from core.audit import Context
from core.passwords import MAX_PASSWORD_LENGTH
from core.web import i18n
from core.web.csrf import require_csrf
from core.web.templates import add_folder, locale_of, render
from directory.models import Account
from idp import sessions
from mfa import webauthn as passkeys

PREFIX = "/account/security/passkeys"
router = APIRouter(prefix=PREFIX, include_in_schema=False,
                   dependencies=[Depends(require_csrf)])
add_folder(Path(__file__).parent / "templates")


class OptionsBody(BaseModel):
    password: str = Field("", max_length=MAX_PASSWORD_LENGTH)  # the current one


class RegisterBody(BaseModel):
    name: str = Field("", max_length=200)
    credential: dict[str, Any]




def _error(request: Request, message: str, status: int = 400, **params: object) -> Response:
    return JSONResponse({"error": i18n.gettext(locale_of(request), message, **params)},
                        status_code=status)


NOT_SIGNED_IN = i18n.N_("Please sign in again.")
PASSWORD_FIRST = i18n.N_("Adding a passkey needs your password. Your account has none yet: "
                         "set one first.")


@router.get("")
def passkey_page(request: Request) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PREFIX), status_code=303)
    with request.app.state.db.sessions() as db:
        rows = passkeys.passkeys(db, session.account_id)
        items = [{"uid": r.uid, "name": r.name,
                  "created_at": r.created_at.strftime("%Y-%m-%d %H:%M"),
                  "last_used_at": r.last_used_at.strftime("%Y-%m-%d %H:%M")
                  if r.last_used_at else None} for r in rows]
        admin = passkeys.is_administrator(db, session.account_id)
        account = db.get(Account, session.account_id)
        has_password = account is not None and account.password_hash is not None
    return render(request, "security_passkeys.html", {"passkeys": items, "admin": admin,
                                                      "prefix": PREFIX,
                                                      "has_password": has_password})


@router.post("/options")
def passkey_options(request: Request, body: OptionsBody | None = None) -> Response:
    session = sessions.recent(request)
    if session is None:
        return _error(request, NOT_SIGNED_IN, 401)
    state = request.app.state
    with state.db.session() as db:  # a wrong password's count and audit commit with it
        account = db.get(Account, session.account_id)
        if account is None:
            return _error(request, NOT_SIGNED_IN, 401)
        refusal = current_password_refusal(request, db, account, body.password if body
                                           else "") if account.password_hash is not None \
            else {"error": PASSWORD_FIRST, "status": 400}  # a fresh code sets one first
        if not refusal:
            options = passkeys.registration_options(
                db, state.settings, state.store, account.id, user_name=account.sub,
                display_name=account.person.name,
                require_uv=passkeys.is_administrator(db, account.id))
    if refusal:
        return _error(request, refusal.pop("error"), refusal.pop("status"), **refusal)
    return JSONResponse(options)


@router.post("/register")
def passkey_register(request: Request, body: RegisterBody) -> Response:
    session = sessions.recent(request)
    if session is None:
        return _error(request, NOT_SIGNED_IN, 401)
    state = request.app.state
    failure = ""
    with state.db.session() as db:
        try:
            passkeys.register(db, state.settings, state.store, session.account_id,
                              body.credential, body.name, context=Context.of(request))
        except passkeys.PasskeyError as exc:  # audited; commit the audit row
            failure = exc.message
    if failure:
        return _error(request, failure)
    return JSONResponse({"redirect": PREFIX})


@router.post("/remove")
def passkey_remove(request: Request, uid: str = Form(..., max_length=32)) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PREFIX), status_code=303)
    with request.app.state.db.session() as db:
        passkeys.remove(db, session.account_id, uid, context=Context.of(request))
    return RedirectResponse(PREFIX, status_code=303)
