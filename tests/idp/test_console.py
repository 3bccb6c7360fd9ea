"""The admin console (/admin): a school administrator signed in with two factors finds,
sees and helps the people the school manages, and nobody else."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from core.store import Store
from directory.models import Account, OrgKind, OrgUnit, Person, Role
from directory.orgs import ensure_org_unit
from directory.people import affiliate
from idp import sessions
from mfa import guards
from tests.idp import flow
from tests.idp.test_mfa_flow import SECRET_ON_PAGE, _code, _submit

TEMPORARY = re.compile(r'<pre id="temporary-password" data-temporary>([^<]+)</pre>')


def _uid(db: Database, name: str) -> str:
    with db.session() as session:
        return session.scalar(select(Person.uid).where(Person.name == name))


def _place(db: Database, account_id: int, code: str, role: Role, *, parent: str = "T-CITY",
           kind: OrgKind = OrgKind.school) -> None:
    with db.session() as session:
        top = session.scalar(select(OrgUnit).where(OrgUnit.code == parent))
        unit = ensure_org_unit(session, code=code, name=f"{code}单位", kind=kind, parent=top)
        affiliate(session, session.get(Account, account_id).person, unit, role, date(2026, 9, 1))


def sign_in_to_console(client: TestClient, login: str, password: str) -> str:
    """Sign in at /login?next=/admin: the password, then (an administrator's policy) the
    authenticator app set up on /mfa; the console's page."""
    page = client.get("/login?next=/admin")
    answer = client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "login": login,
                                         "password": password, "next": "/admin"},
                         follow_redirects=False)
    assert answer.headers["location"] == "/mfa", answer.headers.get("location")
    step = client.get("/mfa")
    secret = SECRET_ON_PAGE.search(step.text).group(1).replace(" ", "")
    done = _submit(client, step.text, _code(secret))
    assert done.headers["location"] == "/admin", done.headers.get("location")
    console = client.get("/admin")
    assert console.status_code == 200, console.text
    return console.text


@pytest.fixture
def school(db: Database, make_person):
    """A school administrator (T-SCHOOL), a teacher there, a teacher also placed at another
    school, and a pupil of another school."""
    admin = make_person("a100", "pw-admin-100", name="校管理员", role=Role.staff)
    _place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
    teacher = make_person("t100", "pw-teacher-100", name="帮助老师", role=Role.teacher)
    both = make_person("t101", "pw-teacher-101", name="两校老师", role=Role.teacher)
    _place(db, both.account_id, "T-OTHER", Role.teacher)
    pupil = make_person("s100", "pw-pupil-100", name="别校学生", role=Role.student)
    moved = make_person("s102", "pw-pupil-102", name="转走学生", role=Role.student)
    with db.session() as session:  # one was never at the school, one moved away
        for who, gone in ((pupil, session.delete), (moved, None)):
            for placed in session.get(Account, who.account_id).person.affiliations:
                if gone:
                    gone(placed)
                else:
                    placed.valid_to = date(2026, 10, 1)
    _place(db, pupil.account_id, "T-OTHER", Role.student)
    _place(db, moved.account_id, "T-OTHER", Role.student)
    return admin, teacher, both, pupil, moved


def _act(client: TestClient, page: str, uid: str, action: str, **fields: str):
    return client.post(f"/admin/people/{uid}/{action}", data={
        "csrf_token": flow.csrf_of(page), "unit": "T-SCHOOL", **fields}, follow_redirects=False)


def test_the_console_needs_a_signed_in_administrator(client: TestClient, make_person) -> None:
    away = client.get("/admin", follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/login?next=%2Fadmin"
    pupil = make_person("s101", "pw-pupil-101", name="普通学生")
    page = client.get("/login?next=/admin")
    client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "login": pupil.login,
                                "password": pupil.password, "next": "/admin"})
    assert "data-signed-in" in client.get("/").text
    assert "data-console" not in client.get("/").text
    refused = client.get("/admin")
    assert refused.status_code == 403
    assert "没有管理任何学校或区县" in refused.text  # zh-CN first


def test_a_school_administrator_finds_sees_and_helps_a_teacher(
        client: TestClient, school, db: Database, settings: Settings, store: Store) -> None:
    admin, teacher, _both, _pupil, _moved = school
    console = sign_in_to_console(client, admin.login, admin.password)
    assert "Find a person" in console or "查找" in console
    assert "data-console" in client.get("/").text  # the start page links to it
    found = client.get("/admin", params={"q": "帮助"})
    assert "帮助老师" in found.text and "别校学生" not in found.text
    assert found.headers["cache-control"] == "no-store"
    by_number = client.get("/admin", params={"q": "T100"})  # a login identifier
    assert "帮助老师" in by_number.text
    uid = _uid(db, "帮助老师")

    for _ in range(12):  # the teacher's typos lock the account
        guards.record_failure(store, guards.ACCOUNT, str(teacher.account_id))
    assert guards.locked_seconds(store, guards.ACCOUNT, str(teacher.account_id)) > 0
    shown = client.get(f"/admin/people/{uid}", params={"unit": "T-SCHOOL"})
    assert shown.status_code == 200 and "data-security" in shown.text
    assert "data-action=\"unlock\"" in shown.text
    assert _act(client, shown.text, uid, "unlock").status_code == 303
    assert guards.locked_seconds(store, guards.ACCOUNT, str(teacher.account_id)) == 0

    reset = _act(client, shown.text, uid, "second-factors/reset", passkeys="1", phone="1")
    assert reset.status_code == 303 and "done=second-factors" in reset.headers["location"]
    with db.session() as session:
        assert session.get(Account, teacher.account_id).sms_suspended_at is not None
    shown = client.get(reset.headers["location"])
    assert "data-done" in shown.text and 'data-action="phone/restore"' in shown.text
    assert _act(client, shown.text, uid, "phone/restore").status_code == 303
    with db.session() as session:
        assert session.get(Account, teacher.account_id).sms_suspended_at is None
    assert _act(client, shown.text, uid, "sign-out").status_code == 303

    given = _act(client, shown.text, uid, "password/reset")
    assert given.status_code == 303  # post, redirect, get: a reload gives no second password
    page = client.get(given.headers["location"])
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    temporary = TEMPORARY.search(page.text).group(1)
    again = client.get(given.headers["location"])  # the reload
    assert TEMPORARY.search(again.text) is None and "temporary-gone" in again.text
    assert temporary not in again.text
    with db.session() as session:
        assert session.get(Account, teacher.account_id).must_change_password
        actors = {e.actor for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(["security.unlock", "account.password.reset", "mfa.reset",
                                   "mfa.phone_restore", "account.sign_out_everywhere"])))}
        actions = {e.action for e in session.scalars(select(AuditEvent).where(
            AuditEvent.actor == f"account:{admin.account_id}"))}
    assert actors == {f"account:{admin.account_id}"}
    assert {"security.unlock", "mfa.reset", "mfa.phone_restore", "account.sign_out_everywhere",
            "account.password.reset"} <= actions
    other = TestClient(client.app)
    sign_in = other.get("/login")
    answer = other.post("/login", data={"csrf_token": flow.csrf_of(sign_in.text),
                                        "login": teacher.login, "password": temporary},
                        follow_redirects=False)
    assert answer.status_code == 303  # on to choosing a new password


def test_the_console_reaches_nobody_the_school_does_not_manage(
        client: TestClient, school, db: Database, store: Store) -> None:
    admin, _teacher, both, pupil, moved = school
    sign_in_to_console(client, admin.login, admin.password)
    page = client.get(f"/admin/people/{_uid(db, '帮助老师')}").text  # a form's CSRF token
    outside = _uid(db, "别校学生")
    assert client.get(f"/admin/people/{outside}").status_code == 404
    for target in (_uid(db, "两校老师"), _uid(db, "校管理员"), _uid(db, "转走学生")):
        shown = client.get(f"/admin/people/{target}")
        assert shown.status_code == 200 and "data-not-managed" in shown.text
        assert "data-security" not in shown.text
    for target, _account in ((outside, pupil), (_uid(db, "两校老师"), both),
                            (_uid(db, "校管理员"), admin), (_uid(db, "转走学生"), moved)):
        for action in ("unlock", "sign-out", "second-factors/reset", "phone/restore",
                       "password/reset"):
            assert _act(client, page, target, action).status_code == 404, (target, action)
    with db.session() as session:
        assert not session.get(Account, both.account_id).must_change_password
    assert client.get("/admin", params={"unit": "T-OTHER"}).status_code == 403


def test_actions_need_a_recent_sign_in_and_a_form_of_this_site(
        client: TestClient, school, db: Database, store: Store) -> None:
    admin, teacher, _both, _pupil, _moved = school
    sign_in_to_console(client, admin.login, admin.password)
    uid = _uid(db, "帮助老师")
    page = client.get(f"/admin/people/{uid}").text
    forged = client.post(f"/admin/people/{uid}/password/reset", data={"unit": "T-SCHOOL"},
                         follow_redirects=False)
    assert forged.status_code == 403  # no CSRF token
    token = client.cookies.get(sessions.COOKIE)
    key = sessions._key(token)
    stored = json.loads(store.get(key))
    stored["auth_time"] -= sessions.REAUTH_SECONDS + 60  # signed in eleven minutes ago
    store.set(key, json.dumps(stored).encode(), ttl=3600)
    later = _act(client, page, uid, "password/reset")
    assert later.status_code == 303
    assert later.headers["location"].startswith("/login?next=%2Fadmin%2Fpeople%2F")
    assert client.get(f"/admin/people/{uid}").status_code == 200  # seeing needs no more
    with db.session() as session:
        assert not session.get(Account, teacher.account_id).must_change_password
