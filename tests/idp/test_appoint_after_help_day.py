"""The day the person's page gives for an appointment after someone else's help is one on
which the appointment is taken, all day: not the day the 30 days end in the afternoon,
when an appointment in the morning answers 409 "not before <today>"."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from core.db import Database
from directory import administrators
from directory.models import Account, OrgUnit, Role


def _at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(administrators, "utcnow", lambda: moment)


def _zone(name: str) -> Iterator[None]:
    """The server's time zone (``date.today()`` dates the roles, and the day given)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture(autouse=True)
def utc_server() -> Iterator[None]:
    yield from _zone("UTC")


def test_the_day_given_is_a_whole_day_after_the_quarantine(
        db: Database, make_person, monkeypatch) -> None:
    teacher = make_person("t510", "pw-teacher-510", role=Role.teacher)
    with db.session() as session:
        account = session.get(Account, teacher.account_id)
        account.helped_at = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)  # ends 03-31 15:00
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))

        _at(monkeypatch, datetime(2026, 3, 31, 10, 0, tzinfo=UTC))
        day = administrators.helped_until(account)
        assert day == date(2026, 4, 1)  # not 03-31: refused that morning
        with pytest.raises(administrators.HelpedRecently) as refused:
            administrators.appoint(session, account.person, school, actor="account:1")
        assert refused.value.until > date(2026, 3, 31)  # never "not before" today

        _at(monkeypatch, datetime(2026, 4, 1, 0, 0, tzinfo=UTC))  # the day given: taken
        assert administrators.helped_until(account) is None
        administrators.appoint(session, account.person, school, actor="account:1")


def test_help_at_midnight_gives_the_thirtieth_day(db: Database, make_person,
                                                  monkeypatch) -> None:
    teacher = make_person("t511", "pw-teacher-511", role=Role.teacher)
    with db.session() as session:
        account = session.get(Account, teacher.account_id)
        account.helped_at = datetime(2026, 3, 1, tzinfo=UTC)
        _at(monkeypatch, datetime(2026, 3, 30, 23, 59, tzinfo=UTC))
        assert administrators.helped_until(account) == date(2026, 3, 31)
        _at(monkeypatch, datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=30))
        assert administrators.helped_until(account) is None


def test_the_day_is_the_servers_own(db: Database, make_person, monkeypatch) -> None:
    """In Beijing the 30 days that end at 04:00 on 1 April leave that morning refused: the
    first whole day is 2 April there (in UTC it would say 1 April, refused until 04:00)."""
    teacher = make_person("t512", "pw-teacher-512", role=Role.teacher)
    for _ in _zone("Asia/Shanghai"):
        with db.session() as session:
            account = session.get(Account, teacher.account_id)
            account.helped_at = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)  # 03-02 04:00 there
            _at(monkeypatch, datetime(2026, 3, 20, tzinfo=UTC))
            assert administrators.helped_until(account) == date(2026, 4, 2)
