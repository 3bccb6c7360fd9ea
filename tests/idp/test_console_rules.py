"""The admin console's rules: two factors whatever the settings, who holds the console
and how the unit above ends it, the unit chooser in a real browser, and what the pages tell
a school helpdesk (zh-CN)."""

from __future__ import annotations

import re
import threading
import time
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from core.store import Store
from directory import administrators
from directory.models import Account, Affiliation, OrgKind, OrgUnit, Person, Role
from directory.orgs import ensure_org_unit
from directory.people import affiliate
from idp import sessions
from mfa import policy
from tests.conftest import PG_ADMIN_URL
from tests.idp import flow
from tests.idp.live import live_server  # noqa: F401

ELSEWHERE = "以外也有职务"  # the line for a person also placed outside the unit

MFA = ["pwd", "otp", "mfa"]


def unit(db: Database, code: str, kind: OrgKind = OrgKind.school, parent: str = "T-CITY",
         status: str = "active") -> None:
    with db.session() as session:
        top = session.scalar(select(OrgUnit).where(OrgUnit.code == parent))
        made = ensure_org_unit(session, code=code, name=f"{code}单位", kind=kind, parent=top)
        made.status = status


def place(db: Database, account_id: int, code: str, role: Role, since: date = date(2026, 9, 1),
          until: date | None = None) -> None:
    with db.session() as session:
        where = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        a = affiliate(session, session.get(Account, account_id).person, where, role, since)
        a.valid_to = until


def sign_in(client: TestClient, store: Store, account_id: int, *, amr=MFA,
            proven_here: bool = True, age: int = 0) -> None:
    with_sub = f"sub-{account_id}"
    token, session = sessions.new(account_id=account_id, sub=with_sub, amr=list(amr),
                                  acr=policy.acr_for(amr))
    session.proven_here = proven_here
    session.auth_time -= age
    sessions.save(store, token, session)
    client.cookies.set(sessions.COOKIE, token)


def uid(db: Database, name: str) -> str:
    with db.session() as session:
        return session.scalar(select(Person.uid).where(Person.name == name))


def _district_administrator(db: Database, make_person):
    """A district (T-DIST) with a school (T-DS), and its administrator."""
    unit(db, "T-DIST", OrgKind.district)
    unit(db, "T-DS", OrgKind.school, parent="T-DIST")
    district = make_person("d100", "pw-district-100", name="区管理员", role=Role.staff)
    place(db, district.account_id, "T-DIST", Role.district_admin)
    return district


def person_without_account(db: Database, name: str, code: str, role: Role) -> None:
    with db.session() as session:
        person = Person(name=name)
        session.add(person)
        session.flush()
        where = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        affiliate(session, person, where, role, date(2026, 9, 1))


def test_the_console_needs_two_factors_whatever_the_roles_setting(
        settings: Settings, db: Database, store: Store, make_person) -> None:
    """An operator lists the roles that must use a second factor *for the apps*, e.g.
    IDP_MFA_REQUIRED_ROLES=teacher,city_admin (as tests/idp/test_cli.py does). A school
    administrator who signed in with a password alone must still not reach the console,
    let alone hand out a pupil's temporary password."""
    from idp.app import create_app

    app = create_app(settings.model_copy(
        update={"mfa_required_roles": ("teacher", "city_admin")}), db=db, store=store)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        admin = make_person("a100", "pw-admin-100", name="校管理员", role=Role.staff)
        place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
        pupil = make_person("s100", "pw-pupil-100", name="学生甲")
        sign_in(client, store, admin.account_id, amr=["pwd"])  # one factor, just now
        console = client.get("/admin", follow_redirects=False)
        assert console.status_code == 303, console.status_code  # it was 200
        assert console.headers["location"].startswith("/login?next=")
        target = uid(db, "学生甲")
        token = flow.csrf_of(client.get("/login").text)  # this browser's valid CSRF token
        tried = client.post(f"/admin/people/{target}/password/reset",
                            data={"csrf_token": token, "unit": "T-SCHOOL"},
                            follow_redirects=False)
        assert tried.status_code == 303 and tried.headers["location"].startswith("/login?")
        with db.session() as session:
            assert not session.get(Account, pupil.account_id).must_change_password


def test_an_administrator_of_two_schools_switches_with_the_chooser(
        live_server, browser, db: Database, store: Store, make_person) -> None:  # noqa: F811
    admin = make_person("a100", "pw-admin-100", name="校管理员", role=Role.staff)
    place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
    unit(db, "T-OTHER", OrgKind.school)
    place(db, admin.account_id, "T-OTHER", Role.school_admin)
    token, session = sessions.new(account_id=admin.account_id, sub=admin.sub, amr=MFA,
                                  acr=policy.acr_for(MFA))
    sessions.save(store, token, session)
    context = browser.new_context(locale="zh-CN")
    context.add_cookies([{"name": sessions.COOKIE, "value": token, "url": live_server.url}])
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    page.goto(live_server.url + "/admin")
    assert page.locator("#unit-choice").input_value() == "T-SCHOOL"
    page.select_option("#unit-choice", "T-OTHER")
    visible_go = page.locator("nav.console-nav button:visible")
    if visible_go.count():  # a button to press is fine too
        visible_go.first.click()
    page.wait_for_timeout(1500)
    assert "unit=T-OTHER" in page.url, (page.url, blocked)  # an inline onchange was
    # blocked by the CSP ("Executing inline event handler violates ... script-src 'self'")


def test_an_administrator_role_that_has_not_begun_opens_nothing(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """Appointed school administrator from 2030: not yet (mfa.webauthn.is_administrator
    and SCIM's is_current both say valid_from <= today)."""
    admin = make_person("a100", "pw-admin-100", name="候任管理员", role=Role.staff)
    place(db, admin.account_id, "T-SCHOOL", Role.school_admin, since=date(2030, 9, 1))
    sign_in(client, store, admin.account_id)
    assert client.get("/admin").status_code == 403  # it was 200: the whole school's helpdesk


def test_the_unit_above_can_end_a_school_administrators_role_in_the_console(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """SCIM refuses to end an administrator's role ("only the admin console ends it",
    docs/scim.md), and so does the import (snapshot mode: students and teachers only).
    The console does not offer it either: a school administrator who left keeps the
    console (and every pupil's password) for as long as their account works."""
    district = _district_administrator(db, make_person)
    leaver = make_person("a101", "pw-admin-101", name="离任校管", role=Role.staff)
    with db.session() as session:  # only the school below the district
        for placed in session.get(Account, leaver.account_id).person.affiliations:
            session.delete(placed)
    place(db, leaver.account_id, "T-DS", Role.school_admin)
    sign_in(client, store, district.account_id)
    target = uid(db, "离任校管")
    shown = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    assert shown.status_code == 200 and "data-security" in shown.text  # managed from above
    actions = re.findall(r'data-action="([^"]+)"', shown.text)
    assert "administrator/end" in actions, actions
    ended = client.post(f"/admin/people/{target}/administrator/end", data={
        "csrf_token": flow.csrf_of(shown.text), "unit": "T-DIST", "at": "T-DS"},
        follow_redirects=False)
    assert ended.status_code == 303 and "done=ended" in ended.headers["location"]
    leaving = TestClient(client.app, base_url="http://127.0.0.1:8000")
    sign_in(leaving, store, leaver.account_id)
    assert leaving.get("/admin").status_code == 403  # the console is gone at once
    with db.session() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "admin.end"))
        assert event.actor == f"account:{district.account_id}"


def test_the_unit_above_appoints_a_school_administrator(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """A district administrator appoints a teacher of a school below as its administrator
    (the import and SCIM never do); a school administrator cannot appoint (nothing below
    is administered), and nobody is appointed at a unit the person has no place in."""
    district = _district_administrator(db, make_person)
    unit(db, "T-DS2", OrgKind.school, parent="T-DIST")
    teacher = make_person("t300", "pw-teacher-300", name="新任校管", role=Role.teacher)
    with db.session() as session:
        for placed in session.get(Account, teacher.account_id).person.affiliations:
            session.delete(placed)
    place(db, teacher.account_id, "T-DS", Role.teacher)
    sign_in(client, store, district.account_id)
    target = uid(db, "新任校管")
    shown = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    section = shown.text[shown.text.index('id="appoint-at"'):]
    offered = re.findall(r'<option value="([^"]+)">', section[:section.index("</select>")])
    assert offered == ["T-DS"], offered  # not T-DS2, where the teacher has no place
    token = flow.csrf_of(shown.text)
    elsewhere = client.post(f"/admin/people/{target}/administrator/appoint", data={
        "csrf_token": token, "unit": "T-DIST", "at": "T-DS2"}, follow_redirects=False)
    assert elsewhere.status_code == 404
    done = client.post(f"/admin/people/{target}/administrator/appoint", data={
        "csrf_token": token, "unit": "T-DIST", "at": "T-DS"}, follow_redirects=False)
    assert done.status_code == 303 and "done=appointed" in done.headers["location"]
    appointed = TestClient(client.app, base_url="http://127.0.0.1:8000")
    sign_in(appointed, store, teacher.account_id, amr=["pwd"])  # one factor: not enough
    assert appointed.get("/admin", follow_redirects=False).status_code == 303
    sign_in(appointed, store, teacher.account_id)
    console = appointed.get("/admin")
    assert console.status_code == 200 and "T-DS单位" in console.text
    assert "administrator/appoint" not in appointed.get(
        f"/admin/people/{uid(db, '区管理员')}").text  # above them: not even managed


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _school_admin(db: Database, make_person) -> int:
    admin = make_person("a100", "pw-admin-100", name="校管理员", role=Role.staff)
    place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
    return admin.account_id


def test_a_person_without_an_account_is_not_said_to_be_placed_elsewhere(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    sign_in(client, store, _school_admin(db, make_person))
    person_without_account(db, "无账号老师", "T-G1-1", Role.teacher)  # only at this school
    shown = client.get(f"/admin/people/{uid(db, '无账号老师')}")
    assert shown.status_code == 200
    assert ELSEWHERE not in shown.text and "没有账号" in shown.text


def test_a_pupil_who_left_is_not_said_to_be_placed_elsewhere(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    sign_in(client, store, _school_admin(db, make_person))
    pupil = make_person("s100", "pw-pupil-100", name="已离校学生")
    with db.session() as session:  # left the school, placed nowhere else
        for placed in session.get(Account, pupil.account_id).person.affiliations:
            placed.valid_to = date(2026, 10, 1)
    shown = client.get(f"/admin/people/{uid(db, '已离校学生')}")
    assert shown.status_code == 200 and "data-not-managed" in shown.text
    assert ELSEWHERE not in shown.text and "目前不在" in shown.text


def test_search_results_tell_namesakes_apart(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """Two pupils called 王伟 in grade 1 and grade 2: the helpdesk must know which to open."""
    sign_in(client, store, _school_admin(db, make_person))
    unit(db, "T-G2", OrgKind.grade, parent="T-SCHOOL")
    unit(db, "T-G2-1", OrgKind.class_, parent="T-G2")
    make_person("s201", "pw-1", name="王伟")
    second = make_person("s202", "pw-2", name="王伟")
    with db.session() as session:
        for placed in session.get(Account, second.account_id).person.affiliations:
            session.delete(placed)
    place(db, second.account_id, "T-G2-1", Role.student)
    found = client.get("/admin", params={"q": "王伟"})
    rows = re.findall(r"<tr><td>.*?</tr>", found.text, re.S)
    assert len(rows) == 2
    assert _text(rows[0]) != _text(rows[1]), rows  # it was "王伟 在读/在职" twice


def test_a_placement_names_its_grade(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """Every grade of every school has a "1班": the unit's bare name says nothing."""
    sign_in(client, store, _school_admin(db, make_person))
    make_person("s100", "pw-pupil-100", name="一年级学生")  # in T-G1-1 (一年级, 1班)
    shown = client.get(f"/admin/people/{uid(db, '一年级学生')}")
    placements = re.search(r"<table data-placements>.*?</table>", shown.text, re.S)[0]
    assert "一年级" in placements, _text(placements)  # it was "学生 1班 2026-09-01"



def test_an_operator_appoints_and_ends_an_administrator(
        db: Database, settings: Settings, make_person, monkeypatch, tmp_path) -> None:
    """``idp admin appoint|end``: how the city's first administrator is made."""
    from typer.testing import CliRunner

    from idp.cli import app

    person = make_person("t400", "pw-teacher-400", name="首位管理员", role=Role.teacher)
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    made = CliRunner().invoke(app, ["admin", "appoint", "--login", "t400", "--unit", "T-CITY"])
    assert made.exit_code == 0 and "city_admin of T-CITY" in made.output, made.output
    with db.session() as session:

        assert [u.code for u in administrators.administered(session, person.account_id)] \
            == ["T-CITY"]
    klass = CliRunner().invoke(app, ["admin", "appoint", "--login", "t400", "--unit", "T-G1-1"])
    assert klass.exit_code == 2 and "has no administrators" in klass.output
    ended = CliRunner().invoke(app, ["admin", "end", "--login", "t400", "--unit", "T-CITY"])
    assert ended.exit_code == 0 and "ended" in ended.output
    with db.session() as session:
        assert administrators.administered(session, person.account_id) == []
        actions = [e.action for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(["admin.appoint", "admin.end"])).order_by(AuditEvent.seq))]
    assert actions == ["admin.appoint", "admin.end"]


def test_a_pupil_is_never_appointed(client: TestClient, db: Database, store: Store,
                                    make_person) -> None:
    """Only the unit's staff may be appointed: a pupil's page offers no appointment, and a
    forged one is refused (a child with the school's console)."""
    district = _district_administrator(db, make_person)
    pupil = make_person("s900", "pw-pupil-900", name="小学生")
    with db.session() as session:
        for placed in session.get(Account, pupil.account_id).person.affiliations:
            session.delete(placed)
    place(db, pupil.account_id, "T-DS", Role.student)
    sign_in(client, store, district.account_id)
    target = uid(db, "小学生")
    shown = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    assert shown.status_code == 200 and "data-security" in shown.text
    assert "administrator/appoint" not in shown.text
    forged = client.post(f"/admin/people/{target}/administrator/appoint", data={
        "csrf_token": flow.csrf_of(shown.text), "unit": "T-DIST", "at": "T-DS"},
        follow_redirects=False)
    assert forged.status_code == 404
    with db.session() as session:
        assert administrators.administered(session, pupil.account_id) == []


@pytest.mark.skipif(not PG_ADMIN_URL, reason="needs two concurrent transactions")
def test_two_appointments_at_once_make_one_role(db: Database, make_person) -> None:
    person = make_person("t-race-1", "pw-race-1", role=Role.teacher)
    first, second = db.sessions(), db.sessions()

    def appoint(session) -> None:
        account = session.get(Account, person.account_id)
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        administrators.appoint(session, account.person, school, actor="test")

    try:
        appoint(first)  # holds the person's row until it commits
        other = threading.Thread(target=lambda: (appoint(second), second.commit()))
        other.start()
        time.sleep(1)
        first.commit()
        other.join(30)
        assert not other.is_alive()
    finally:
        first.close()
        second.close()
    with db.session() as session:
        roles = session.scalars(select(Affiliation.role).join(
            Account, Account.person_id == Affiliation.person_id).where(
            Account.id == person.account_id, Affiliation.role == "school_admin",
            Affiliation.valid_to.is_(None))).all()
    assert len(roles) == 1, roles
