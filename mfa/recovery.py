"""Recovery codes: ten single-use codes for when the authenticator app is lost.

A set is made by :func:`generate` and shown to the person once; a new set replaces
the old one. A code is 10 characters of Crockford's base32 alphabet (no I, L, O, U;
50 bits), shown as ``xxxxx-xxxxx``. Input is normalised (case, dashes, spaces, and
the look-alikes ``o``→``0``, ``i``/``l``→``1``).

Codes have high entropy, so they are not stored with a slow password hash but as
HMAC-SM3 under a key derived from the master key (``recovery-code/v1``), bound to
the account id: one confirmed :class:`MfaCredential` row per code, with the MAC
(hex) in the indexed ``credential_id``. The database never holds a code, and
without the master key a MAC does not help guessing. Using a code is a conditional
``DELETE`` of the row carrying its MAC: of two concurrent uses only one deletes a
row, so a code works exactly once. The lookup is by MAC, never by the code, so
its timing reveals nothing about codes (an attacker cannot choose MACs).

Wrong codes are limited as for TOTP: at most :data:`MAX_FAILURES` per account in
:data:`FAILURE_WINDOW` seconds, each attempt taking a slot in the store atomically
before it is checked. Generation and every use are audited; codes never are.
"""

from __future__ import annotations

import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import utcnow
from core.gm.sm3 import hmac_sm3
from core.keyring import key_for, keys_for
from core.settings import Settings
from core.store import Store
from mfa.credentials import FactorKind, MfaCredential

KIND = FactorKind.recovery.value
COUNT = 10
LENGTH = 10  # characters; 10 x 5 bits = 50 bits
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
MAX_FAILURES = 5
FAILURE_WINDOW = 300
KEY_PURPOSE = "recovery-code/v1"
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})


def _actor(account_id: int) -> str:
    return f"account:{account_id}"


def normalise(code: str) -> str | None:
    """The code as stored (lower case, no separators), or None when it cannot be one."""
    cleaned = "".join(str(code).split()).replace("-", "").lower().translate(_LOOKALIKES)
    if len(cleaned) != LENGTH or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


def _mac(settings: Settings, account_id: int, normalised: str) -> str:
    message = f"{account_id}:{normalised}".encode()
    return hmac_sm3(key_for(settings, KEY_PURPOSE), message).hex()


def _macs(settings: Settings, account_id: int, normalised: str) -> list[str]:
    """The code's MAC under the current master key and each old one: codes made before a
    master-key change work while their key is listed in ``IDP_OLD_MASTER_KEYS``."""
    message = f"{account_id}:{normalised}".encode()
    return [hmac_sm3(key, message).hex() for key in keys_for(settings, KEY_PURPOSE)]


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def generate(session: Session, settings: Settings, account_id: int, *,
             context: Context | None = None) -> list[str]:
    """A new set of :data:`COUNT` codes for the account, replacing any earlier set.

    The codes are returned to be shown once; only their MACs are stored.
    """
    removed = session.execute(delete(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == KIND)).rowcount
    codes: list[str] = []
    while len(codes) < COUNT:
        code = _new_code()
        if code not in codes:
            codes.append(code)
    now = utcnow()
    for code in codes:
        session.add(MfaCredential(account_id=account_id, kind=KIND, name="Recovery code",
                                  credential_id=_mac(settings, account_id, normalise(code) or ""),
                                  confirmed_at=now))
    session.flush()
    record(session, actor=_actor(account_id), action="mfa.recovery.generate",
           outcome="success", context=context,
           detail={"count": COUNT, "replaced": max(removed or 0, 0)})
    return codes


def remaining(session: Session, account_id: int) -> int:
    """How many unused codes the account has."""
    return session.scalar(select(func.count()).select_from(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == KIND,
        MfaCredential.confirmed_at.is_not(None))) or 0


def _failures_key(account_id: int) -> str:
    return f"recovery:fail:{account_id}"


def forget_failures(store: Store, account_id: int) -> None:
    """An administrator's unlock: the wrong recovery codes are forgotten."""
    store.delete(_failures_key(account_id))


def locked_seconds(store: Store, account_id: int) -> int:
    """Seconds until codes are checked again for the account (0: not limited)."""
    key = _failures_key(account_id)
    if int(store.get(key) or 0) < MAX_FAILURES:
        return 0
    return int((store.ttl(key) or 0) + 0.999)


def use(session: Session, settings: Settings, store: Store, account_id: int, code: str, *,
        context: Context | None = None) -> bool:
    """Spend one recovery code of the account; True when it was valid and unused."""
    def fail(reason: str) -> bool:
        record(session, actor=_actor(account_id), action="mfa.recovery.use", outcome="failure",
               context=context, detail={"reason": reason})
        session.flush()
        return False

    key = _failures_key(account_id)
    if store.incr(key, ttl=FAILURE_WINDOW) > MAX_FAILURES:
        return fail("rate_limited")
    normalised = normalise(code)
    if normalised is None:
        return fail("malformed_code")
    row = session.scalar(select(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == KIND,
        MfaCredential.credential_id.in_(_macs(settings, account_id, normalised)),
        MfaCredential.confirmed_at.is_not(None)))
    if row is None:
        return fail("wrong_code")  # unknown, or already used: the slot stays taken
    uid = row.uid
    # The conditional delete is the single use: a concurrent use of the same code
    # finds no row left to delete.
    deleted = session.execute(delete(MfaCredential).where(
        MfaCredential.id == row.id, MfaCredential.credential_id == row.credential_id)
        .execution_options(synchronize_session=False)).rowcount
    session.expunge(row)
    if deleted != 1:
        return fail("code_reused")
    if store.incr(key, ttl=FAILURE_WINDOW, amount=-1) <= 0:
        store.delete(key)
    record(session, actor=_actor(account_id), action="mfa.recovery.use", outcome="success",
           target=f"mfa:{uid}", context=context,
           detail={"remaining": remaining(session, account_id)})
    session.flush()
    return True
