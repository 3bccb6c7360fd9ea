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
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.audit import Context, record
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
          actor: str, context: Context | None = None) -> Removed:
    """Remove the account's authenticator apps and recovery codes (and its passkeys when
    ``passkeys``), forget its wrong-code counts (``store``: None when the store is out of
    reach, a single-process server's memory; the counts then expire by themselves),
    audit it."""
    removed = Removed(authenticator_apps=_delete(session, account_id, FactorKind.totp),
                      recovery_codes=_delete(session, account_id, FactorKind.recovery),
                      passkeys=_delete(session, account_id, FactorKind.webauthn)
                      if passkeys else 0)
    account = session.get(Account, account_id)
    if account is not None:  # whatever the lost phone holds (sessions, app tokens) ends
        sign_out_everywhere(account)
    if store is not None:
        totp.forget_failures(store, account_id)
        recovery.forget_failures(store, account_id)
    record(session, actor=actor, action="mfa.reset", outcome="success",
           target=f"account:{account_id}", context=context,
           detail={"authenticator_apps": removed.authenticator_apps,
                   "recovery_codes": removed.recovery_codes, "passkeys": removed.passkeys})
    session.flush()
    return removed
