"""directory.people: whether an account may still sign in."""

from __future__ import annotations

import time

from core.db import Database
from core.settings import Settings
from directory.models import Account, IdentifierKind, PersonStatus
from directory.people import (
    StandingBySub,
    create_person_with_account,
    sign_out_everywhere,
    standing,
)


def _account(db: Database):
    with db.session() as session:
        account = create_person_with_account(
            session, name="孙老师", identifiers={IdentifierKind.username: "sunls"},
            password_hash=None)
        return account.id, account.sub, account.person_id


def _set(db: Database, account_id: int, *, status: str | None = None,
         disabled: bool | None = None) -> None:
    with db.session() as session:
        account = session.get(Account, account_id)
        if status is not None:
            account.person.status = status
        if disabled is not None:
            account.disabled = disabled


def test_standing_follows_status_and_disabled(db: Database, settings: Settings) -> None:
    account_id, _sub, _person = _account(db)
    with db.sessions() as session:
        assert standing(session, account_id).allowed
    _set(db, account_id, status=PersonStatus.graduated.value)
    with db.sessions() as session:
        assert not standing(session, account_id).allowed
    _set(db, account_id, status=PersonStatus.active.value, disabled=True)
    with db.sessions() as session:
        assert not standing(session, account_id).allowed
        assert not standing(session, 10**9).allowed  # no such account


def test_standing_by_sub_is_remembered_for_its_seconds(db: Database) -> None:
    account_id, sub, _person = _account(db)
    remembering, fresh = StandingBySub(db, seconds=60), StandingBySub(db, seconds=0)
    now = time.time()
    assert remembering.allows(sub, now) and fresh.allows(sub, now)
    _set(db, account_id, status=PersonStatus.suspended.value)
    assert remembering.allows(sub, now)  # still the answer of a moment ago
    assert not fresh.allows(sub, now)
    assert not fresh.allows("no-such-sub", now)


def test_signing_out_everywhere_voids_what_began_before(db: Database) -> None:
    """Sessions and tokens begun before the sign-out no longer hold; those begun after do."""
    account_id, sub, _person = _account(db)
    with db.session() as session:
        account = session.get(Account, account_id)
        sign_out_everywhere(account)
        at = account.signed_out_at.timestamp()
    with db.sessions() as session:
        now = standing(session, account_id)
    assert now.signed_out_at == at
    assert not now.allows(at - 0.001) and now.allows(at) and now.allows(at + 5)
    fresh = StandingBySub(db, seconds=0)
    assert not fresh.allows(sub, at - 0.5) and fresh.allows(sub, at + 0.5)
