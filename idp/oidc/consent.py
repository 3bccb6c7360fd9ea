"""Remembered consent: which scopes a person granted to which app (revocable)."""

from __future__ import annotations

from sqlalchemy import select, update

from core.db import Database, utcnow
from directory.apps import Consent
from idp.oidc.refresh_tokens import RefreshToken


def covers(db: Database, account_id: int, client_id: str, scope: str) -> bool:
    with db.sessions() as session:
        row = session.scalar(select(Consent).where(
            Consent.account_id == account_id, Consent.client_id == client_id))
    return bool(row and row.revoked_at is None and set(scope.split()) <= set(row.scope.split()))


def grant(db: Database, account_id: int, client_id: str, scope: str) -> None:
    with db.session() as session:
        row = session.scalar(select(Consent).where(
            Consent.account_id == account_id, Consent.client_id == client_id))
        if row is None:
            session.add(Consent(account_id=account_id, client_id=client_id, scope=scope))
            return
        granted = set(scope.split()) | (set(row.scope.split()) if row.revoked_at is None else set())
        row.scope = " ".join(sorted(granted))
        row.granted_at, row.revoked_at = utcnow(), None


def revoke(db: Database, account_id: int, client_id: str) -> bool:
    """Withdraw the consent, and with it every refresh token the app holds for this
    account (in the same transaction): the app keeps no way back in. Its access tokens
    end with their short lifetime."""
    with db.session() as session:
        row = session.scalar(select(Consent).where(
            Consent.account_id == account_id, Consent.client_id == client_id,
            Consent.revoked_at.is_(None)))
        if row is None:
            return False
        row.revoked_at = utcnow()
        session.execute(update(RefreshToken).where(
            RefreshToken.account_id == account_id, RefreshToken.client_id == client_id,
            RefreshToken.revoked_at.is_(None)).values(revoked_at=row.revoked_at))
        return True
