"""Sign-in with a phone number and an SMS code (one factor, ``amr`` ``["sms"]``).

``GET /login/sms`` asks for the number; ``POST /login/sms`` sends a code
(:func:`mfa.sms.send_code`, purpose ``login``) and shows the code form, with the
same words and status whether or not the number belongs to an account (nothing
is sent then, nor to a number whose account's codes are suspended after a stolen phone:
``mfa.reset``); ``POST /login/sms/verify`` checks the code and, for an account
that may sign in, goes on like the password form
(:func:`idp.login.first_factor_done`), so the policy may still ask for a second
factor. An account that may not sign in is refused with the plain-words reason
only after a correct code. Every page carries ``ia``, the pending authorization
request, or without one ``next``, a page of this site to go to afterwards, and every form
is CSRF-protected. With ``IDP_SMS_GATEWAY=none`` the pages answer 404.

A **forgotten password** (the sign-in page's link, ``forgot=1`` on every page here): after
the code the browser chooses a new password before going on (``idp.password_change``, the
step an administrator's reset uses), and only there: the code proved the phone, for that
one step. Those the policy asks two factors of are refused right after the code (after an
SMS code no one-time code makes a second factor): their administrator resets it. A session, however
it began, never sets a password without the current one (``/account/security/password``
asks for it), so a passkey or authenticator added from a session left open cannot be used
to take the password over.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import Response

from core.audit import Context, record
from core.db import utcnow
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.i18n import N_
from core.web.templates import locale_of, render, same_page
from directory.models import Account
from idp import sessions
from idp.login import _pending, _refusal, first_factor_done
from idp.oidc.authorize import AuthorizationRequest, required_level
from idp.password_change import phone_mac
from mfa import policy, sms
from mfa.sms_gateways import Gateway, app_gateway

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])

NOT_AVAILABLE = N_("Signing in with an SMS code is not available here.")
BAD_PHONE = N_("Please enter an 11-digit mainland mobile number.")
SEND_WAIT = N_("Too many codes were asked for. Please wait and try again in %(seconds)s s.")
WRONG_CODE = N_("The code is not correct or has expired. Check it, or ask for a new code.")
TOO_MANY = N_("Too many wrong codes. Please ask for a new code.")
FORGOT_NEEDS_TWO = N_("Your account signs in with two factors, and a code to your phone is "
                      "only one: it cannot set a new password. Ask your school's "
                      "administrator to reset your password.")


def gateway(request: Request) -> Gateway:
    """The app's SMS gateway (made once; tests may set ``app.state.sms_gateway``)."""
    found = app_gateway(request.app.state)
    if found is None:
        raise PageError(404, NOT_AVAILABLE)
    return found


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class Carried:
    """What every page of an SMS sign-in carries to the next: ``ia``, the app's pending
    request; without one, ``next``, the page of this site to go to afterwards (a path of
    this site only); ``forgot``: the sign-in of a forgotten password (a new one is chosen
    before going on)."""

    ia: str
    next: str
    forgot: bool

    @classmethod
    def of(cls, ia: str, next_url: str, forgot: str) -> Carried:
        return cls(ia, "" if ia else sessions.safe_next(next_url), forgot == "1")


def _page(request: Request, name: str, carried: Carried, status: int,
          **context: object) -> Response:
    """An SMS sign-in page: the app's name, and its redirect URI in the CSP (the code's
    answer is the redirect to the app)."""
    pending = _pending(request, carried.ia)
    client = request.app.state.clients.get(pending.client_id) if pending else None
    same_page(request, "/login/sms", ia=carried.ia, next=carried.next,  # the number is
              forgot="1" if carried.forgot else "")  # asked again
    return render(request, name, {"ia": carried.ia, "next": carried.next,
                                  "forgot": carried.forgot,
                                  "app_name": client.name if client else None, **context},
                  status=status,
                  form_target=pending.redirect_uri if pending else None)


def _phone_page(request: Request, carried: Carried, phone: str = "", error: str = "",
                status: int = 200, **params: object) -> Response:
    return _page(request, "sms_login.html", carried, status, phone=phone, error=error,
                 error_params=params)


def _code_page(request: Request, carried: Carried, phone: str, error: str = "",
               status: int = 200, **params: object) -> Response:
    return _page(request, "sms_code.html", carried, status, phone=phone,
                 masked=sms.mask(phone), error=error, error_params=params,
                 minutes=sms.CODE_SECONDS // 60)


def _needs_two(request: Request, account_id: int,
               pending: AuthorizationRequest | None) -> bool:
    """Whether the policy asks two factors of this sign-in: after an SMS code no one-time
    code makes two (``idp.mfa_step``), so a forgotten password cannot be set this way."""
    return required_level(request, account_id, pending, None) > policy.level(
        policy.acr_for(["sms"]))


@router.get("/login/sms")
def sms_login_form(request: Request, ia: str = "", next: str = "",
                   forgot: str = "") -> Response:
    gateway(request)
    return _phone_page(request, Carried.of(ia, next, forgot))


@router.post("/login/sms")
def sms_send(request: Request, background: BackgroundTasks, ia: str = Form("", max_length=100),
             phone: str = Form("", max_length=40),
             next: str = Form("", max_length=500),
             forgot_field: str = Form("", alias="forgot", max_length=10)) -> Response:
    sender = gateway(request)
    carried, state = Carried.of(ia, next, forgot_field), request.app.state
    number = sms.normalise(phone)
    if number is None:
        return _phone_page(request, carried, phone.strip(), BAD_PHONE, status=400)
    with state.db.session() as session:
        account = sms.account_for_phone(session, state.settings, number)
        # codes to a stolen phone suspended (mfa.reset): as a number without an account
        held = account is not None and account.sms_suspended_at is not None
        result = sms.send_code(session, state.settings, state.store, sender, number,
                               sms.Purpose.login,
                               account_id=account.id if account and not held else None,
                               ip=_ip(request), locale=locale_of(request),
                               context=Context.of(request), deliver_later=True,
                               suspended=account.id if account and held else None)
    if result.deliver is not None:  # after the answer: registered or not, it takes as long
        background.add_task(result.deliver, state.db)
    if result.status is sms.SendStatus.rate_limited:
        return _phone_page(request, carried, number, SEND_WAIT, status=429,
                           seconds=result.wait)
    return _code_page(request, carried, number)


@router.post("/login/sms/verify")
def sms_verify(request: Request, ia: str = Form("", max_length=100),
               phone: str = Form("", max_length=40),
               code: str = Form("", max_length=20),
               next: str = Form("", max_length=500),
               forgot_field: str = Form("", alias="forgot", max_length=10)) -> Response:
    gateway(request)
    carried, state = Carried.of(ia, next, forgot_field), request.app.state
    number = sms.normalise(phone)
    if number is None:
        return _phone_page(request, carried, phone.strip(), BAD_PHONE, status=400)
    pending = _pending(request, ia)  # an expired request: its page, and the code unspent
    with state.db.session() as session:
        result = sms.verify_code(session, state.settings, state.store, number,
                                 sms.Purpose.login, code, context=Context.of(request))
        account = (session.get(Account, result.account_id)
                   if result.status is sms.VerifyStatus.ok and result.account_id else None)
        if account is None:
            if result.status is sms.VerifyStatus.too_many:
                return _code_page(request, carried, number, TOO_MANY, status=429)
            return _code_page(request, carried, number, WRONG_CODE, status=400)
        if refusal := _refusal(account):
            record(session, actor=f"account:{account.id}", action="login.sms",
                   outcome="refused", detail={"status": account.person.status},
                   context=Context.of(request))
            return _phone_page(request, carried, "", refusal, status=403)
        account_id, sub = account.id, account.sub
        if carried.forgot and _needs_two(request, account_id, pending):
            record(session, actor=f"account:{account_id}", action="login.sms",
                   outcome="refused", detail={"forgotten": "needs two factors"},
                   context=Context.of(request))
            return _phone_page(request, carried, "", FORGOT_NEEDS_TWO, status=403)
        account.last_login_at = utcnow()
        record(session, actor=f"account:{account.id}", action="login.sms", outcome="success",
               context=Context.of(request))
    return first_factor_done(request, account_id, sub, ["sms"], ia, pending=pending,
                             next_url=carried.next, new_password=carried.forgot,
                             phone_mac=phone_mac(state.settings, number)
                             if carried.forgot else "")
