"""directory.people: whether an account may still sign in."""

from __future__ import annotations

from core.db import Database
from core.settings import Settings
from directory.models import IdentifierKind, PersonStatus
from directory.people import StandingBySub, create_person_with_account, standing


def _account(db: Database):
    with db.session() as session:
        account = create_person_with_account(
            session, name="孙老师", identifiers={IdentifierKind.username: "sunls"},
            password_hash=None)
        return account.id, account.sub, account.person_id


def _set(db: Database, account_id: int, *, status: str | None = None,
         disabled: bool | None = None) -> None:
    from directory.models import Account

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
    assert remembering.allowed(sub) and fresh.allowed(sub)
    _set(db, account_id, status=PersonStatus.suspended.value)
    assert remembering.allowed(sub)  # still the answer of a moment ago
    assert not fresh.allowed(sub)
    assert not fresh.allowed("no-such-sub")
