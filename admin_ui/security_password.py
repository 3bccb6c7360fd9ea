"""Self-service: change one's password, sign out everywhere.

- ``/account/security/password`` (a recent sign-in, as for every page that changes how one
  signs in): the current password and the new one twice
  (``directory.passwords.problem_with``). An account that has none yet (made by SCIM,
  signing in by SMS code or passkey) sets its first one with a fresh code to its phone
  (the forgotten-password step, ``idp.password_change``), not on a recent sign-in alone:
  whoever sat down at a session left open would otherwise choose it.
  A wrong current password counts as a failed sign-in of the account (``mfa.guards``), so
  an open session cannot be used to guess it. The change signs the account out everywhere
  else: this browser's session goes on under a new cookie, begun after the change.
- ``POST /account/sign-out-everywhere`` (any session of the person): every session and
  every token issued so far ends, this browser's too (its apps are told, as by "sign out").
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from core.audit import Context
from core.passwords import MAX_PASSWORD_LENGTH
from core.web.csrf import require_csrf
from core.web.i18n import N_
from core.web.templates import render
from directory import passwords as account_passwords
from directory.models import Account
from directory.people import sign_out
from idp import login, sessions
from idp.password_change import NOT_THE_SAME
from mfa import guards

PAGE = "/account/security/password"
router = APIRouter(prefix="/account", include_in_schema=False,
                   dependencies=[Depends(require_csrf)])
WRONG_CURRENT = N_("Your current password is not correct.")
CHANGED = N_("Your password was changed. You were signed out on your other devices and apps.")


def _page(request: Request, has_password: bool, *, error: str = "", notice: str = "",
          status: int = 200, **params: object) -> Response:
    response = render(request, "security_password.html", {
        "error": error, "notice": notice, "min_length": account_passwords.MIN_LENGTH,
        "has_password": has_password,
        "error_params": {"min": account_passwords.MIN_LENGTH, **params}}, status=status)
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/security/password")
def password_form(request: Request) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    with request.app.state.db.sessions() as db:
        account = db.get(Account, session.account_id)
        has_password = account is not None and account.password_hash is not None
    return _page(request, has_password,
                 notice=CHANGED if request.query_params.get("done") else "")


def _refusal(request: Request, db: Session, account: Account, current: str, password: str,
             again: str) -> dict[str, Any] | None:
    """Why the change is refused (the page's error, status and parameters), or None: the
    sign-in lock or delay, a wrong current password (counted as a failed sign-in), two
    different new passwords, the rule."""
    if wrong := current_password_refusal(request, db, account, current):
        return wrong
    if password != again:
        return {"error": NOT_THE_SAME, "status": 400}
    if problem := account_passwords.problem_with(db, request.app.state.settings, account.id,
                                                 password):
        return {"error": problem, "status": 400}
    return None


def current_password_refusal(request: Request, db: Session, account: Account,
                             current: str) -> dict[str, Any] | None:
    """None when ``current`` is the account's password; else why not (the page's error,
    status and parameters): the sign-in lock or delay, or a wrong password, counted as a
    failed sign-in, one check at a time as at ``/login``. Also asked before a passkey is
    added (``admin_ui.security_passkeys``)."""
    with guards.sole_check(request.app.state.store, guards.ACCOUNT, str(account.id)) as sole:
        return _wrong_current(request, db, account, current) if sole else {
            "error": login.WAIT, "status": 429, "seconds": 1}


def _wrong_current(request: Request, db: Session, account: Account,
                   current: str) -> dict[str, Any] | None:
    """The account's sign-in lock or delay, or a wrong current password (counted per
    account, per address and for spraying, as at ``/login``), or None: it is right."""
    state, subject = request.app.state, str(account.id)
    locked, seconds = guards.refusal_seconds(state.store, guards.ACCOUNT, subject)
    if locked or seconds:
        return {"error": login.LOCKED if locked else login.WAIT, "status": 429,
                "seconds": seconds, "minutes": -(-seconds // 60)}
    if login.passwords(state.settings.password_scheme).verify(account.password_hash,
                                                              current).ok:
        return None
    login.count_failure(request, db, subject, request.client.host if request.client
                        else "unknown")
    return {"error": WRONG_CURRENT, "status": 400}


@router.post("/security/password")
def change_password(request: Request,
                    current: str = Form("", max_length=MAX_PASSWORD_LENGTH),
                    password: str = Form("", max_length=MAX_PASSWORD_LENGTH),
                    again: str = Form("", max_length=MAX_PASSWORD_LENGTH)) -> Response:
    session = sessions.recent(request)
    loaded = sessions.load(request.app.state.store, request)
    if session is None or loaded is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    state = request.app.state
    with state.db.session() as db:
        account = db.get(Account, session.account_id)
        if account is None:
            return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
        had_password = account.password_hash is not None
        refusal = _refusal(request, db, account, current, password, again) if had_password \
            else {"status": 400}  # the page says how a first one is set (once, not twice)
        if refusal is None:
            account_passwords.set_password(
                db, login.passwords(state.settings.password_scheme), account, password,
                must_change=False, actor=f"account:{account.id}",
                action="account.password.change", context=Context.of(request))
            signed_out = account.signed_out_at.timestamp()
    if refusal is not None:
        return _page(request, had_password, **refusal)
    token, kept = loaded
    kept.begun = time.time()  # begun after the change: this browser stays signed in
    renewed = sessions.renew(state.store, token, kept)
    if renewed is None:  # signed out in another tab meanwhile: the change stands; a sign-in
        response = RedirectResponse(  # (with the new password), then the page that says so
            sessions.reauth_url(f"{PAGE}?done=1"), status_code=303)
        sessions.clear_cookie(response, request)
    else:
        response = RedirectResponse(f"{PAGE}?done=1", status_code=303)
        sessions.set_cookie(response, request, renewed)
    sessions.end_everywhere(state, kept.account_id, begun_before=signed_out)  # the others
    return response


@router.post("/sign-out-everywhere")
def sign_out_everywhere_here(request: Request) -> Response:
    session = sessions.current(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    with request.app.state.db.session() as db:
        account = db.get(Account, session.account_id)
        if account is None:
            return login.logout(request)
        sign_out(db, account, actor=f"account:{account.id}", context=Context.of(request))
        signed_out = account.signed_out_at.timestamp()
    response = login.logout(request)  # this browser's session, as "sign out" does
    sessions.end_everywhere(request.app.state, session.account_id, begun_before=signed_out)
    return response
