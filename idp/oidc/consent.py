"""Remembered consent: which scopes a person granted to which app (revocable), and with
which APIs (RFC 8707 resource identifiers, ``idp.oidc.resources``) the app may use which
of them: a request naming an API is covered only by a consent to that API with at least
its scopes (the consent page showed those scopes with those APIs)."""

from __future__ import annotations

import json

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.db import Database, utcnow
from core.store import Store
from directory.apps import Consent
from idp.oidc import refresh_tokens
from idp.oidc.refresh_tokens import RefreshToken


def _row(session: Session, account_id: int, client_id: str) -> Consent | None:
    return session.scalar(select(Consent).where(
        Consent.account_id == account_id, Consent.client_id == client_id))


def allowed_apis(row: Consent) -> dict[str, set[str]]:
    """Each API the consent names, with the scope values allowed with it."""
    return {api: set(scope.split()) for api, scope in json.loads(row.apis or "{}").items()}


def covers(db: Database, account_id: int, client_id: str, scope: str,
           apis: list[str] | tuple[str, ...] = ()) -> bool:
    with db.sessions() as session:
        row = _row(session, account_id, client_id)
    if row is None or row.revoked_at is not None:
        return False
    asked, allowed = set(scope.split()), allowed_apis(row)
    return asked <= set(row.scope.split()) and all(asked <= allowed.get(api, set())
                                                   for api in apis)


def grant(db: Database, account_id: int, client_id: str, scope: str,
          apis: list[str] | tuple[str, ...] = ()) -> None:
    with db.session() as session:
        row = _row(session, account_id, client_id)
        if row is None:
            row = Consent(account_id=account_id, client_id=client_id, scope="")
            session.add(row)
        live = row.revoked_at is None and row.scope
        granted = set(scope.split()) | (set(row.scope.split()) if live else set())
        allowed = allowed_apis(row) if live else {}
        for api in apis:
            allowed[api] = allowed.get(api, set()) | set(scope.split())
        row.scope = " ".join(sorted(granted))
        row.apis = _written(allowed)
        row.granted_at, row.revoked_at = utcnow(), None


def _written(allowed: dict[str, set[str]]) -> str | None:
    return json.dumps({api: " ".join(sorted(s)) for api, s in sorted(allowed.items())},
                      ensure_ascii=False) if allowed else None


def forget_apis(session: Session, identifiers: set[str]) -> int:
    """An API gave up ``identifiers`` (``idp apps update``): no remembered consent names
    them any more (in ``session``'s transaction), so an app that registers one later
    inherits no consent given to another API. Returns how many consents changed."""
    if not identifiers:
        return 0
    changed = 0
    for row in session.scalars(select(Consent).where(or_(*(
            Consent.apis.contains(json.dumps(i, ensure_ascii=False)) for i in identifiers)))):
        allowed = allowed_apis(row)  # the text match narrows, the JSON decides
        kept = {api: scope for api, scope in allowed.items() if api not in identifiers}
        if kept != allowed:
            row.apis, changed = _written(kept), changed + 1
    return changed


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
