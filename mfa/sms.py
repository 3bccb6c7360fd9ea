"""SMS one-time codes: sign-in by phone number, and a second factor.

A code is six digits, valid for :data:`CODE_SECONDS` (five minutes), checked at
most :data:`MAX_ATTEMPTS` times, and bound to the number and its *purpose*
(``login`` or ``mfa``): a code sent for one cannot be used for the other. The
store keeps only ``HMAC-SM3(sms-code/v1, purpose:phone:code)`` with the account
id, never the code; store keys name the number only by its keyed MAC. A new code
for the same number and purpose replaces the previous one. A correct code is
spent with :meth:`Store.take` (atomic), so of two concurrent uses one passes.

Sending is limited with atomic counters in the store (so across workers): per
number one message per :data:`PHONE_GAP_SECONDS` and :data:`PHONE_DAILY` a day,
per client IP :data:`IP_HOURLY` an hour. The limits apply to every number, known
or not, and a number that belongs to no account is answered exactly like one
that does (nothing is sent): the sign-in page never tells whether a number is
registered.

While an account's SMS codes are suspended (``Account.sms_suspended_at``: the helpdesk's
reset after a stolen phone, :mod:`mfa.reset`), its number is answered as one without an
account (nothing sent; audited as ``sms_suspended``), :func:`phone_of` knows no number for
it (the second factor offers no SMS), and a code sent before does not verify: a correct
code passes only while its number is still the phone login of the account it was sent for
and that account's codes are not suspended.

Phone numbers are normalised with :func:`directory.identifiers.normalise_phone`
(mainland mobile, ``+86`` and separators allowed). A number signs in when it is an
account's phone login identifier (stored as its blind index, or as the number by
older code paths). For the second factor, the account needs a phone login whose
number is known: the person's encrypted phone when it is that login (a phone on
the person that is not a login is not used: students' phones are usually a
parent's).

Sends and verifications are audited (``sms.send``, ``sms.verify``) by account id,
never with the number or the code.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import unicodedata
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import Database
from core.field_crypto import blind_index_candidates, open_
from core.keyring import keyed_mac
from core.settings import Settings
from core.store import Store
from core.web import i18n
from core.web.i18n import N_
from directory.identifiers import normalise_phone
from directory.models import PHONE, Account, IdentifierKind, LoginIdentifier
from directory.pii import mask_phone
from mfa.sms_gateways import Gateway, GatewayError

DIGITS = 6
CODE_SECONDS = 300
MAX_ATTEMPTS = 5
PHONE_GAP_SECONDS = 60
PHONE_DAILY = 10
DAY_SECONDS = 86400
IP_HOURLY = 20
HOUR_SECONDS = 3600
CODE_PURPOSE = "sms-code/v1"
PHONE_KEY_PURPOSE = "sms-phone/v1"
MESSAGE = N_("Your verification code is %(code)s, valid for %(minutes)s minutes. Do not share "
             "it with anyone.")


class Purpose(StrEnum):
    login = "login"
    mfa = "mfa"


class SendStatus(StrEnum):
    sent = "sent"  # also for a number without an account: the caller cannot tell
    invalid_phone = "invalid_phone"
    rate_limited = "rate_limited"
    gateway_failed = "gateway_failed"


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    wait: int = 0  # seconds, when rate-limited
    # with ``deliver_later``: the gateway call, to run after the answer has gone out
    # (``deliver(db)``); None when there is nothing to send (a number without an account)
    deliver: Callable[[Database], None] | None = None


class VerifyStatus(StrEnum):
    ok = "ok"
    wrong = "wrong"  # wrong, expired, used, or never sent: one answer
    too_many = "too_many"


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    account_id: int | None = None


def normalise(raw: str) -> str | None:
    """The 11-digit mainland mobile number, or None."""
    return normalise_phone(raw or "")


def mask(phone: str) -> str:
    return mask_phone(phone)


def _phone_id(settings: Settings, phone: str) -> str:
    return keyed_mac(settings, PHONE_KEY_PURPOSE, phone)[:40]


def _code_key(settings: Settings, purpose: Purpose, phone: str) -> str:
    return f"sms:code:{purpose.value}:{_phone_id(settings, phone)}"


def _code_mac(settings: Settings, purpose: Purpose, phone: str, code: str) -> str:
    return keyed_mac(settings, CODE_PURPOSE, f"{purpose.value}:{phone}:{code}")


def _phone_values(settings: Settings, phone: str) -> list[str]:
    return [*blind_index_candidates(settings, IdentifierKind.phone.value, phone), phone]


def account_for_phone(session: Session, settings: Settings, phone: str) -> Account | None:
    """The account whose phone login ``phone`` (normalised) is."""
    return session.scalar(select(Account).join(LoginIdentifier).where(
        LoginIdentifier.kind == IdentifierKind.phone.value,
        LoginIdentifier.value.in_(_phone_values(settings, phone))))


def phone_of(session: Session, settings: Settings, account_id: int) -> str | None:
    """The number of the account's phone login, when it can be known (for ``/mfa``); None
    while its SMS codes are suspended (``Account.sms_suspended_at``), as with no phone."""
    account = session.get(Account, account_id)
    if account is not None and account.sms_suspended_at is not None:
        return None
    logins = [i.value for i in account.identifiers
              if i.kind == IdentifierKind.phone.value] if account else []
    if not logins:
        return None
    for value in logins:
        if normalise_phone(value) == value:
            return value  # an identifier holding the number itself
    number = open_(settings, PHONE, account.person) if account else None
    if number and set(_phone_values(settings, number)) & set(logins):
        return number
    return None


def _retry_after(store: Store, key: str) -> int:
    return max(1, int((store.ttl(key) or 1) + 0.999))


def _limited(settings: Settings, store: Store, phone: str, ip: str | None) -> int:
    """Take a sending slot for the number and the IP (``None``: no IP limit); seconds to
    wait when refused."""
    ip_key = f"sms:ip:{ip}"
    if ip is not None and store.incr(ip_key, ttl=HOUR_SECONDS) > IP_HOURLY:
        return _retry_after(store, ip_key)
    phone_id = _phone_id(settings, phone)
    gap_key = f"sms:gap:{phone_id}"
    if not store.set_if_absent(gap_key, b"1", ttl=PHONE_GAP_SECONDS):
        return _retry_after(store, gap_key)
    day_key = f"sms:day:{phone_id}"
    if store.incr(day_key, ttl=DAY_SECONDS) > PHONE_DAILY:
        return _retry_after(store, day_key)
    return 0


def send_code(session: Session, settings: Settings, store: Store, gateway: Gateway,
              raw_phone: str, purpose: Purpose, *, account_id: int | None, ip: str,
              locale: str = i18n.DEFAULT, context: Context | None = None,
              deliver_later: bool = False, suspended: int | None = None) -> SendResult:
    """Send a new code to the number for ``purpose``.

    ``account_id`` is the account the number belongs to (None: nothing is sent, but
    the answer is the same as for a registered number: the same limits, taken first,
    and a decoy code entry that counts wrong guesses like a real one).
    ``deliver_later``: do not call the gateway now but return the call as
    ``SendResult.deliver``, so that the answer takes as long for a number without an
    account (the sign-in by phone number: its timing must not tell which numbers are
    registered); a gateway failure is then audited, and the number may ask again at once.
    ``suspended``: with ``account_id`` None, the account whose phone login the number is but
    whose codes are suspended (``Account.sms_suspended_at``): handled and answered exactly
    as a number without an account, only audited under its id (``sms_suspended``).
    """
    phone = normalise(raw_phone)
    if phone is None:
        return SendResult(SendStatus.invalid_phone)
    owner = account_id if account_id is not None else suspended
    actor = f"account:{owner}" if owner is not None else "unknown"
    # the second factor's codes go to a password-checked account's own phone: only the
    # number's limits apply (a school's teachers share one address: twenty an hour would
    # leave the twenty-first with no way to sign in)
    if wait := _limited(settings, store, phone, ip if purpose is Purpose.login else None):
        record(session, actor=actor, action="sms.send", outcome="failure", context=context,
               detail={"purpose": purpose.value, "reason": "rate_limited"})
        return SendResult(SendStatus.rate_limited, wait)
    code = f"{secrets.randbelow(10 ** DIGITS):0{DIGITS}d}"
    minutes = str(CODE_SECONDS // 60)
    key = _code_key(settings, purpose, phone)
    store.set(key, json.dumps({  # for a number without an account: a decoy, never sent
        "mac": _code_mac(settings, purpose, phone, code), "account_id": account_id,
        "nonce": secrets.token_hex(8), "expires": time.time() + CODE_SECONDS,
    }).encode(), ttl=CODE_SECONDS)
    if account_id is None:
        record(session, actor=actor, action="sms.send", outcome="failure", context=context,
               detail={"purpose": purpose.value,
                       "reason": "unknown_number" if suspended is None else "sms_suspended"})
        return SendResult(SendStatus.sent)
    message = i18n.gettext(locale, MESSAGE, code=code, minutes=minutes)

    def send(session_for_failure: Callable[[], AbstractContextManager[Session]]) -> bool:
        """Call the gateway; on failure forget the code, free the number, audit it."""
        try:
            gateway.send(phone, message, {"code": code, "minutes": minutes})
        except GatewayError as exc:
            store.delete(key)
            store.delete(f"sms:gap:{_phone_id(settings, phone)}")  # may try again at once
            with session_for_failure() as failure:
                record(failure, actor=actor, action="sms.send", outcome="failure",
                       context=context, detail={"purpose": purpose.value,
                                                "reason": "gateway_failed",
                                                "gateway": gateway.name,
                                                "error": str(exc)[:200]})
            return False
        return True

    def deliver(db: Database) -> None:
        send(db.session)

    if not deliver_later and not send(lambda: nullcontext(session)):
        return SendResult(SendStatus.gateway_failed)
    record(session, actor=actor, action="sms.send", outcome="success", context=context,
           detail={"purpose": purpose.value, "gateway": gateway.name,
                   **({"deferred": True} if deliver_later else {})})
    return SendResult(SendStatus.sent, deliver=deliver if deliver_later else None)


def verify_code(session: Session, settings: Settings, store: Store, raw_phone: str,
                purpose: Purpose, code: str, *, account_id: int | None = None,
                context: Context | None = None) -> VerifyResult:
    """Check and spend a code. ``account_id``, when given, must be the code's account."""
    phone = normalise(raw_phone)
    cleaned = "".join(unicodedata.normalize("NFKC", str(code)).split()).replace("-", "")
    well_formed = len(cleaned) == DIGITS and cleaned.isascii() and cleaned.isdigit()

    def fail(reason: str, status: VerifyStatus = VerifyStatus.wrong,
             actor_id: int | None = None) -> VerifyResult:
        actor = f"account:{actor_id}" if actor_id is not None else "unknown"
        record(session, actor=actor, action="sms.verify", outcome="failure", context=context,
               detail={"purpose": purpose.value, "reason": reason})
        return VerifyResult(status)

    if phone is None:
        return fail("invalid_phone")
    if not well_formed:
        return fail("malformed_code")  # cannot be right: costs no attempt
    key = _code_key(settings, purpose, phone)
    raw = store.get(key)
    if raw is None:
        return fail("no_code")  # never sent, expired, or already used
    entry = json.loads(raw)
    owner = entry["account_id"]  # None: the decoy of a number without an account
    if account_id is not None and owner != account_id:
        return fail("other_account")
    tries_key = f"sms:tries:{entry['nonce']}"
    if store.incr(tries_key, ttl=CODE_SECONDS) > MAX_ATTEMPTS:
        store.take_if(key, raw)  # this code is spent (a newer one sent meanwhile stays)
        return fail("too_many_attempts", VerifyStatus.too_many, owner)
    if float(entry["expires"]) <= time.time():
        return fail("expired", actor_id=owner)
    if not hmac.compare_digest(_code_mac(settings, purpose, phone, cleaned),
                               str(entry["mac"])) or owner is None:
        return fail("wrong_code", actor_id=owner)
    holder = account_for_phone(session, settings, phone)  # the number's account today
    if holder is None or holder.id != owner or holder.sms_suspended_at is not None:
        store.take_if(key, raw)  # sent before a suspension, or before the number became
        return fail("not_texted", actor_id=owner)  # another's: spent, and never passes
    if not store.take_if(key, raw):  # used meanwhile, or a new code replaced it (which
        return fail("code_reused", actor_id=owner)  # stays: a read-then-take deleted it)
    store.delete(tries_key)
    record(session, actor=f"account:{owner}", action="sms.verify", outcome="success",
           context=context, detail={"purpose": purpose.value})
    return VerifyResult(VerifyStatus.ok, owner)
