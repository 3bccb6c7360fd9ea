"""TOTP authenticator apps (RFC 6238): 30-second steps, 6 digits, HMAC-SHA-1.

These are the defaults of authenticator apps and of ``oathtool --totp``. The
flow: :func:`begin_enrolment` makes an unconfirmed :class:`MfaCredential` with
a fresh secret sealed in ``secret_enc`` and gives the ``otpauth://`` URI (shown
as a QR code made locally by :func:`qr_svg`); the first valid code
(:func:`confirm`) makes the factor usable; :func:`verify` then checks sign-in
codes against every confirmed TOTP factor of the account.

Defences, all in the short-lived store (so they hold across workers):

- a code is accepted in the previous, current and next time step (clock drift);
- a code is accepted only for a time step later than the last one used for the
  account (RFC 6238 5.2: a used code and any older one are refused). The last step is a
  high-water mark raised atomically (``Store.advance``), so codes sent at once behave as
  if sent one after the other: the same code passes once, and a code passes only if no
  code of its step or a later one has (two separate marks let a step's code pass while a
  later one was being marked);
- at most :data:`MAX_FAILURES` wrong codes per account in :data:`FAILURE_WINDOW`
  seconds and :data:`DAILY_FAILURES` in 24 hours; each attempt takes a slot atomically
  before the code is checked and a correct code gives it back, so parallel guessing
  cannot exceed the limits; an attempt refused by a limit counts nowhere.

Codes and secrets are never logged nor written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import segno
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import utcnow
from core.field_crypto import open_, seal
from core.settings import Settings
from core.store import Store
from mfa.credentials import SECRET, FactorKind, MfaCredential

ISSUER = "城市教育统一身份认证"
STEP_SECONDS = 30
DIGITS = 6
WINDOW_STEPS = 1  # accept the previous and the next step too
USED_TTL = 90  # a step stays acceptable for at most three steps: so long the mark
MAX_FAILURES = 5
FAILURE_WINDOW = 300
DAILY_FAILURES = 20
ENROLMENT_SECONDS = 3600  # an unconfirmed enrolment can be confirmed this long
KIND = FactorKind.totp.value


@dataclass(frozen=True)
class Enrolment:
    uid: str
    secret_base32: str
    otpauth_uri: str


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, digest=hashlib.sha1, interval=STEP_SECONDS)


def otpauth_uri(secret: str, label: str) -> str:
    return _totp(secret).provisioning_uri(name=label, issuer_name=ISSUER)


def _actor(account_id: int) -> str:
    return f"account:{account_id}"


def _normalise(code: str) -> str | None:
    code = "".join(str(code).split())
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None


def begin_enrolment(session: Session, settings: Settings, account_id: int, name: str, *,
                    label: str | None = None, context: Context | None = None) -> Enrolment:
    """Start adding an authenticator app: an unconfirmed factor with a new secret.

    ``name`` is the factor's name shown to the person; ``label`` (default: ``name``)
    is the account name in the app, which must not be personal data (a login
    identifier, not a name or phone number). Earlier unconfirmed TOTP enrolments
    of the account are dropped: one enrolment is pending at a time.
    """
    session.execute(delete(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == KIND,
        MfaCredential.confirmed_at.is_(None)))
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    row = MfaCredential(account_id=account_id, kind=KIND, name=name[:100])
    seal(settings, SECRET, row, secret)
    session.add(row)
    session.flush()
    record(session, actor=_actor(account_id), action="mfa.totp.enrol", outcome="success",
           target=f"mfa:{row.uid}", context=context)
    return Enrolment(row.uid, secret, otpauth_uri(secret, label or name))


def qr_svg(uri: str) -> str:
    """The URI as a QR code: inline SVG markup, made locally (no network)."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=4, dark="#000",
                                                 light="#fff", svgclass="qr")


def pending(session: Session, account_id: int, uid: str) -> MfaCredential | None:
    """The account's unconfirmed, unexpired TOTP enrolment ``uid``."""
    row = session.scalar(select(MfaCredential).where(
        MfaCredential.uid == uid, MfaCredential.account_id == account_id,
        MfaCredential.kind == KIND, MfaCredential.confirmed_at.is_(None)))
    if row is None or row.created_at < utcnow() - timedelta(seconds=ENROLMENT_SECONDS):
        return None
    return row


def factors(session: Session, account_id: int) -> list[MfaCredential]:
    """The account's confirmed TOTP factors."""
    return list(session.scalars(select(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == KIND,
        MfaCredential.confirmed_at.is_not(None)).order_by(MfaCredential.id)))


# (counter, most wrong codes, seconds): five per five minutes, and twenty in 24 hours from
# the first of them, so guessing with a stolen password stays near 6e-5 a day (three
# valid codes in a million per guess)
LIMITS = (("totp:fail", MAX_FAILURES, FAILURE_WINDOW),
          ("totp:fail-day", DAILY_FAILURES, 86400))


def _take_attempt(store: Store, account_id: int) -> bool:
    """Reserve one attempt atomically in every window; False when one is over its limit.

    A refused attempt counts nowhere (guessing during the five-minute lock must not use
    up the day's twenty): a locked account is refused before anything is counted, and a
    slot taken in a window whose limit another attempt reached meanwhile is given back."""
    if locked_seconds(store, account_id):
        return False
    taken: list[tuple[str, int]] = []
    for name, limit, window in LIMITS:
        key = f"{name}:{account_id}"
        taken.append((key, window))
        if store.incr(key, ttl=window) > limit:
            for back, seconds in taken:
                store.incr(back, ttl=seconds, amount=-1)
            return False
    return True


def _give_back_attempt(store: Store, account_id: int) -> None:
    for name, _, window in LIMITS:
        key = f"{name}:{account_id}"
        if store.incr(key, ttl=window, amount=-1) <= 0:
            store.delete(key)


def forget_failures(store: Store, account_id: int) -> None:
    """An administrator's unlock: the wrong codes of every window are forgotten."""
    for name, _, _ in LIMITS:
        store.delete(f"{name}:{account_id}")


def locked_seconds(store: Store, account_id: int) -> int:
    """Seconds until codes are checked again for the account (0: not limited)."""
    waits = [store.ttl(f"{name}:{account_id}") or 0 for name, limit, _ in LIMITS
             if int(store.get(f"{name}:{account_id}") or 0) >= limit]
    return int(max(waits, default=0) + 0.999)


def _matching_step(secrets_: list[tuple[MfaCredential, str]], code: str, now: float
                   ) -> tuple[MfaCredential, int] | None:
    current = int(now) // STEP_SECONDS
    offsets = [0] + [o for d in range(1, WINDOW_STEPS + 1) for o in (-d, d)]
    for offset in offsets:
        step = current + offset
        for row, secret in secrets_:
            # ``at`` takes a time, not a counter: compute the step's own code.
            if hmac.compare_digest(_totp(secret).at(step * STEP_SECONDS), code):
                return row, step
    return None


def _check(session: Session, settings: Settings, store: Store, account_id: int,
           rows: list[MfaCredential], code: str, at: float | None, action: str,
           context: Context | None) -> MfaCredential | None:
    """The shared core of confirm and verify: limit, match, refuse replays, audit."""
    def fail(reason: str, target: str = "") -> None:
        record(session, actor=_actor(account_id), action=action, outcome="failure",
               target=target, context=context, detail={"reason": reason})

    if not _take_attempt(store, account_id):
        fail("rate_limited")
        return None
    normalised = _normalise(code)
    if normalised is None or not rows:
        fail("malformed_code" if normalised is None else "no_factor")
        return None
    secrets_ = [(row, open_(settings, SECRET, row) or "") for row in rows]
    found = _matching_step(secrets_, normalised, time.time() if at is None else at)
    if found is None:
        fail("wrong_code")
        return None
    row, step = found
    if not store.advance(f"totp:last:{account_id}", step, ttl=USED_TTL):
        fail("code_reused", f"mfa:{row.uid}")  # the slot stays taken: replays count
        return None
    _give_back_attempt(store, account_id)
    row.last_used_at = utcnow()
    return row


def confirm(session: Session, settings: Settings, store: Store, account_id: int, uid: str,
            code: str, *, at: float | None = None, context: Context | None = None) -> bool:
    """Confirm enrolment ``uid`` with the first code from the app; True when confirmed."""
    row = pending(session, account_id, uid)
    matched = _check(session, settings, store, account_id, [row] if row else [], code, at,
                     "mfa.totp.confirm", context)
    if matched is None:
        return False
    matched.confirmed_at = utcnow()
    record(session, actor=_actor(account_id), action="mfa.totp.confirm", outcome="success",
           target=f"mfa:{matched.uid}", context=context)
    session.flush()
    return True


def verify(session: Session, settings: Settings, store: Store, account_id: int, code: str, *,
           at: float | None = None, context: Context | None = None) -> bool:
    """Check a sign-in code against every confirmed TOTP factor of the account.

    ``at`` (seconds since the epoch) replaces the clock in tests.
    """
    matched = _check(session, settings, store, account_id, factors(session, account_id), code,
                     at, "mfa.totp.verify", context)
    if matched is None:
        return False
    session.flush()
    return True


def remove(session: Session, account_id: int, uid: str, *,
           context: Context | None = None) -> bool:
    """Remove the account's TOTP factor ``uid`` (confirmed or not); True when removed."""
    row = session.scalar(select(MfaCredential).where(
        MfaCredential.uid == uid, MfaCredential.account_id == account_id,
        MfaCredential.kind == KIND))
    if row is None:
        return False
    session.delete(row)
    record(session, actor=_actor(account_id), action="mfa.totp.remove", outcome="success",
           target=f"mfa:{uid}", context=context)
    session.flush()
    return True
