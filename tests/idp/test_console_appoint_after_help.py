"""Nobody is given a console role soon after someone else reset their sign-in: whoever gave
the temporary password (or removed the second factors) could have signed in as the person
and enrolled an authenticator of their own before the person did, and would then hold the
console role with the account (directory.administrators, "Nobody is appointed soon after
being helped")."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database, utcnow
from core.settings import Settings
from core.store import Store
from directory import administrators
from directory.models import Account, OrgKind, OrgUnit, Role
from mfa import reset
from tests.idp import flow
from tests.idp.test_console_rules import _district_administrator, place, sign_in, uid, unit

HELPED = "data-helped"


def _teacher_at_the_school_below(db: Database, make_person):
    teacher = make_person("t500", "pw-teacher-500", name="待任命老师", role=Role.teacher)
    with db.session() as session:
        for placed in session.get(Account, teacher.account_id).person.affiliations:
            session.delete(placed)
    place(db, teacher.account_id, "T-DS", Role.teacher)
    return teacher


def _helped_days_ago(db: Database, account_id: int, days: int) -> None:
    with db.session() as session:
        session.get(Account, account_id).helped_at = utcnow() - timedelta(days=days)


def _roles(db: Database, account_id: int) -> list[str]:
    with db.session() as session:
        return [unit.code for unit in administrators.administered(session, account_id)]


def test_a_temporary_password_holds_off_both_appointments_for_thirty_days(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    district = _district_administrator(db, make_person)
    teacher = _teacher_at_the_school_below(db, make_person)
    sign_in(client, store, district.account_id)
    target = uid(db, "待任命老师")
    page = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    assert HELPED not in page.text and 'id="appoint-at"' in page.text
    given = client.post(f"/admin/people/{target}/password/reset", data={
        "csrf_token": flow.csrf_of(page.text), "unit": "T-DIST"}, follow_redirects=False)
    assert given.status_code == 303
    with db.session() as session:
        assert session.get(Account, teacher.account_id).helped_at is not None

    page = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    with db.session() as session:  # the first whole day after the 30 days
        day = administrators.helped_until(session.get(Account, teacher.account_id)).isoformat()
    ends = utcnow() + timedelta(days=administrators.HELP_QUARANTINE_DAYS)
    assert day in {(ends + timedelta(days=1)).date().isoformat(), ends.date().isoformat()}
    notes = re.findall(rf"<p[^>]*{HELPED}[^>]*>([^<]*)</p>", page.text)
    assert len(notes) == 2 and all(day in note for note in notes), notes  # both sections
    assert "临时密码" in notes[0]  # zh-CN first
    assert 'id="appoint-at"' not in page.text and 'id="helpdesk-at"' not in page.text
    token = flow.csrf_of(page.text)
    for given_role in ("administrator", "helpdesk"):  # a forged form is refused
        refused = client.post(f"/admin/people/{target}/{given_role}/appoint", data={
            "csrf_token": token, "unit": "T-DIST", "at": "T-DS"}, follow_redirects=False)
        assert refused.status_code == 409, (given_role, refused.status_code)
        assert "30 天" in refused.text
    assert _roles(db, teacher.account_id) == []

    _helped_days_ago(db, teacher.account_id, administrators.HELP_QUARANTINE_DAYS - 1)
    assert HELPED in client.get(f"/admin/people/{target}", params={"unit": "T-DIST"}).text
    _helped_days_ago(db, teacher.account_id, administrators.HELP_QUARANTINE_DAYS)
    page = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    assert HELPED not in page.text and 'id="appoint-at"' in page.text
    done = client.post(f"/admin/people/{target}/administrator/appoint", data={
        "csrf_token": flow.csrf_of(page.text), "unit": "T-DIST", "at": "T-DS"},
        follow_redirects=False)
    assert done.status_code == 303 and "done=appointed" in done.headers["location"]
    assert _roles(db, teacher.account_id) == ["T-DS"]


def test_removing_second_factors_holds_off_an_appointment(
        db: Database, store: Store, make_person) -> None:
    """The other way to leave an account open to whoever knows its password: its second
    factors removed (the lost phone), whoever did it."""
    teacher = make_person("t501", "pw-teacher-501", role=Role.teacher)
    with db.session() as session:
        reset.reset(session, store, teacher.account_id, passkeys=False, actor="account:1")
    with db.session() as session:
        account = session.get(Account, teacher.account_id)
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        try:
            administrators.appoint(session, account.person, school, actor="account:1")
        except administrators.HelpedRecently as refused:
            assert refused.until == administrators.helped_until(account)
        else:
            raise AssertionError("appointed the day after a reset")
    assert _roles(db, teacher.account_id) == []


def test_an_operator_appoints_despite_help_only_when_asked(
        db: Database, settings: Settings, store: Store, make_person, monkeypatch,
        tmp_path) -> None:
    from typer.testing import CliRunner

    from idp import password_change
    from idp.cli import app

    person = make_person("t502", "pw-teacher-502", name="首位管理员", role=Role.teacher)
    with db.session() as session:
        password_change.reset(session, settings, store, session.get(Account, person.account_id),
                              actor="operator:test")
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    appoint = ["admin", "appoint", "--login", "t502", "--unit", "T-CITY"]
    refused = CliRunner().invoke(app, appoint)
    assert refused.exit_code == 2 and "--despite-help" in refused.output, refused.output
    assert _roles(db, person.account_id) == []
    made = CliRunner().invoke(app, [*appoint, "--despite-help"])
    assert made.exit_code == 0 and "city_admin of T-CITY" in made.output, made.output
    assert _roles(db, person.account_id) == ["T-CITY"]
    with db.session() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "admin.appoint"))
        assert '"despite_help": true' in event.detail


def test_help_long_ago_or_never_holds_nothing_off(db: Database, make_person) -> None:
    unit(db, "T-DIST", OrgKind.district)
    teacher = make_person("t503", "pw-teacher-503", role=Role.teacher)
    with db.session() as session:
        account = session.get(Account, teacher.account_id)
        assert administrators.helped_until(account) is None
        account.helped_at = utcnow() - timedelta(days=365)
        assert administrators.helped_until(account) is None
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        administrators.appoint(session, account.person, school, actor="account:1")
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "admin.appoint"))
        assert "despite_help" not in event.detail
    assert _roles(db, teacher.account_id) == ["T-SCHOOL"]
