"""Remembered consent: which scopes a person granted to which app (revocable), and with
which APIs (RFC 8707 resource identifiers, ``idp.oidc.resources``) the app may use which
of them: a request naming an API is covered only by a consent to that API with at least
its scopes (the consent page showed those scopes with those APIs), given while the app that
holds the API's identifier now held it (an identifier given up and taken by another API
carries no consent over)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database, utcnow
from core.store import Store
from directory.apps import Consent
from idp.oidc import refresh_tokens
from idp.oidc.refresh_tokens import RefreshToken


def _row(session: Session, account_id: int, client_id: str, *,
         lock: bool = False) -> Consent | None:
    query = select(Consent).where(Consent.account_id == account_id,
                                  Consent.client_id == client_id)
    return session.scalar(query.with_for_update() if lock else query)


class AllowedApi(NamedTuple):
    scope: frozenset[str]  # the scope values allowed with the API
    owner: str  # the client_id of the API that held the identifier then ("": not known)


def allowed_apis(row: Consent) -> dict[str, AllowedApi]:
    """Each API the consent names (its identifier), with what was allowed with it (an
    owner written by the version before is not known: "")."""
    try:
        owners = json.loads(row.api_owners or "{}")
    except ValueError:
        owners = {}
    if not isinstance(owners, dict):  # unreadable: no owner known, so it covers no API
        owners = {}
    return {api: AllowedApi(frozenset(scope.split()), str(owners.get(api) or ""))
            for api, scope in json.loads(row.apis or "{}").items()}


def covers(db: Database, account_id: int, client_id: str, scope: str,
           apis: Mapping[str, str] | None = None) -> bool:
    """Whether the remembered consent covers ``scope`` and, with it, each API of ``apis``
    (identifier: the ``client_id`` of the app holding it now): a consent to an identifier
    while another app held it covers nothing."""
    with db.sessions() as session:
        row = _row(session, account_id, client_id)
    if row is None or row.revoked_at is not None:
        return False
    asked, allowed = set(scope.split()), allowed_apis(row)
    nothing = AllowedApi(frozenset(), "")
    return asked <= set(row.scope.split()) and all(
        asked <= allowed.get(api, nothing).scope and owner
        and allowed.get(api, nothing).owner == owner for api, owner in (apis or {}).items())


def grant(db: Database, account_id: int, client_id: str, scope: str,
          apis: Mapping[str, str] | None = None) -> None:
    """Remember the person's consent to ``scope`` and, with it, to each API of ``apis``
    (identifier: the ``client_id`` of the app holding it), added to what they allowed
    before (for an API now held by another app, instead of it).

    Concurrent grants (two tabs allowing at once) and a revocation are serialised on the
    consent row (``FOR UPDATE``), so none loses another's scopes and a withdrawn consent is
    not written back from a read made before the withdrawal; two first grants that both
    insert meet the unique constraint, and the loser adds to the winner's row."""
    try:
        _grant(db, account_id, client_id, scope, apis)
    except IntegrityError:  # the row another first grant inserted meanwhile
        _grant(db, account_id, client_id, scope, apis)


def _grant(db: Database, account_id: int, client_id: str, scope: str,
           apis: Mapping[str, str] | None) -> None:
    with db.session() as session:
        row = _row(session, account_id, client_id, lock=True)
        if row is None:
            row = Consent(account_id=account_id, client_id=client_id, scope="")
            session.add(row)
        live = row.revoked_at is None and row.scope
        granted = set(scope.split()) | (set(row.scope.split()) if live else set())
        allowed = allowed_apis(row) if live else {}
        for api, owner in (apis or {}).items():
            before = allowed.get(api)
            kept = before.scope if before and before.owner == owner else frozenset()
            allowed[api] = AllowedApi(kept | set(scope.split()), owner)
        row.scope = " ".join(sorted(granted))
        row.apis, row.api_owners = _written(allowed)
        row.granted_at, row.revoked_at = utcnow(), None


def _written(allowed: dict[str, AllowedApi]) -> tuple[str | None, str | None]:
    """``consent.apis`` ({identifier: scope}, as the version before reads it) and
    ``consent.api_owners``."""
    if not allowed:
        return None, None
    return (json.dumps({api: " ".join(sorted(a.scope)) for api, a in sorted(allowed.items())},
                       ensure_ascii=False),
            json.dumps({api: a.owner for api, a in sorted(allowed.items())}, ensure_ascii=False))


def revoke(db: Database, store: Store, account_id: int, client_id: str) -> bool:
    """Withdraw the consent, and with it every refresh token the app holds for this
    account (in the same transaction) and the access tokens issued with them: the app
    keeps no way back in."""
    with db.session() as session:
        row = _row(session, account_id, client_id, lock=True)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        live = refresh_tokens.revoke_in(session, RefreshToken.account_id == account_id,
                                        RefreshToken.client_id == client_id)
    refresh_tokens.deny_access_tokens(store, live)
    refresh_tokens.revoke_again(db, store, RefreshToken.account_id == account_id,
                                RefreshToken.client_id == client_id)
    return True
