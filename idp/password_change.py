"""A new password before going on: the sign-in after an administrator's password reset.

An administrator's reset (``POST /api/admin/people/{uid}/password/reset``, ``idp security
reset-password``) gives the account a temporary password and sets
``Account.must_change_password``. When the temporary password is then used at ``POST
/login``, no session starts: the browser comes here with a *step* (the account, the
pending app request ``ia``, where to go), kept in the store for ``STEP_SECONDS`` and bound
to this browser by the ``idp_pw`` cookie, like the second-factor step. ``POST
/password/new`` checks the new password (``directory.passwords.problem_with``, twice the
same, not the temporary one), stores it and goes on to the app. When the policy asks for
a second factor, that step comes first (``idp.mfa_step``, ``then_new_password``) and this
one last: the temporary password alone never replaces the owner's. A step begun before the
account was signed out everywhere (another reset) or disabled meanwhile stops.

The same step serves a **forgotten password**: the sign-in page's link signs in by a code
to the account's phone (``idp.sms_login``, ``forgot=1``), and the browser comes here
instead of into a session (a step whose factors hold no password: ``Step.forgotten``).
That one step may replace the password without the current one; no session ever may.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from core.audit import Context
from core.db import utcnow
from core.keyring import keyed_mac
from core.passwords import MAX_PASSWORD_LENGTH
from core.settings import Settings
from core.store import Store
from core.web.csrf import require_csrf
from core.web.i18n import N_
from core.web.templates import render, same_page
from directory import passwords as account_passwords
from directory.models import Account
from directory.people import holds
from idp import sessions
from idp.bound_steps import BoundStep
from mfa import guards, sms

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])
STEP_SECONDS = 600
COOKIE = "idp_pw"
PAGE = "/password/new"
NOT_THE_SAME = N_("The two new passwords are not the same. Please type them again.")
SAME_AS_TEMPORARY = N_("Choose a password of your own, not the temporary one.")


@dataclass
class Step:
    account_id: int
    sub: str
    ia: str = ""
    next: str = ""
    roles: list[str] = field(default_factory=list)
    amr: list[str] = field(default_factory=lambda: ["pwd"])  # the factors shown so far
    proven_here: bool = True  # as in idp.mfa_step.Step
    began: float = 0.0  # a later "sign out everywhere" (another reset) stops the step
    phone_mac: str = ""  # a forgotten password: the number the code went to (keyed MAC)

    @property
    def forgotten(self) -> bool:
        """Begun by a sign-in without the password (an SMS code: the password forgotten),
        not by an administrator's temporary one."""
        return "pwd" not in self.amr


STEPS = BoundStep("pw-step", COOKIE, PAGE, Step, STEP_SECONDS)


def reset(session: Session, settings: Settings, store: Store | None, account: Account, *,
          actor: str, context: Context | None = None) -> str:
    """An administrator's reset (admin API, ``idp security reset-password``): a temporary
    password that the next sign-in must replace, the account signed out everywhere and its
    sign-in lock lifted (``store``: None when it is out of reach, a single-process server's
    memory). Returns the temporary password, to be shown once."""
    from idp import login  # login starts this module's step: imported when used

    temporary = account_passwords.temporary_password()
    account_passwords.set_password(session, login.passwords(settings.password_scheme), account,
                                   temporary, must_change=True, actor=actor,
                                   action="account.password.reset", context=context)
    account.helped_at = utcnow()  # no console role for a while: see administrators.appoint
    if store is not None:
        guards.lift(session, store, guards.ACCOUNT, str(account.id), actor=actor,
                    context=context)
    return temporary


def phone_mac(settings: Settings, number: str) -> str:
    """A forgotten-password step's note of the number its code went to (no number kept)."""
    return keyed_mac(settings, "forgotten-phone/v1", sms.normalise(number) or number)


def _phone_still_theirs(session: Session, settings: Settings, step: Step) -> bool:
    """Whether the number the code went to is still the account's phone, its codes not
    suspended (a stolen phone): a code counts only while its number does."""
    number = sms.phone_of(session, settings, step.account_id)
    return bool(number and step.phone_mac) and hmac.compare_digest(
        phone_mac(settings, number), step.phone_mac)


def begin(request: Request, step: Step) -> Response:
    """Send the browser to the new-password page for ``step``."""
    return STEPS.begin(request, step)


def _page(request: Request, step: Step, error: str = "", status: int = 200) -> Response:
    from idp.oidc import authorize  # login starts this step: imported when used

    # the answer may be the redirect to the app (with its code): Chromium applies the
    # page's form-action to it, so the page allows the app's origin, as /login and /mfa do
    pending = authorize.peek_interaction(request, step.ia)
    same_page(request, PAGE)  # the step is in its cookie
    response = render(request, "password_new.html", {
        "error": error, "min_length": account_passwords.MIN_LENGTH,
        "forgotten": step.forgotten}, status=status,
        form_target=pending.redirect_uri if pending else None)
    response.headers["cache-control"] = "no-store"
    return response


@router.get(PAGE)
def new_password_form(request: Request) -> Response:
    _step_id, step = STEPS.load(request)
    return _page(request, step)


@router.post(PAGE)
def new_password(request: Request,
                 password: str = Form("", max_length=MAX_PASSWORD_LENGTH),
                 again: str = Form("", max_length=MAX_PASSWORD_LENGTH)) -> Response:
    step_id, step = STEPS.load(request)
    if password != again:
        return _page(request, step, NOT_THE_SAME, 400)
    from idp import login  # login starts this step: imported when used

    state = request.app.state
    hasher = login.passwords(state.settings.password_scheme)
    if not holds(state.db, step.account_id, step.began):  # another reset, a suspension ...
        raise sessions.sign_in_stopped()
    with state.db.session() as session:
        account = session.get(Account, step.account_id)
        if account is None or not (account.must_change_password or step.forgotten):
            raise sessions.sign_in_expired()  # changed meanwhile
        if login._refusal(account) or (  # disabled or locked by an administrator meanwhile,
                step.forgotten and not _phone_still_theirs(session, state.settings, step)):
            raise sessions.sign_in_stopped()  # or the number is no longer theirs
        if problem := account_passwords.problem_with(session, state.settings,
                                                     step.account_id, password):
            return _page(request, step, problem, 400)
        if not step.forgotten and hasher.verify(account.password_hash, password).ok:
            return _page(request, step, SAME_AS_TEMPORARY, 400)
        account_passwords.set_password(
            session, hasher, account, password, must_change=False,
            actor=f"account:{account.id}", action="account.password.change",
            context=Context.of(request),
            detail={"forgotten": " ".join(step.amr)} if step.forgotten else None)
        signed_out = account.signed_out_at.timestamp()
    sessions.end_everywhere(state, step.account_id, begun_before=signed_out)
    STEPS.finish(request, step_id)  # of two forms sent at once, one goes on
    response = login.first_factor_done(request, step.account_id, step.sub, step.amr, step.ia,
                                       roles=frozenset(step.roles) if step.roles else None,
                                       next_url=step.next, proven_here=step.proven_here)
    STEPS.clear_cookie(request, response)
    return response
