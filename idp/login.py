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
from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import utcnow
from core.keyring import keyed_mac
from core.passwords import Passwords
from core.settings import Settings
from core.store import Store
from core.web.csrf import require_csrf
from core.web.i18n import N_
from core.web.templates import render
from directory import identifiers
from directory import passwords as account_passwords
from directory.models import Account, PersonStatus
from directory.people import find_for_sign_in
from idp import mfa_step, password_change, sessions
from idp.login_page import render_login
from idp.oidc import authorize, consent, end_session, frontchannel_logout, resources
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
TEMPORARY_EXPIRED = N_("This temporary password has expired. Ask your teacher or your "
                       "school's administrator for a new one.")
WRONG = N_("The account or password is not correct. Check what you typed and try again.")
WRONG_FEW_LEFT = N_("The account or password is not correct. Wrong attempts left before the "
                    "account is locked for %(lock_minutes)s min: %(left)s.")
# Warned from this many attempts left on: a person who mistyped once or twice sees nothing.
WARN_LEFT = 3
WAIT = N_("Too many attempts. Please wait and try again in %(seconds)s s.")
LOCKED = N_("This account is temporarily locked after too many wrong passwords. Try again in "
            "%(minutes)s min, or ask your teacher or your school's administrator to unlock "
            "it. If you have set up a passkey, you can still sign in with it.")
LOCKED_IP = N_("Too many failed sign-ins came from your network. Sign-in with a password from "
               "here is paused for %(minutes)s minutes.")

SCOPE_TEXT = {
    "openid": N_("Know who you are (an anonymous account id)"),
    "profile": N_("Your name and basic profile"),
    "email": N_("Your e-mail address"),
    "phone": N_("Your mobile phone number"),
    "address": N_("Your home address"),
    "edu": N_("Your school, grade, class and roles"),
    "offline_access": N_("Keep access to your account when you are not using the app"),
}
# A scope the consent page has no words for (an API's own, such as "api.read"): named as it
# is, never left out (what is released must be on the page the person agrees to).
OTHER_SCOPE_TEXT = N_("Use the permission “%(scope)s” on your behalf")


@cache
def passwords(scheme: str) -> Passwords:
    return Passwords(scheme)



def _pending(request: Request, ia: str) -> AuthorizationRequest | None:
    return authorize.load_interaction(request, ia) if ia else None


def _login_page(request: Request, ia: str, login: str = "", error: str = "",
                status: int = 200, next_url: str = "", **params: object) -> Response:
    return render_login(request, ia, _pending(request, ia), login=login, error=error,
                        status=status, next_url=next_url, **params)


@router.get("/login")
def login_form(request: Request, ia: str = "", next: str = "") -> Response:
    return _login_page(request, ia, next_url=next)


@dataclass(frozen=True)
class LoginOutcome:
    account: Account | None
    error: str = ""
    wait: int = 0
    roles: frozenset[str] = frozenset()
    left: int = 0  # wrong attempts left before the account is locked (with WRONG_FEW_LEFT)


def _refused_early(store: Store, limit: guards.Limit, subject: str) -> LoginOutcome | None:
    """A lock or a progressive delay that refuses this attempt before any check."""
    locked, seconds = guards.refusal_seconds(store, limit, subject)
    if locked:
        message = LOCKED_IP if limit is guards.IP else LOCKED
        return LoginOutcome(None, message, seconds)
    return LoginOutcome(None, WAIT, seconds) if seconds else None


def _as_typed(settings: Settings, login: str) -> str:
    """The name typed, as failures count it: a keyed MAC of its normalised form (whom a
    failure counts against when it names nobody; what a warning counts)."""
    return "login:" + keyed_mac(settings, "login-guard/v1", identifiers.canonical(login))[:32]


def count_failure(request: Request, session: Session, subject: str,
                   ip: str) -> guards.Counted:
    """Count a wrong password per account, per IP and for spraying; audit any new lock.
    Returns the account's count."""
    store, context = request.app.state.store, Context.of(request)
    counted = guards.count_failure(session, store, guards.ACCOUNT, subject,
                                   target=_target(subject), context=context)
    guards.count_failure(session, store, guards.IP, ip, target=f"ip:{ip}", context=context)
    if guards.record_spraying(store, ip, subject):
        record(session, actor="system", action="security.spraying", outcome="success",
               target=f"ip:{ip}", context=context,
               detail={"distinct_accounts": guards.SPRAY_ACCOUNTS,
                       "seconds": guards.SPRAY_LOCK_SECONDS})
    return counted


def _target(subject: str) -> str:
    return "login:unknown" if subject.startswith("login:") else f"account:{subject}"


def _check_password(request: Request, login: str, password: str) -> LoginOutcome:
    """The password steps: IP lock/delay, find, one check of the account at a time, account
    lock/delay, verify, refuse, record."""
    state = request.app.state
    ip = request.client.host if request.client else "unknown"
    if early := _refused_early(state.store, guards.IP, ip):
        return early
    with state.db.session() as session:
        found = find_for_sign_in(session, state.settings, login)
        account, roles = found if found else (None, frozenset[str]())
        typed = _as_typed(state.settings, login)
        subject = typed if account is None else str(account.id)
        with guards.sole_check(state.store, guards.ACCOUNT, subject) as sole:
            if not sole:  # another attempt on this account is being checked right now
                return LoginOutcome(None, WAIT, 1)
            if early := _refused_early(state.store, guards.ACCOUNT, subject):
                return early
            return _verify(request, session, account, roles, (subject, typed), ip, password)


def _typed_key(typed: str) -> str:
    return f"fail-typed:{typed}"


def _left_as_typed(store: Store, subject: str, typed: str, counted: guards.Counted) -> int:
    """The wrong attempts left that a warning may tell: counted per name *as typed*, not
    per account. Per account, a warning after one wrong password typed as a pupil's phone
    number would tell how many were typed as the pupil's number: that the two name one
    account. A name that belongs to nobody is counted as typed anyway (its subject)."""
    if subject == typed:
        return counted.left
    count = store.incr(_typed_key(typed), ttl=guards.WINDOW_SECONDS)
    return max(0, guards.ACCOUNT.lock_after - count)


def _verify(request: Request, session: Session, account: Account | None,
            roles: frozenset[str], subjects: tuple[str, str], ip: str,
            password: str) -> LoginOutcome:
    """Verify the password (a dummy verification when nobody was found), count a failure,
    refuse an account that may not sign in, or note the sign-in. ``subjects``: whom a
    failure counts against (the account, or the name typed) and the name typed."""
    state, (subject, typed) = request.app.state, subjects
    hasher = passwords(state.settings.password_scheme)
    result = (hasher.verify(account.password_hash, password) if account
              else hasher.dummy_verify(password))
    if not result.ok or account is None:
        counted = count_failure(request, session, subject, ip)
        record(session, actor=_target(subject), action="login.password",
               outcome="failure", context=Context.of(request))
        return _wrong(counted, _left_as_typed(state.store, subject, typed, counted))
    guards.clear(state.store, guards.ACCOUNT, subject, _typed_key(typed))
    refusal = _refusal(account) or _temporary_expired(account)
    if refusal:
        record(session, actor=f"account:{account.id}", action="login.password",
               outcome="refused", detail={"status": account.person.status},
               context=Context.of(request))
        return LoginOutcome(None, refusal)
    guards.record_sign_in(state.store, ip, subject)
    _signed_in(session, account, result.new_hash)
    record(session, actor=f"account:{account.id}", action="login.password",
           outcome="success", context=Context.of(request))
    session.expunge(account)
    return LoginOutcome(account, roles=roles)


def _wrong(counted: guards.Counted, left: int) -> LoginOutcome:
    """A wrong password: said plainly, with the attempts ``left`` when few are, or the lock
    it has just set (the same for a name that belongs to nobody: no account oracle)."""
    if counted.locked or not counted.left:
        return LoginOutcome(None, LOCKED, guards.ACCOUNT.lock_seconds)
    if 0 < left <= WARN_LEFT:
        return LoginOutcome(None, WRONG_FEW_LEFT, left=left)
    return LoginOutcome(None, WRONG)


_ACCOUNT = Account.__table__


def _signed_in(session: Session, account: Account, new_hash: str | None) -> None:
    """Note the sign-in (and a rehashed password) with one Core ``UPDATE``, no ORM flush;
    the statement is built once, its ``SET`` columns are the parameters given."""
    now = utcnow()
    values: dict[str, object] = {"signed_in_id": account.id, "last_login_at": now}
    if new_hash:
        values.update(password_hash=new_hash, password_changed_at=now)
    session.connection().execute(_SIGNED_IN, values)


_SIGNED_IN = update(_ACCOUNT).where(_ACCOUNT.c.id == bindparam("signed_in_id"))


def _temporary_expired(account: Account) -> str:
    """An administrator's temporary password serves ``passwords.TEMPORARY_DAYS``."""
    changed = account.password_changed_at
    if account.must_change_password and changed is not None and (
            utcnow() - changed).days >= account_passwords.TEMPORARY_DAYS:
        return TEMPORARY_EXPIRED
    return ""


def _refusal(account: Account) -> str:
    if account.person.status != PersonStatus.active.value:
        return STATUS_MESSAGES.get(account.person.status, DISABLED)
    if account.disabled or (account.locked_until and account.locked_until > utcnow()):
        return DISABLED
    return ""


@router.post("/login")
def login(request: Request, ia: str = Form(""), login: str = Form("", max_length=200),
          password: str = Form("", max_length=1024),
          next: str = Form("", max_length=500)) -> Response:
    pending = _pending(request, ia)  # an expired request: its page, before any sign-in
    outcome = _check_password(request, login.strip(), password)
    if outcome.account is None:
        return render_login(request, ia, pending, login=login, error=outcome.error,
                            status=429 if outcome.wait else 400, next_url=next,
                            seconds=outcome.wait, minutes=-(-outcome.wait // 60),
                            left=outcome.left,
                            lock_minutes=guards.ACCOUNT.lock_seconds // 60)
    return first_factor_done(request, outcome.account.id, outcome.account.sub, ["pwd"], ia,
                             roles=outcome.roles, next_url=next, pending=pending,
                             new_password=outcome.account.must_change_password)


def first_factor_done(request: Request, account_id: int, sub: str, amr: list[str],
                      ia: str = "", auth_time: int | None = None,
                      roles: frozenset[str] | None = None, next_url: str = "",
                      proven_here: bool = True,
                      pending: AuthorizationRequest | None = None,
                      new_password: bool = False, phone_mac: str = "") -> Response:
    """A first factor (password, SMS code, QR approval ...) succeeded: go on.

    Marks the pending authorization request (``ia``) as freshly logged in; sends the
    browser to the second-factor step when the policy needs more than ``amr`` reaches;
    otherwise starts a new SSO session (a new cookie) and carries on with the pending
    request right away (no extra redirect through ``/oauth2/authorize/resume``), or
    goes to ``next_url`` (a path on this site) or the start page. ``roles``: the
    person's current roles, when the caller has them already (saves a query);
    ``proven_here``: False when the factors were shown on another device (QR);
    ``pending``: the request of ``ia``, when the caller has loaded it already (callers
    load it before they spend a factor, so that an expired request spends nothing);
    ``new_password``: the password was an administrator's temporary one: a new one is
    chosen (``idp.password_change``) once the factors the policy asks for are shown, or it
    was forgotten (an SMS code: ``phone_mac`` names the number the code went to)."""
    # a step still under way in this browser (someone else's second factor or new password,
    # left open on a shared computer) must not finish for whoever signs in now
    end_session.forget_pending_steps(request)
    pending = pending or _pending(request, ia)
    if pending is not None:
        pending.logged_in_at = int(time.time())
        pending.account_chosen = account_id
    needed = required_level(request, account_id, pending, roles)
    if needed > policy.level(policy.acr_for(amr)):
        if pending is not None:
            authorize.save_interaction(request, pending, ia)
        return mfa_step.begin(request, mfa_step.Step(account_id=account_id, sub=sub,
                                                     amr=amr, ia=ia, next=next_url,
                                                     proven_here=proven_here,
                                                     then_new_password=new_password))
    if new_password:
        if pending is not None:
            authorize.save_interaction(request, pending, ia)
        return password_change.begin(request, password_change.Step(
            account_id=account_id, sub=sub, ia=ia, next=next_url, amr=amr,
            roles=sorted(roles or ()), proven_here=proven_here, phone_mac=phone_mac))
    store = request.app.state.store
    signed_in = sessions.instead_of_current(store, request, account_id=account_id, sub=sub,
                                            amr=amr, proven_here=proven_here)
    token, session = signed_in.token, signed_in.session
    if auth_time is not None:
        session.auth_time = auth_time
    sessions.mark_unsaved(request, token)  # its first write: the code's (add_app) or below
    if pending is not None and not frontchannel_logout.frames(request, signed_in.replaced):
        response = authorize.carry_on(request, pending, ia, (token, session), needed)
    else:  # the app's request resumes after the previous person's apps were told
        if pending is not None:
            authorize.save_interaction(request, pending, ia)
        target = (f"/oauth2/authorize/resume?ia={ia}" if pending is not None
                  else sessions.safe_next(next_url) or "/")
        response = RedirectResponse(
            frontchannel_logout.detour(request, signed_in.replaced, target), status_code=303)
    if sessions.is_unsaved(request, token):  # no code recorded its app (which saves it)
        sessions.save(store, token, session)
    sessions.set_cookie(response, request, token)
    return response


@router.get("/select-account")
def select_account_form(request: Request, ia: str) -> Response:
    pending = authorize.load_interaction(request, ia)
    current = sessions.current(request)
    if current is None:
        return RedirectResponse(f"/login?ia={ia}", status_code=303)
    return render(request, "select_account.html", {"ia": ia, "name": display_name(
        request, current.account_id)}, form_target=pending.redirect_uri)


@router.post("/select-account")
def select_account(request: Request, ia: str = Form(...), choice: str = Form(...)) -> Response:
    pending = authorize.load_interaction(request, ia)
    current = sessions.current(request)
    if choice == "current" and current is not None:
        pending.account_chosen = current.account_id
        authorize.save_interaction(request, pending, ia)
        return RedirectResponse(f"/oauth2/authorize/resume?ia={ia}", status_code=303)
    return RedirectResponse(f"/login?ia={ia}", status_code=303)


def display_name(request: Request, account_id: int) -> str:
    with request.app.state.db.sessions() as session:
        account = session.get(Account, account_id)
        return account.person.name if account else ""


@router.get("/consent")
def consent_form(request: Request, ia: str) -> Response:
    pending = authorize.load_interaction(request, ia)
    client = request.app.state.clients.get(pending.client_id)
    scopes = [{"text": SCOPE_TEXT.get(s, OTHER_SCOPE_TEXT), "scope": s}
              for s in pending.scope.split()]
    current = sessions.current(request)  # whose account: two pupils may share a computer
    return render(request, "consent.html", {
        "ia": ia, "app_name": client.name if client else "", "scopes": scopes,
        "apis": [resources.name_of(request.app.state, r) for r in pending.resources],
        "display": pending.display,
        "name": display_name(request, current.account_id) if current else ""},
        form_target=pending.redirect_uri)


@router.post("/consent")
def consent_decision(request: Request, ia: str = Form(...), decision: str = Form(...)) -> Response:
    pending = authorize.load_interaction(request, ia)
    current = sessions.current(request)  # a person who may still sign in
    if decision != "allow" or current is None:
        return authorize.deny(request, ia, "the person did not allow access")
    consent.grant(request.app.state.db, current.account_id, pending.client_id, pending.scope,
                  pending.apis())
    pending.consent_given = current.account_id
    authorize.save_interaction(request, pending, ia)
    return RedirectResponse(f"/oauth2/authorize/resume?ia={ia}", status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    """End this browser's SSO session (the start page's button; apps use the end-session
    endpoint, ``idp.oidc.end_session``)."""
    frames = []
    if loaded := sessions.load(request.app.state.store, request):
        frames = end_session.sign_out(request, loaded)
    end_session.forget_pending_steps(request)
    response: Response = (end_session.signed_out_page(request, frames) if frames
                          else RedirectResponse("/?signed_out=1" if loaded else "/",
                                                status_code=303))
    sessions.clear_cookie(response, request)
    return response
