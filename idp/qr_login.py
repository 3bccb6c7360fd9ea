"""QR-code login pages: the computer shows a code, a signed-in phone approves it.

Desktop (the browser that wants to sign in):

- ``POST /login/qr/ticket`` (JSON ``{"ia": ...}``, CSRF header): a new ticket; answers
  ``{"ticket", "svg", "scan_url", "message"}`` and sets the binding cookie ``idp_qr``
  (HttpOnly, SameSite=Lax, path ``/login/qr``). The login page's script calls it.
- ``GET /login/qr``: the same as a page (works without JavaScript).
- ``GET /login/qr/status?t=``: ``{"status", "message", "final"}`` for the poller
  (``idp/static/qr_login.js``, every 2 s); needs the binding cookie.
- ``POST /login/qr/redeem`` (form, CSRF, binding cookie): takes the approved ticket
  once and goes on like a password sign-in (``idp.login.first_factor_done``) with the
  phone session's ``amr`` and ``auth_time``.

Phone (signed in): ``GET /login/qr/scan?t=`` shows which device, place and app ask;
``POST /login/qr/approve`` and ``POST /login/qr/deny`` (CSRF).

The logic and the states are in ``mfa.qr_login``; see docs/qr-login.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from core.audit import Context
from core.web import cookies, i18n
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.i18n import N_
from core.web.safe_methods import no_action_on_head
from core.web.templates import locale_of, render
from directory.models import Account
from directory.people import holds
from directory.pii import mask_name
from idp import sessions
from idp.login import _refusal, display_name, first_factor_done
from idp.oidc import authorize
from mfa import qr_login as qr

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])

COOKIE = "idp_qr"
# Path=/ with the __Host- prefix over https (``core.web.cookies``): a sibling subdomain or a
# plain-http injector cannot plant a binding secret of their own, which ``qr.create`` reuses
# (each tab's code stays usable) and whose holder would then redeem the approval
COOKIE_PATH = "/"
RATE_WINDOW = 60
RATE_LIMIT = 300  # tickets per IP and minute: generous, a whole school may share one address

HINT = N_("Scan this code with the phone on which you are signed in, then approve on the phone.")
SCANNED = N_("Scanned. Please approve the sign-in on your phone.")
SCANNED_BY = N_("Scanned by %(who)s. Please approve the sign-in on the phone.")
APPROVED = N_("Approved. Signing you in ...")
APPROVED_BY = N_("%(who)s approved on the phone. Continue only if this is you.")
CONTINUE_AS = N_("Continue as %(name)s")  # the same words as select-account
FRESH_LOGIN = N_("This app asks you to sign in again with your password; a QR code cannot be "
                 "used for it.")
TOO_MANY = N_("Too many QR codes were requested. Please wait a minute and try again.")
SIGN_IN_FIRST = N_("Sign in on this phone first, then scan the code on the computer again.")
DONE = N_("You approved the sign-in. Continue on the computer.")
REFUSED = N_("You refused the sign-in. Nothing was unlocked.")
SCAN_WITH_CAMERA = N_("This sign-in link was opened from another website. To approve a "
                      "sign-in on a computer, scan the code it shows with your phone's camera.")
UNKNOWN = N_("unknown")

MESSAGES = {qr.PENDING: HINT, qr.SCANNED: SCANNED, qr.APPROVED: APPROVED,
            qr.DENIED: qr.DENIED_TEXT, qr.EXPIRED: qr.EXPIRED_TEXT, qr.USED: qr.USED_TEXT,
            qr.OTHER_BROWSER: qr.OTHER_BROWSER_TEXT}
HTTP_STATUS = {qr.EXPIRED: 410, qr.USED: 410, qr.OTHER_BROWSER: 403, qr.DENIED: 200}
ERROR_STATUS = {qr.EXPIRED: 410, qr.USED: 410, qr.OTHER_BROWSER: 403, qr.DENIED: 403,
                "not_yet": 409, "other_phone": 409, "stale": 409}


class TicketBody(BaseModel):
    ia: str = Field("", max_length=100)


class NoTicket(Exception):
    """A ticket cannot be made for this request; ``message`` is an English msgid."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _text(request: Request, message: str) -> str:
    return i18n.gettext(locale_of(request), message)


def scan_url(request: Request, ticket_id: str) -> str:
    return f"{request.app.state.settings.issuer}/login/qr/scan?{urlencode({'t': ticket_id})}"


def _new_ticket(request: Request, ia: str) -> tuple[str, str, qr.Ticket]:
    """Check the pending request (``ia``) and the rate, then make a ticket."""
    app_name, max_age = "", None
    if ia:
        pending = authorize.load_interaction(request, ia)  # PageError when expired
        if "login" in pending.prompt:
            raise NoTicket(FRESH_LOGIN, 409)
        client = request.app.state.clients.get(pending.client_id)
        app_name, max_age = (client.name if client else ""), pending.max_age
    store = request.app.state.store
    if store.incr(f"qr-rate:{_ip(request)}", ttl=RATE_WINDOW) > RATE_LIMIT:
        raise NoTicket(TOO_MANY, 429)
    return qr.create(store, user_agent=request.headers.get("user-agent", ""), ip=_ip(request),
                     ia=ia, app=app_name, max_age=max_age,
                     secret=_secret(request))


def _secret(request: Request) -> str:
    return request.cookies.get(cookies.name(request, COOKIE), "")


def _bind(response: Response, request: Request, secret: str) -> Response:
    response.set_cookie(cookies.name(request, COOKIE), secret, httponly=True, samesite="lax",
                        path=COOKIE_PATH,
                        secure=request.url.scheme == "https", max_age=qr.TICKET_SECONDS + 30)
    return response


@router.post("/login/qr/ticket")
def new_ticket(request: Request, body: TicketBody) -> Response:
    try:
        ticket_id, secret, _ticket = _new_ticket(request, body.ia)
    except PageError as exc:
        return JSONResponse({"error": _text(request, exc.message)}, status_code=400)
    except NoTicket as exc:
        return JSONResponse({"error": _text(request, exc.message)}, status_code=exc.status)
    url = scan_url(request, ticket_id)
    return _bind(JSONResponse({"ticket": ticket_id, "scan_url": url, "svg": qr.qr_svg(url),
                               "message": _text(request, HINT),
                               "expires_in": qr.TICKET_SECONDS}), request, secret)


def _desktop_page(request: Request, ticket_id: str, ia: str, message: str = HINT,
                  status: int = 200, approver: str = "") -> Response:
    """The code and its redeem form; with ``approver`` (masked), the question "continue
    as 赵*学?" that a redeem must answer."""
    url = scan_url(request, ticket_id)
    pending = authorize.peek_interaction(request, ia)  # the redeem's answer goes to its app
    shown = {"ticket": ticket_id, "scan_url": url, "svg": qr.qr_svg(url)}
    text = ""
    if approver:
        locale = locale_of(request)
        text = i18n.gettext(locale, APPROVED_BY, who=approver)
        shown.update(approver=approver,
                     **{"continue": i18n.gettext(locale, CONTINUE_AS, name=approver)})
    return render(request, "qr_login.html", {
        "ia": ia, "qr": shown, "qr_message": message, "qr_text": text}, status=status,
        form_target=pending.redirect_uri if pending else None)


def _approver(request: Request, ticket: qr.Ticket) -> str:
    """Whose phone scanned the ticket, masked, as the computer shows it."""
    return mask_name(display_name(request, ticket.scanned_by)) if ticket.scanned_by else ""


def _message(request: Request, message: str, *, title: str = N_("Sign in with a QR code"),
             status: int = 200, link: str = "", link_text: str = "",
             error: bool = True) -> Response:
    return render(request, "qr_message.html", {
        "title": title, "message": message, "link": link, "link_text": link_text,
        "error": error}, status=status)


def _login_link(ia: str) -> str:
    return "/login" + (f"?{urlencode({'ia': ia})}" if ia else "")


@router.get("/login/qr", dependencies=[Depends(no_action_on_head)])
def desktop_page(request: Request, ia: str = Query("", max_length=100)) -> Response:
    """The QR code as a page of its own (the login page's link without JavaScript)."""
    try:
        ticket_id, secret, _ticket = _new_ticket(request, ia)
    except NoTicket as exc:
        return _message(request, exc.message, status=exc.status, link=_login_link(ia),
                        link_text=N_("Back to sign-in"))
    return _bind(_desktop_page(request, ticket_id, ia), request, secret)


@router.get("/login/qr/status")
def ticket_status(request: Request, t: str = Query("", max_length=100)) -> Response:
    """The desktop's poller. Once a phone has scanned, it names (masked) whose phone: a
    bystander who scans the code first would sign this computer in as themselves, so the
    computer never signs in by itself but asks "continue as 赵*学?" (``continue``)."""
    try:
        ticket: qr.Ticket | None = qr.load_bound(request.app.state.store, t,
                                                 _secret(request))
        state = ticket.status
    except qr.QrError as exc:
        ticket, state = None, exc.reason
    body: dict[str, Any] = {"status": state, "message": _text(request, MESSAGES[state]),
                            "final": state not in (qr.PENDING, qr.SCANNED, qr.APPROVED)}
    if ticket is not None and ticket.scanned_by is not None and state != qr.DENIED:
        who = _approver(request, ticket)
        locale = locale_of(request)
        text = SCANNED_BY if state == qr.SCANNED else APPROVED_BY
        body["message"] = i18n.gettext(locale, text, who=who)
        if state == qr.APPROVED:  # the redeem form carries it back: "yes, continue as ..."
            body.update(approver=who, **{"continue": i18n.gettext(locale, CONTINUE_AS,
                                                                  name=who)})
    return JSONResponse(body, status_code=HTTP_STATUS.get(state, 200))


@router.post("/login/qr/redeem")
def redeem(request: Request, t: str = Form("", max_length=100),
           ia: str = Form("", max_length=100),
           approver: str = Form("", max_length=100)) -> Response:
    """The desktop takes its approved ticket (once) and signs in, but only once the person
    has seen whose phone approved: a redeem that does not name the approver (masked, as
    shown) gets the question "continue as 赵*学?" instead (a bystander may have scanned)."""
    state = request.app.state
    secret = _secret(request)
    back = {"link": _login_link(ia), "link_text": N_("Back to sign-in")}
    try:
        ticket: qr.Ticket | None = qr.load_bound(state.store, t, secret)
    except qr.QrError:
        ticket = None  # qr.redeem says why (and audits it)
    if ticket is not None and ticket.ia:  # the app's request must still wait: check first
        authorize.load_interaction(request, ticket.ia)
    if ticket is not None and ticket.status == qr.APPROVED and (
            who := _approver(request, ticket)) != approver:
        return _desktop_page(request, t, ticket.ia, approver=who)
    failure = refusal = ""
    with state.db.session() as session:
        try:
            won = qr.redeem(session, state.store, t, secret, context=Context.of(request))
        except qr.QrError as exc:  # refusals are audited: commit their rows
            failure, reason = exc.message, exc.reason
        else:
            account = session.get(Account, won.account_id)
            refusal = _refusal(account) if account else qr.EXPIRED_TEXT
    if not (failure or refusal) and not holds(state.db, won.account_id, won.created):
        refusal = sessions.SIGN_IN_STOPPED  # signed out everywhere since the code was made
    if failure == qr.NOT_YET_TEXT and ticket is not None:
        return _desktop_page(request, t, ticket.ia, failure, status=409)
    if failure:
        return _message(request, failure, status=ERROR_STATUS[reason], **back)
    if refusal:
        return _message(request, refusal, status=403, **back)
    assert won.account_id is not None
    response = first_factor_done(request, won.account_id, won.sub, won.amr, won.ia,
                                 auth_time=won.auth_time, proven_here=False)
    response.delete_cookie(cookies.name(request, COOKIE), path=COOKIE_PATH,
                           secure=request.url.scheme == "https")
    return response


# -- the phone ----------------------------------------------------------------------------


def _sign_in_first(request: Request, link: str = "/login") -> Response:
    return _message(request, SIGN_IN_FIRST, title=N_("Sign in on your phone first"),
                    status=401, link=link, link_text=N_("Sign in"), error=False)


def _phone_session(request: Request) -> sessions.SSOSession | None:
    return sessions.current(request)


def _device(ticket: qr.Ticket) -> dict[str, Any]:
    return {"browser": ticket.browser or qr.UNKNOWN_BROWSER,
            "system": ticket.system or qr.UNKNOWN_SYSTEM, "ip": ticket.ip or UNKNOWN}


@router.get("/login/qr/scan", dependencies=[Depends(no_action_on_head)])
def scan_page(request: Request, t: str = Query("", max_length=100)) -> Response:
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        # a link or a redirect from another site, not a camera: it would make a signed-in
        # visitor take a stranger's code (and show the stranger's computer their masked
        # name). A camera or a typed address opens it as "none"; browsers too old to send
        # the header are let through.
        return _message(request, SCAN_WITH_CAMERA, status=403)
    session = _phone_session(request)
    if session is None:
        return _sign_in_first(request, "/login?" + urlencode(
            {"next": "/login/qr/scan?" + urlencode({"t": t})}))
    if request.headers.get("sec-fetch-site") == "same-origin":
        # from a page of this site, not a camera: the sign-in's return (``/login?next=``),
        # which a link from anywhere can start. The person confirms with a form first.
        return render(request, "qr_scan_confirm.html", {"t": t})
    return _scanned(request, t, session)


@router.post("/login/qr/scan")
def scan_confirmed(request: Request, t: str = Form("", max_length=100)) -> Response:
    """The confirmation of a scan page reached from this site (CSRF-protected)."""
    session = _phone_session(request)
    if session is None:
        return _sign_in_first(request)
    return _scanned(request, t, session)


def _scanned(request: Request, t: str, session: sessions.SSOSession) -> Response:
    """Take the ticket for this phone's account and show what it asks."""
    try:
        ticket = qr.scan(request.app.state.store, t, session.account_id)
    except qr.QrError as exc:
        return _message(request, exc.message, status=ERROR_STATUS[exc.reason])
    if ticket.status == qr.APPROVED:
        return _message(request, DONE, error=False)
    if ticket.status == qr.DENIED:
        return _message(request, REFUSED, error=False)
    return render(request, "qr_scan.html", {
        "t": t, "app_name": ticket.app, "name": display_name(request, session.account_id),
        **_device(ticket)})


def _decide(request: Request, t: str, approve: bool) -> Response:
    state = request.app.state
    # the phone's session as the account stands now: one that a suspension or a "sign
    # out everywhere" (a lost phone) has voided approves nothing
    found = sessions.load_standing(request)
    loaded = found[0] if found else None
    if loaded is None:
        return _sign_in_first(request)
    phone = loaded[1]
    failure = ""
    with state.db.session() as session:
        try:
            if approve:
                qr.approve(session, state.store, t, account_id=phone.account_id, sub=phone.sub,
                           amr=phone.amr, auth_time=phone.auth_time,
                           context=Context.of(request))
            else:
                qr.deny(session, state.store, t, account_id=phone.account_id,
                        context=Context.of(request))
        except qr.QrError as exc:
            failure, reason = exc.message, exc.reason
    if failure:
        return _message(request, failure, status=ERROR_STATUS[reason])
    return _message(request, DONE if approve else REFUSED, error=False)


@router.post("/login/qr/approve")
def approve(request: Request, t: str = Form("", max_length=100)) -> Response:
    return _decide(request, t, True)


@router.post("/login/qr/deny")
def deny(request: Request, t: str = Form("", max_length=100)) -> Response:
    return _decide(request, t, False)
