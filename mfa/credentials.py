"""Authentication factors an account has enrolled (TOTP secrets, passkeys, ...).

One table for every kind of factor: ``kind`` says which module owns the row
(``mfa.totp``, ``mfa.webauthn`` ...), ``secret_enc`` holds secret material sealed
with SM4-GCM (bound to the row's ``uid``), ``data`` holds public, kind-specific
JSON (a passkey's public key and sign counter), and ``credential_id`` is
indexed for the factors that are looked up by it (passkeys signing in without a
username). A factor is usable once ``confirmed_at`` is set (TOTP: after the
first valid code).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UTCDateTime, new_id, utcnow
from core.field_crypto import EncryptedColumn, register


class FactorKind(StrEnum):
    totp = "totp"
    webauthn = "webauthn"
    recovery = "recovery"


class MfaCredential(Base):
    __tablename__ = "mfa_credential"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_id)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100), default="")
    credential_id: Mapped[str | None] = mapped_column(String(1400), index=True)
    secret_enc: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __init__(self, **values: object) -> None:
        values.setdefault("uid", new_id())  # known before flush: the secret binds to it
        super().__init__(**values)


SECRET = register(EncryptedColumn(MfaCredential, "secret_enc", "mfa_credential/secret", "uid"))


def confirmed(session: Session, account_id: int, kind: FactorKind | None = None
              ) -> list[MfaCredential]:
    """The usable factors of an account (of one kind, or all)."""
    query = select(MfaCredential).where(MfaCredential.account_id == account_id,
                                        MfaCredential.confirmed_at.is_not(None))
    if kind is not None:
        query = query.where(MfaCredential.kind == kind.value)
    return list(session.scalars(query.order_by(MfaCredential.id)))
