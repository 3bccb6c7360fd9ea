"""Remembered consent: which scopes a person granted to which app (revocable), and which
APIs (RFC 8707 resource identifiers, ``idp.oidc.resources``) the app may use them with:
kept in the same space-separated list (a URI holds no space)."""

from __future__ import annotations

from sqlalchemy import select

from core.db import Database, utcnow
from core.store import Store
from directory.apps import Consent
from idp.oidc import refresh_tokens
from idp.oidc.refresh_tokens import RefreshToken


def asked(scope: str, resources: list[str]) -> str:
    """What a request asks the person for: its scope values and the APIs it names."""
    return " ".join([*scope.split(), *resources])


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


def revoke(db: Database, store: Store, account_id: int, client_id: str) -> bool:
    """Withdraw the consent, and with it every refresh token the app holds for this
    account (in the same transaction) and the access tokens issued with them: the app
    keeps no way back in."""
    with db.session() as session:
        row = session.scalar(select(Consent).where(
            Consent.account_id == account_id, Consent.client_id == client_id,
            Consent.revoked_at.is_(None)))
        if row is None:
            return False
        row.revoked_at = utcnow()
        live = refresh_tokens.revoke_in(session, RefreshToken.account_id == account_id,
                                        RefreshToken.client_id == client_id)
    refresh_tokens.deny_access_tokens(store, live)
    return True
