"""People-facing pages of the sign-in: login, account choice, consent.

Each page may carry ``ia``, the pending authorization request (an
*interaction*, see ``idp.oidc.authorize``); when it is done the browser goes
back to ``/oauth2/authorize/resume``. Without ``ia`` the login page signs the
person in to the start page. Every form is CSRF-protected.

Login steps: check the wait imposed by earlier failures (per account and per
IP), find the account by any identifier, verify the password (a dummy
verification for unknown accounts, so timing tells nothing), refuse accounts
that may not sign in with a plain-words reason (only once the password is
right, so the reason is not an oracle), upgrade an outdated password hash,
start a new SSO session (a new cookie: no session fixation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.audit import Context, record
from core.db import utcnow
from core.passwords import Passwords
from core.web.csrf import require_csrf
from core.web.i18n import N_
from core.web.templates import render
from directory.identifiers import guess_kinds
from directory.models import Account, PersonStatus
from directory.people import find_account
from idp import mfa_step, sessions
from idp.oidc import authorize, consent
from idp.oidc.authorize import AuthorizationRequest, required_level
from mfa import guards, policy

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])

STATUS_MESSAGES = {
    PersonStatus.suspended.value: N_("This account is suspended. Please contact your school."),
    PersonStatus.graduated.value: N_("This account belongs to a graduate and can no longer sign "
                                     "in. Please contact your school if you need access."),
    PersonStatus.transferred.value: N_("This account was closed after a transfer. Please sign in "
                                       "with the account of your new school."),
    PersonStatus.left.value: N_("This account has been closed. Please contact your school."),
}
DISABLED = N_("This account is disabled. Please contact your school.")
WRONG = N_("The account or password is not correct.")
WAIT = N_("Too many attempts. Please wait %(seconds)s seconds and try again.")

SCOPE_TEXT = {
    "openid": N_("Know who you are (an anonymous account id)"),
    "profile": N_("Your name and basic profile"),
    "email": N_("Your e-mail address"),
    "phone": N_("Your mobile phone number"),
    "edu": N_("Your school, grade, class and roles"),
    "offline_access": N_("Stay connected while you are away"),
}


@cache
def passwords(scheme: str) -> Passwords:
    return Passwords(scheme)



def _pending(request: Request, ia: str) -> AuthorizationRequest | None:
    return authorize.load_interaction(request, ia) if ia else None


def _login_page(request: Request, ia: str, login: str = "", error: str = "",
                status: int = 200, **params: object) -> Response:
    pending = _pending(request, ia)
    client = request.app.state.clients.get(pending.client_id) if pending else None
    return render(request, "login.html", {
        "ia": ia, "login": login or (pending.login_hint if pending else "") or "",
        "error": error, "error_params": params, "app_name": client.name if client else None,
    }, status=status)


@router.get("/login")
def login_form(request: Request, ia: str = "") -> Response:
    return _login_page(request, ia)


@dataclass(frozen=True)
class LoginOutcome:
    account: Account | None
    error: str = ""
    wait: int = 0


def _check_password(request: Request, login: str, password: str) -> LoginOutcome:
    state = request.app.state
    ip = request.client.host if request.client else "unknown"
    if wait := guards.wait_seconds(state.store, guards.IP, ip):
        return LoginOutcome(None, WAIT, wait)
    hasher = passwords(state.settings.password_scheme)
    with state.db.session() as session:
        account = next((a for kind in guess_kinds(login)
                        if (a := find_account(session, kind, login))), None)
        if account and (wait := guards.wait_seconds(state.store, guards.ACCOUNT, str(account.id))):
            return LoginOutcome(None, WAIT, wait)
        result = (hasher.verify(account.password_hash, password) if account
                  else hasher.dummy_verify(password))
        if not result.ok or account is None:
            guards.record_failure(state.store, guards.IP, ip)
            if account:
                guards.record_failure(state.store, guards.ACCOUNT, str(account.id))
            record(session, actor=f"account:{account.id}" if account else "unknown",
                   action="login.password", outcome="failure", context=Context.of(request))
            return LoginOutcome(None, WRONG)
        guards.clear(state.store, guards.ACCOUNT, str(account.id))
        refusal = _refusal(account)
        if refusal:
            record(session, actor=f"account:{account.id}", action="login.password",
                   outcome="refused", detail={"status": account.person.status},
                   context=Context.of(request))
            return LoginOutcome(None, refusal)
        if result.new_hash:
            account.password_hash = result.new_hash
            account.password_changed_at = utcnow()
        account.last_login_at = utcnow()
        record(session, actor=f"account:{account.id}", action="login.password",
               outcome="success", context=Context.of(request))
        session.flush()
        session.expunge(account)
        return LoginOutcome(account)


def _refusal(account: Account) -> str:
    if account.person.status != PersonStatus.active.value:
        return STATUS_MESSAGES.get(account.person.status, DISABLED)
    if account.disabled or (account.locked_until and account.locked_until > utcnow()):
        return DISABLED
    return ""


@router.post("/login")
def login(request: Request, ia: str = Form(""), login: str = Form("", max_length=200),
          password: str = Form("", max_length=1024)) -> Response:
    outcome = _check_password(request, login.strip(), password)
    if outcome.account is None:
        return _login_page(request, ia, login, outcome.error,
                           status=429 if outcome.wait else 400, seconds=outcome.wait)
    return first_factor_done(request, outcome.account.id, outcome.account.sub, ["pwd"], ia)


def first_factor_done(request: Request, account_id: int, sub: str, amr: list[str],
                      ia: str = "", auth_time: int | None = None) -> Response:
    """A first factor (password, SMS code, QR approval ...) succeeded: go on.

    Marks the pending authorization request (``ia``) as freshly logged in; sends the
    browser to the second-factor step when the policy needs more than ``amr`` reaches;
    otherwise starts a new SSO session (a new cookie) and returns to the request or
    to the start page."""
    pending = _pending(request, ia)
    if pending is not None:
        pending.logged_in_at = int(time.time())
        pending.account_chosen = True
        authorize.save_interaction(request, pending, ia)
    if required_level(request, account_id, pending) > policy.level(policy.acr_for(amr)):
        return mfa_step.begin(request, mfa_step.Step(account_id=account_id, sub=sub,
                                                     amr=amr, ia=ia))
    store = request.app.state.store
    if previous := sessions.load(store, request):
        sessions.end(store, previous[0])
    token, session = sessions.start(store, account_id=account_id, sub=sub, amr=amr,
                                    acr=policy.acr_for(amr))
    if auth_time is not None:
        session.auth_time = auth_time
        sessions.save(store, token, session)
    target = f"/oauth2/authorize/resume?ia={ia}" if pending is not None else "/"
    response = RedirectResponse(target, status_code=303)
    sessions.set_cookie(response, request, token)
    return response


@router.get("/select-account")
def select_account_form(request: Request, ia: str) -> Response:
    authorize.load_interaction(request, ia)
    loaded = sessions.load(request.app.state.store, request)
    if loaded is None:
        return RedirectResponse(f"/login?ia={ia}", status_code=303)
    return render(request, "select_account.html", {"ia": ia, "name": _display_name(
        request, loaded[1].account_id)})


@router.post("/select-account")
def select_account(request: Request, ia: str = Form(...), choice: str = Form(...)) -> Response:
    pending = authorize.load_interaction(request, ia)
    if choice == "current":
        pending.account_chosen = True
        authorize.save_interaction(request, pending, ia)
        return RedirectResponse(f"/oauth2/authorize/resume?ia={ia}", status_code=303)
    return RedirectResponse(f"/login?ia={ia}", status_code=303)


def _display_name(request: Request, account_id: int) -> str:
    with request.app.state.db.sessions() as session:
        account = session.get(Account, account_id)
        return account.person.name if account else ""


@router.get("/consent")
def consent_form(request: Request, ia: str) -> Response:
    pending = authorize.load_interaction(request, ia)
    client = request.app.state.clients.get(pending.client_id)
    scopes = [SCOPE_TEXT[s] for s in pending.scope.split() if s in SCOPE_TEXT]
    return render(request, "consent.html", {"ia": ia, "app_name": client.name if client else "",
                                            "scopes": scopes})


@router.post("/consent")
def consent_decision(request: Request, ia: str = Form(...), decision: str = Form(...)) -> Response:
    pending = authorize.load_interaction(request, ia)
    loaded = sessions.load(request.app.state.store, request)
    if decision != "allow" or loaded is None:
        return authorize.deny(request, ia, "the person did not allow access")
    consent.grant(request.app.state.db, loaded[1].account_id, pending.client_id, pending.scope)
    pending.consent_given = True
    authorize.save_interaction(request, pending, ia)
    return RedirectResponse(f"/oauth2/authorize/resume?ia={ia}", status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    """End this browser's SSO session (RP-initiated logout comes with federation)."""
    store = request.app.state.store
    if loaded := sessions.load(store, request):
        sessions.end(store, loaded[0])
    response = RedirectResponse("/", status_code=303)
    sessions.clear_cookie(response)
    return response
