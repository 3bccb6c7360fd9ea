"""QR-code login tickets: a phone that is signed in approves a sign-in on a computer.

The computer ("desktop") asks for a ticket (:func:`create`) and shows it as a QR
code of ``{issuer}/login/qr/scan?t=<ticket id>``. The person scans it with a phone
on which they are signed in, sees which device and place is asking and approves
(:func:`scan`, :func:`approve`) or refuses (:func:`deny`). The desktop polls
(:func:`status`) and, once approved, redeems the ticket (:func:`redeem`): the web
layer then starts its SSO session with the phone session's ``amr`` and
``auth_time`` carried in the ticket.

A ticket lives in the store under ``qr:<id>`` for :data:`TICKET_SECONDS` from its
creation (later updates keep the remaining lifetime). It is bound to the desktop
browser by a random *binding secret* that the web layer keeps in an HttpOnly
cookie; the ticket holds only its SM3 hash, and only a request carrying the secret
may read the status or redeem, so the ticket id (which the QR code shows to anyone
nearby) is not enough. States::

    pending --scan--> scanned --approve--> approved --redeem--> (gone, "used")
                         \\--deny--> denied

Redemption happens at most once: the ticket is removed with the store's atomic
:meth:`~core.store.Store.take` and a ``qr-used:<id>`` marker is set with
``set_if_absent``; only the caller that wins both may sign in (the marker also
refuses a ticket that a late concurrent update wrote back after the take), and it
lets the second attempt say "already used" rather than "expired".

The first account that scans a ticket owns it: another phone gets "already
scanned". Approvals, refusals and redemptions (including refused redemptions)
are audited; ticket ids and secrets are never logged (the audit target is a short
hash of the id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import segno
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.store import Store
from core.web.i18n import N_

TICKET_SECONDS = 120
ID_BYTES = 24  # 192 bits
SECRET_BYTES = 32

PENDING, SCANNED, APPROVED, DENIED = "pending", "scanned", "approved", "denied"
# Not stored states: what the desktop is told when there is no usable ticket.
EXPIRED, USED, OTHER_BROWSER = "expired", "used", "other_browser"

EXPIRED_TEXT = N_("This QR code has expired. Get a new code on the computer and scan it again.")
USED_TEXT = N_("This QR code has already been used. Get a new code on the computer.")
OTHER_BROWSER_TEXT = N_("This QR code was made in another browser. Sign in from the browser that "
                        "shows the code, or get a new code here.")
OTHER_PHONE_TEXT = N_("This QR code has already been scanned on another phone. Get a new code on "
                      "the computer.")
DENIED_TEXT = N_("The sign-in was refused on the phone.")
NOT_YET_TEXT = N_("The sign-in has not been approved yet. Approve it on your phone first.")
STALE_TEXT = N_("The app asks for a recent sign-in. Sign out on your phone, sign in again, "
                "then scan the code again.")
UNKNOWN_BROWSER = N_("Unknown browser")
UNKNOWN_SYSTEM = N_("unknown system")

_ID = re.compile(r"^[A-Za-z0-9_-]{32}\Z")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}\Z")


class QrError(Exception):
    """A refused step; ``reason`` is a code (``expired``, ``used`` ...), ``message`` an
    English msgid."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason, self.message = reason, message


_ERRORS = {
    EXPIRED: EXPIRED_TEXT, USED: USED_TEXT, OTHER_BROWSER: OTHER_BROWSER_TEXT,
    DENIED: DENIED_TEXT, "not_yet": NOT_YET_TEXT, "other_phone": OTHER_PHONE_TEXT,
    "stale": STALE_TEXT,
}


def _error(reason: str) -> QrError:
    return QrError(reason, _ERRORS[reason])


@dataclass
class Ticket:
    binding: str  # SM3 of the desktop's binding secret (hex)
    created: int
    browser: str  # the desktop, coarsely: browser and operating system, from its user agent
    system: str
    ip: str
    ia: str = ""  # the pending authorization request of the desktop, if any
    app: str = ""  # the name of the app asking (shown on the phone)
    max_age: int | None = None  # the request's max_age: the phone session must be this recent
    status: str = PENDING
    scanned_by: int | None = None  # the account whose phone scanned it first
    account_id: int | None = None  # set on approval: who signs in, and how and when they
    sub: str = ""  # authenticated on the phone
    amr: list[str] = field(default_factory=list)
    auth_time: int | None = None
    # the stored bytes it was read from (not a field: never stored), what ``_save`` swaps
    loaded: ClassVar[bytes] = b""


def _key(ticket_id: str) -> str:
    return f"qr:{ticket_id}"


def _used_key(ticket_id: str) -> str:
    return f"qr-used:{ticket_id}"


def _digest(value: str) -> str:
    return hashlib.new("sm3", value.encode()).hexdigest()


def audit_target(ticket_id: str) -> str:
    """How the audit log names a ticket: a short hash, never the id itself."""
    return "qr:" + _digest(ticket_id)[:16]


def valid_id(ticket_id: str) -> bool:
    return bool(_ID.match(ticket_id or ""))


def valid_secret(secret: str) -> bool:
    return bool(_SECRET.match(secret or ""))


# Order matters: many browsers name the ones they are built on (Edge says Chrome and Safari).
_BROWSERS = (("MicroMessenger", "WeChat"), ("DingTalk", "DingTalk"), ("QQBrowser", "QQ Browser"),
             ("Edg/", "Edge"), ("EdgA/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (("HarmonyOS", "HarmonyOS"), ("Windows", "Windows"), ("iPhone", "iOS"),
            ("iPad", "iPadOS"), ("Android", "Android"), ("CrOS", "ChromeOS"),
            ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("Linux", "Linux"))


def describe_agent(user_agent: str) -> tuple[str, str]:
    """A coarse ``(browser, system)`` from a User-Agent header, e.g. ``("Edge", "Windows")``;
    ``""`` for what cannot be told (the caller shows "unknown")."""
    agent = user_agent[:400]
    browser = next((name for token, name in _BROWSERS if token in agent), "")
    system = next((name for token, name in _SYSTEMS if token in agent), "")
    return browser, system


def create(store: Store, *, user_agent: str, ip: str, ia: str = "", app: str = "",
           max_age: int | None = None, secret: str = "") -> tuple[str, str, Ticket]:
    """A new pending ticket; returns ``(ticket_id, binding_secret, ticket)``.

    ``secret`` reuses the browser's current binding secret (another tab's), so each tab's
    code stays usable; a new one is made when it is missing or malformed."""
    if not valid_secret(secret):
        secret = secrets.token_urlsafe(SECRET_BYTES)
    ticket_id = secrets.token_urlsafe(ID_BYTES)
    browser, system = describe_agent(user_agent)
    ticket = Ticket(binding=_digest(secret), created=int(time.time()), browser=browser,
                    system=system, ip=ip[:64], ia=ia, app=app[:200], max_age=max_age)
    store.set(_key(ticket_id), json.dumps(asdict(ticket)).encode(), ttl=TICKET_SECONDS)
    return ticket_id, secret, ticket


def _load(store: Store, ticket_id: str) -> Ticket:
    raw = store.get(_key(ticket_id)) if valid_id(ticket_id) else None
    if raw is None:
        used = valid_id(ticket_id) and store.get(_used_key(ticket_id)) is not None
        raise _error(USED if used else EXPIRED)
    ticket = Ticket(**json.loads(raw))
    ticket.loaded = raw
    return ticket


def _bound(ticket: Ticket, secret: str) -> bool:
    return valid_secret(secret) and hmac.compare_digest(ticket.binding, _digest(secret))


def load_bound(store: Store, ticket_id: str, secret: str) -> Ticket:
    """The desktop's view: the ticket, if it exists and ``secret`` is its binding."""
    ticket = _load(store, ticket_id)
    if not _bound(ticket, secret):
        raise _error(OTHER_BROWSER)
    return ticket


def _save(store: Store, ticket_id: str, ticket: Ticket) -> None:
    """Write back an update of the ticket as it was loaded, keeping its remaining lifetime,
    atomically: a ticket redeemed (taken), expired, or updated by another phone meanwhile
    is not written over. Two phones scanning at once: the second one's update fails and it
    is told the code was scanned on another phone; a refusal racing the desktop's redeem
    does not say "refused" after the desktop signed in."""
    if store.swap(_key(ticket_id), ticket.loaded, json.dumps(asdict(ticket)).encode()):
        return
    now = _load(store, ticket_id)  # redeemed ("used") or gone ("expired") meanwhile
    if now.scanned_by != ticket.scanned_by:
        raise _error("other_phone")
    raise _error(DENIED if now.status == DENIED else EXPIRED)  # this phone's other tap won


def scan(store: Store, ticket_id: str, account_id: int) -> Ticket:
    """The phone of ``account_id`` opened the ticket; the first account to scan owns it."""
    ticket = _load(store, ticket_id)
    if ticket.scanned_by is not None and ticket.scanned_by != account_id:
        raise _error("other_phone")
    if ticket.status == PENDING:
        ticket.status, ticket.scanned_by = SCANNED, account_id
        _save(store, ticket_id, ticket)
    return ticket


def _owned(store: Store, ticket_id: str, account_id: int) -> Ticket:
    ticket = _load(store, ticket_id)
    if ticket.scanned_by != account_id:
        raise _error("other_phone" if ticket.scanned_by is not None else "not_yet")
    if ticket.status == DENIED:
        raise _error(DENIED)
    return ticket


def approve(session: Session, store: Store, ticket_id: str, *, account_id: int, sub: str,
            amr: list[str], auth_time: int, context: Context | None = None) -> Ticket:
    """The phone's person approves: the desktop may sign in as them, with the phone
    session's ``amr`` and ``auth_time``. Audited as ``login.qr.approve``."""
    ticket = _owned(store, ticket_id, account_id)
    if ticket.max_age is not None and time.time() - auth_time > ticket.max_age:
        raise _error("stale")
    if ticket.status != APPROVED:
        ticket.status, ticket.account_id, ticket.sub = APPROVED, account_id, sub
        ticket.amr, ticket.auth_time = list(amr), auth_time
        _save(store, ticket_id, ticket)
        record(session, actor=f"account:{account_id}", action="login.qr.approve",
               outcome="success", target=audit_target(ticket_id), context=context,
               detail={"device": f"{ticket.browser}/{ticket.system}", "ip": ticket.ip})
    return ticket


def deny(session: Session, store: Store, ticket_id: str, *, account_id: int,
         context: Context | None = None) -> Ticket:
    """The phone's person refuses; the desktop is told, nothing is unlocked. Audited as
    ``login.qr.deny``. An approved ticket can still be refused until it is redeemed."""
    ticket = _owned(store, ticket_id, account_id)
    ticket.status, ticket.account_id, ticket.sub, ticket.amr = DENIED, None, "", []
    _save(store, ticket_id, ticket)
    record(session, actor=f"account:{account_id}", action="login.qr.deny", outcome="success",
           target=audit_target(ticket_id), context=context,
           detail={"device": f"{ticket.browser}/{ticket.system}", "ip": ticket.ip})
    return ticket


def redeem(session: Session, store: Store, ticket_id: str, secret: str,
           context: Context | None = None) -> Ticket:
    """The desktop that holds ``secret`` takes the approved ticket, exactly once.

    Raises :class:`QrError` (expired, used, other_browser, denied, not_yet); refusals
    of a ticket that exists are audited as ``login.qr.redeem`` failures. A ticket that
    is not yet approved stays usable; one redeemed from another browser is not
    consumed (that browser cannot harm it)."""
    target = audit_target(ticket_id) if valid_id(ticket_id) else ""

    def refused(reason: str) -> QrError:
        record(session, actor="unknown", action="login.qr.redeem", outcome="failure",
               target=target, context=context, detail={"reason": reason})
        return _error(reason)

    try:
        ticket = load_bound(store, ticket_id, secret)
    except QrError as exc:
        if exc.reason in (USED, OTHER_BROWSER):
            raise refused(exc.reason) from None
        raise
    if ticket.status == DENIED:
        raise _error(DENIED)
    if ticket.status != APPROVED:
        raise _error("not_yet")
    # The used marker first, then the take: a concurrent redeem sees either the ticket
    # (and loses the marker) or the marker, so it is told "used", never "expired".
    if not store.set_if_absent(_used_key(ticket_id), b"1", ttl=TICKET_SECONDS):
        raise refused(USED)
    taken = store.take(_key(ticket_id))
    if taken is None:  # expired between the check and the take
        raise _error(EXPIRED)
    won = Ticket(**json.loads(taken))
    if won.status != APPROVED or not _bound(won, secret) or won.account_id is None:
        raise refused(USED)  # changed between the check and the take (refused meanwhile)
    record(session, actor=f"account:{won.account_id}", action="login.qr.redeem",
           outcome="success", target=target, context=context,
           detail={"amr": won.amr})
    return won


def qr_svg(url: str) -> str:
    """The scan URL as a QR code: inline SVG made locally, with a ``viewBox`` and no fixed
    size, so the page's CSS sizes it."""
    return segno.make(url, error="m").svg_inline(border=4, dark="#000", light="#fff",
                                                 svgclass="qr", omitsize=True)
