"""The second-factor step of a sign-in, and step-up of an existing session.

When ``mfa.policy`` asks for more than a session has (or than the password just
gave), the browser comes here with a *step*: who is signing in, which methods
they have used, and where to go afterwards (the pending authorization request
``ia``, or the start page). The step lives in the store, bound to this browser
by the ``idp_mfa`` cookie, for ``STEP_SECONDS``. Only when the second factor
succeeds does an SSO session start (or, for step-up, the existing session is
upgraded with the new ``amr``, ``acr`` and ``auth_time``).

A person who must use a second factor but has none enrolled proves it with an SMS code to
the phone number on file, when there is one (an authenticator app is then set up from the
account pages, with both factors); only a person with neither sets up an authenticator app
right here (the first valid code both confirms it and completes the sign-in): someone who
has only stolen a password cannot add their own app while an SMS code is possible.

A person who cannot finish the step leaves it (``POST /mfa/cancel``): back to the sign-in
page of the same request, where another person may sign in. The page also says what to do
about a lost phone: an administrator resets the second factors (``mfa.reset``).

A person with recovery codes may use one instead of the app's code
(``POST /mfa/recovery``); it counts as a one-time code (``amr`` ``otp``, see
docs/mfa.md) and is audited as a recovery-code use.

A person whose account has a phone login with a known number (``mfa.sms.phone_of``; none
while its SMS codes are suspended after a stolen phone, ``mfa.reset``, so that such a person
is treated as one with no phone on file) may ask for an SMS code instead
(``POST /mfa/sms/send``, then ``POST /mfa/sms``); it counts as ``sms``
(``["pwd", "sms", "mfa"]``). Codes for this step are bound to the purpose ``mfa`` and to
the account, so a sign-in code cannot be used here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.audit import Context
from core.field_crypto import open_
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.i18n import N_
from core.web.safe_methods import no_action_on_head
from core.web.templates import locale_of, render, same_page
from directory.identifiers import IdentifierKind
from directory.models import Account
from directory.people import holds
from idp import password_change, sessions
from idp.bound_steps import BoundStep
from idp.oidc import frontchannel_logout
from mfa import credentials, policy, recovery, sms, totp
from mfa.sms_gateways import app_gateway

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])
STEP_SECONDS = 600
COOKIE = "idp_mfa"
CANNOT_ENROL_HERE = N_("A second factor cannot be set up after signing in with a QR code. "
                       "Sign in with your password to set one up, or use a recovery code.")
ENROL_AFTER_PASSWORD = N_("A second factor can only be set up right after signing in with "
                          "your password. Sign in again with your password to set one up, "
                          "or use a recovery code.")
PASSWORD_FIRST = N_("This way of signing in cannot be completed with a second factor. "
                    "Sign in with your password instead.")
WRONG_CODE = N_("The code is not correct, or it was already used. Please try the next code.")
WRONG_RECOVERY_CODE = N_("The recovery code is not correct, or it was already used.")
TOO_MANY = N_("Too many wrong codes. Wait a few minutes and try again.")
SMS_WRONG_CODE = N_("The code is not correct or has expired. Check it, or ask for a new code.")
SMS_TOO_MANY = N_("Too many wrong codes. Please ask for a new code.")
SMS_WAIT = N_("Too many codes were asked for. Please wait and try again in %(seconds)s s.")
SMS_FAILED = N_("The text message could not be sent just now. Please try again in a few "
                "minutes, or use another way below.")
CODES_LOCKED = N_("Too many wrong codes: codes are not checked for the next %(minutes)s "
                  "minutes. Use another way below, or ask your school's administrator to "
                  "unlock your account.")


@dataclass
class Step:
    account_id: int
    sub: str
    amr: list[str]
    ia: str = ""
    upgrade: bool = False  # step-up of the browser's existing session
    enrolment_uid: str = ""
    next: str = ""  # where to go afterwards without a pending request (a path on this site)
    # False after a QR approval from a phone: no factor can be set up here, and the session
    # it ends in is not "proven here" either (idp.sessions.is_recent)
    proven_here: bool = True
    # after an administrator's password reset: a new password is chosen after this step,
    # not before (the temporary password alone must not replace the owner's)
    then_new_password: bool = False
    began: float = 0.0  # a "sign out everywhere" after this stops the step (``finish``)


STEPS = BoundStep("mfa-step", COOKIE, "/mfa", Step, STEP_SECONDS)


def begin(request: Request, step: Step) -> Response:
    """Send the browser to the second-factor page for ``step``."""
    return STEPS.begin(request, step)


def _label_of(session: Any, account_id: int) -> str:
    """The account name shown in the authenticator app: a login identifier, never a phone."""
    account = session.get(Account, account_id)
    for identifier in account.identifiers if account else []:
        if identifier.kind != IdentifierKind.phone.value:
            return identifier.value
    return str(account_id)


@dataclass(frozen=True)
class _Enrolment:
    secret_base32: str
    otpauth_uri: str


def _enrolment(session: Any, settings: Any, step: Step) -> _Enrolment | None:
    """The authenticator-app enrolment this step started (to show its QR code again)."""
    row = totp.pending(session, step.account_id, step.enrolment_uid)  # None once expired
    secret = open_(settings, credentials.SECRET, row) if row else None
    if secret is None:
        return None
    return _Enrolment(secret, totp.otpauth_uri(secret, _label_of(session, step.account_id)))


def _sms_phone(request: Request, session: Any, step: Step) -> str | None:
    """The number an SMS code for this step goes to (None: SMS is not offered, e.g. when
    the first factor was already an SMS code: the same phone is not a second factor)."""
    settings = request.app.state.settings
    if not settings.sms_enabled or "sms" in step.amr:
        return None
    return sms.phone_of(session, settings, step.account_id)


def _two_reachable(step: Step) -> bool:
    """Whether a one-time code (an app's, an SMS's or a recovery code) added to what the
    step has makes two factors: not after an SMS sign-in (``policy.acr_for``: two codes
    may come from the same phone)."""
    return policy.acr_for([*step.amr, "otp"]) == policy.ACR_MFA


def _cannot_enrol(request: Request, step: Step) -> str:
    """Why no authenticator app may be set up in this step ("" when one may): only right
    after the password was typed in this browser. Not after a QR approval from a phone,
    nor in a step-up of a session whose sign-in is not recent (``sessions.is_recent``, as
    the account pages ask): a session left open must not let someone add their own app."""
    if not step.proven_here:
        return CANNOT_ENROL_HERE
    if "pwd" not in step.amr:
        return ENROL_AFTER_PASSWORD
    if step.upgrade:
        loaded = sessions.load(request.app.state.store, request)
        if (loaded is None or loaded[1].account_id != step.account_id
                or not sessions.is_recent(loaded[1])):
            return ENROL_AFTER_PASSWORD
    return ""


def _page(request: Request, step_id: str, step: Step, error: str = "",
          status: int = 200, *, sms_sent: bool = False, **params: object) -> Response:
    settings = request.app.state.settings
    with request.app.state.db.session() as session:
        has_totp = bool(credentials.confirmed(session, step.account_id,
                                              credentials.FactorKind.totp))
        has_recovery = recovery.remaining(session, step.account_id) > 0
        phone = _sms_phone(request, session, step)
        enrolment = None
        sms_only = not has_totp and phone is not None
        blocked = not _two_reachable(step)
        if blocked:  # a code would not make two factors (an SMS sign-in): no loop here
            error, sms_only, phone, has_recovery = error or PASSWORD_FIRST, False, None, False
        elif not has_totp and not sms_only and (refusal := _cannot_enrol(request, step)):
            error = error or refusal
        elif not has_totp and not sms_only:  # nothing else to prove it: set up an app here
            enrolment = _enrolment(session, settings, step) if step.enrolment_uid else None
            if enrolment is None:
                label = _label_of(session, step.account_id)
                started = totp.begin_enrolment(session, settings, step.account_id,
                                               "Authenticator app", label=label)
                step.enrolment_uid = started.uid
                STEPS.save(request, step_id, step)
                enrolment = started
    context = {"error": error, "error_params": params, "enrol": enrolment is not None,
               "sms_only": sms_only,
               "has_recovery": has_recovery, "sms_phone": sms.mask(phone) if phone else "",
               "sms_sent": sms_sent, "sms_minutes": sms.CODE_SECONDS // 60,
               "upgrade": step.upgrade,
               # no code to type here: nothing set up, and nothing may be set up now
               "no_code": blocked or (not has_totp and not sms_only and enrolment is None)}
    if enrolment is not None:
        context.update(qr_svg=totp.qr_svg(enrolment.otpauth_uri),
                       otpauth_uri=enrolment.otpauth_uri,
                       secret=" ".join(enrolment.secret_base32[i:i + 4]
                                       for i in range(0, len(enrolment.secret_base32), 4)))
    from idp.oidc import authorize  # authorize starts this step: imported when used

    pending = authorize.peek_interaction(request, step.ia)  # the answer may go to its app
    same_page(request, "/mfa")  # the step is in its cookie
    return render(request, "mfa.html", context, status=status,
                  form_target=pending.redirect_uri if pending else None)


@router.get("/mfa", dependencies=[Depends(no_action_on_head)])  # may begin an enrolment
def second_factor_form(request: Request) -> Response:
    step_id, step = STEPS.load(request)
    return _page(request, step_id, step)


@router.post("/mfa")
def second_factor(request: Request, code: str = Form("", max_length=12)) -> Response:
    step_id, step = STEPS.load(request)
    state = request.app.state
    code = code.strip().replace(" ", "")
    with state.db.session() as session:
        if step.enrolment_uid:
            ok = totp.confirm(session, state.settings, state.store, step.account_id,
                              step.enrolment_uid, code)
        else:
            ok = totp.verify(session, state.settings, state.store, step.account_id, code)
    if not ok:
        if locked := totp.locked_seconds(state.store, step.account_id):  # say so: a wrong
            return _page(request, step_id, step, CODES_LOCKED, status=429,  # code it is not
                         minutes=-(-locked // 60))
        return _page(request, step_id, step, WRONG_CODE, status=400)
    STEPS.finish(request, step_id)  # one of two factors sent at once
    return finish(request, step, "otp")


@router.post("/mfa/recovery")
def recovery_code(request: Request,
                  recovery_code: str = Form("", max_length=40)) -> Response:
    """A recovery code instead of the authenticator app's code (single use)."""
    step_id, step = STEPS.load(request)
    state = request.app.state
    with state.db.session() as session:
        ok = recovery.use(session, state.settings, state.store, step.account_id,
                          recovery_code, context=Context.of(request))
        locked = not ok and recovery.locked_seconds(state.store, step.account_id) > 0
    if not ok:
        return _page(request, step_id, step, TOO_MANY if locked else WRONG_RECOVERY_CODE,
                     status=429 if locked else 400)
    STEPS.finish(request, step_id)  # one of two factors sent at once
    return finish(request, step, "otp")


@router.post("/mfa/sms/send")
def sms_send(request: Request) -> Response:
    """Text a code to the account's phone (rate-limited like the SMS sign-in)."""
    step_id, step = STEPS.load(request)
    state = request.app.state
    with state.db.session() as session:
        phone = _sms_phone(request, session, step)
        sender = app_gateway(state)
        if phone is None or sender is None:
            raise PageError(404, N_("Text message codes are not available for this account."))
        result = sms.send_code(session, state.settings, state.store, sender, phone,
                               sms.Purpose.mfa, account_id=step.account_id,
                               ip=request.client.host if request.client else "unknown",
                               locale=locale_of(request), context=Context.of(request))
    if result.status is sms.SendStatus.rate_limited:
        return _page(request, step_id, step, SMS_WAIT, status=429, seconds=result.wait)
    if result.status is not sms.SendStatus.sent:
        return _page(request, step_id, step, SMS_FAILED, status=503)
    return _page(request, step_id, step, sms_sent=True)


@router.post("/mfa/sms")
def sms_code(request: Request, sms_code: str = Form("", max_length=20)) -> Response:
    """An SMS code as the second factor (``amr`` ``sms``)."""
    step_id, step = STEPS.load(request)
    state = request.app.state
    with state.db.session() as session:
        phone = _sms_phone(request, session, step)
        result = (sms.verify_code(session, state.settings, state.store, phone, sms.Purpose.mfa,
                                  sms_code, account_id=step.account_id,
                                  context=Context.of(request)) if phone else None)
    if result is None or result.status is not sms.VerifyStatus.ok:
        too_many = result is not None and result.status is sms.VerifyStatus.too_many
        return _page(request, step_id, step, SMS_TOO_MANY if too_many else SMS_WRONG_CODE,
                     status=429 if too_many else 400, sms_sent=not too_many)
    STEPS.finish(request, step_id)  # one of two factors sent at once
    return finish(request, step, "sms")


@router.post("/mfa/cancel")
def cancel(request: Request) -> Response:
    """Leave the step (not this person, or no way to prove it today): the step is forgotten
    and the browser goes back to the sign-in page of the same request, where someone else
    may sign in; a step-up without an app's request goes back where it came from."""
    step_id, step = STEPS.load(request)
    STEPS.forget(request, step_id)
    if step.ia:
        target = f"/login?ia={quote(step.ia)}"
    elif step.upgrade:
        target = sessions.safe_next(step.next) or "/"
    else:
        next_url = sessions.safe_next(step.next)
        target = f"/login?next={quote(next_url)}" if next_url else "/login"
    response = RedirectResponse(target, status_code=303)
    STEPS.clear_cookie(request, response)
    return response


def finish(request: Request, step: Step, method: str) -> Response:
    """The second factor succeeded: start or upgrade the SSO session (or, after a password
    reset, choose the new password first), then go on. A step begun before the account was
    signed out everywhere (a reset meanwhile) or that may no longer sign in stops here."""
    store = request.app.state.store
    if not holds(request.app.state.db, step.account_id, step.began):
        raise sessions.sign_in_stopped()
    amr = policy.with_second_factor(step.amr, method)
    if step.then_new_password and not step.upgrade:
        response = password_change.begin(request, password_change.Step(
            account_id=step.account_id, sub=step.sub, ia=step.ia, next=step.next, amr=amr,
            proven_here=step.proven_here))
        STEPS.clear_cookie(request, response)
        return response
    acr = policy.acr_for(amr)
    loaded = sessions.load(store, request) if step.upgrade else None
    if step.upgrade and (loaded is None or loaded[1].account_id != step.account_id):
        raise sessions.sign_in_expired()  # signed out meanwhile, or someone else signed in
    if loaded is not None:
        token, session = loaded
        session.amr, session.acr, session.auth_time = amr, acr, int(time.time())
        renewed = sessions.renew(store, token, session)
        if renewed is None:  # signed out in another tab meanwhile (a step-up there goes on)
            raise sessions.sign_in_expired()
        token, replaced = renewed, None
    else:
        signed_in = sessions.instead_of_current(
            store, request, account_id=step.account_id, sub=step.sub, amr=amr,
            proven_here=step.proven_here)
        token, replaced = signed_in.token, signed_in.replaced
        sessions.save(store, token, signed_in.session)
    target = (f"/oauth2/authorize/resume?ia={step.ia}" if step.ia
              else sessions.safe_next(step.next) or "/")
    response = RedirectResponse(frontchannel_logout.detour(request, replaced, target),
                                status_code=303)
    sessions.set_cookie(response, request, token)
    STEPS.clear_cookie(request, response)
    return response
