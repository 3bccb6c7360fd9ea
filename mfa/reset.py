"""An administrator's reset of a person's second factors: the lost or replaced phone.

A pupil or teacher whose phone is lost, broken or replaced, and who has no recovery code
left, cannot finish a sign-in that needs a second factor. The school's administrator
(admin API, ``security:mfa-reset``) or an operator (``idp security reset-mfa``) removes
the account's authenticator apps and recovery codes, and the passkeys too when asked
(a passkey may live on a security key or a computer rather than on the lost phone).
At the next sign-in the policy then asks for an SMS code to the number on file, or, with
no phone on file, has the person set up a new authenticator app after the password
(``idp.mfa_step``). The codes' wrong-attempt counts are forgotten with the factors, and
the account is signed out everywhere: sessions and app tokens on the lost phone end too.
One audit event (``mfa.reset``) names the administrator and what was removed, never a
secret.

A stolen phone keeps its SIM: whoever holds it still receives the SMS codes sent to the
number on file (the account's phone login), for the SMS sign-in and the SMS second factor.
With ``phone`` the reset also suspends them (``Account.sms_suspended_at``, in the same
transaction; audited as ``"phone_suspended": true``, never the number): see ``mfa.sms``.
The suspension ends when the phone login gets another number
(``directory.models.lift_sms_suspension``) or when the helpdesk lifts it
(:func:`restore_phone`, audited as ``mfa.phone_restore``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import utcnow
from core.store import Store
from directory.models import Account
from directory.people import sign_out_everywhere
from mfa import recovery, totp
from mfa.credentials import FactorKind, MfaCredential


@dataclass(frozen=True)
class Removed:
    authenticator_apps: int
    recovery_codes: int
    passkeys: int


def _delete(session: Session, account_id: int, kind: FactorKind) -> int:
    result = session.execute(delete(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == kind.value))
    return max(result.rowcount or 0, 0)


def reset(session: Session, store: Store | None, account_id: int, *, passkeys: bool,
          actor: str, context: Context | None = None, phone: bool = False) -> Removed:
    """Remove the account's authenticator apps and recovery codes (and its passkeys when
    ``passkeys``), forget its wrong-code counts (``store``: None when the store is out of
    reach, a single-process server's memory; the counts then expire by themselves),
    with ``phone`` suspend the SMS codes to its number, audit it."""
    removed = Removed(authenticator_apps=_delete(session, account_id, FactorKind.totp),
                      recovery_codes=_delete(session, account_id, FactorKind.recovery),
                      passkeys=_delete(session, account_id, FactorKind.webauthn)
                      if passkeys else 0)
    account = session.get(Account, account_id)
    if account is not None:  # whatever the lost phone holds (sessions, app tokens) ends
        sign_out_everywhere(account)
        account.helped_at = utcnow()  # no console role for a while: administrators.appoint
        if phone and account.sms_suspended_at is None:  # and its number gets no more codes
            account.sms_suspended_at = utcnow()
    if store is not None:
        totp.forget_failures(store, account_id)
        recovery.forget_failures(store, account_id)
    record(session, actor=actor, action="mfa.reset", outcome="success",
           target=f"account:{account_id}", context=context,
           detail={"authenticator_apps": removed.authenticator_apps,
                   "recovery_codes": removed.recovery_codes, "passkeys": removed.passkeys,
                   **({"phone_suspended": True} if phone else {})})
    session.flush()
    return removed


def restore_phone(session: Session, account_id: int, *, actor: str,
                  context: Context | None = None) -> bool:
    """Lift the suspension of the account's SMS codes (the phone is back, or the number is
    known to be safe again): whether there was one. Audited (``mfa.phone_restore``) either
    way."""
    account = session.get(Account, account_id)
    restored = account is not None and account.sms_suspended_at is not None
    if restored:
        account.sms_suspended_at = None
    record(session, actor=actor, action="mfa.phone_restore", outcome="success",
           target=f"account:{account_id}", context=context, detail={"restored": restored})
    session.flush()
    return restored
