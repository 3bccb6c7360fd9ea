"""The helpdesk (role ``helpdesk``): the unit's administrator puts a teacher on it; it
finds people and helps them sign in, and nothing else: no appointments, no apps, and
nobody who administers a unit (else a district's helpdesk would take over a school
administrator's account with a temporary password, and the school with it)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from core.store import Store
from directory import administrators
from directory.models import Account, Affiliation, OrgKind, OrgUnit, Role
from mfa import guards
from tests.idp import flow
from tests.idp.test_console_rules import place, sign_in, uid, unit


def _post(client: TestClient, path: str, unit_code: str, **fields: str):
    page = client.get("/")  # its sign-out button carries the session's CSRF token
    return client.post(path, data={"csrf_token": flow.csrf_of(page.text), "unit": unit_code,
                                   **fields}, follow_redirects=False)


def _roles(db: Database, account_id: int) -> set[str]:
    with db.session() as session:
        person_id = session.get(Account, account_id).person_id
        return set(session.scalars(select(Affiliation.role).where(
            Affiliation.person_id == person_id, Affiliation.valid_to.is_(None))))


def test_the_school_puts_a_teacher_on_its_helpdesk_who_helps_and_does_nothing_else(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    admin = make_person("a400", "pw-admin-400", name="校管理员", role=Role.staff)
    place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
    desk = make_person("t400", "pw-teacher-400", name="服务台老师", role=Role.teacher)
    pupil = make_person("s400", "pw-pupil-400", name="忘密码学生")
    sign_in(client, store, admin.account_id)
    shown = client.get(f"/admin/people/{uid(db, '服务台老师')}", params={"unit": "T-SCHOOL"})
    assert "data-helpdesk" in shown.text and 'id="helpdesk-at"' in shown.text
    assert 'id="appoint-at"' not in shown.text  # a school appoints no administrator
    done = _post(client, f"/admin/people/{uid(db, '服务台老师')}/helpdesk/appoint",
                 "T-SCHOOL", at="T-SCHOOL")
    assert done.status_code == 303 and "done=helpdesk" in done.headers["location"]
    assert Role.helpdesk.value in _roles(db, desk.account_id)
    with db.session() as session:
        detail = session.scalar(select(AuditEvent.detail).where(
            AuditEvent.action == "admin.appoint"))
    assert '"role": "helpdesk"' in detail
    assert '"as": "administrator@T-SCHOOL"' in detail  # the capacity acted in

    helper = TestClient(client.app)
    sign_in(helper, store, desk.account_id, amr=["pwd"])  # one factor: not enough
    assert helper.get("/admin", follow_redirects=False).status_code == 303
    sign_in(helper, store, desk.account_id)
    console = helper.get("/admin")
    assert console.status_code == 200 and "data-nav-apps" not in console.text
    assert helper.get("/admin/apps").status_code == 403
    assert _post(helper, "/admin/apps/register", "T-SCHOOL", name="x",
                 redirect_uris="https://x.example.edu.cn/cb", kind="web").status_code == 403

    for _ in range(guards.ACCOUNT.lock_after):
        guards.record_failure(store, guards.ACCOUNT, str(pupil.account_id))
    assert guards.locked_seconds(store, guards.ACCOUNT, str(pupil.account_id)) > 0
    pupil_uid = uid(db, "忘密码学生")
    page = helper.get(f"/admin/people/{pupil_uid}")
    assert 'data-action="unlock"' in page.text and "data-helpdesk" not in page.text
    assert "data-administrator" not in page.text
    assert _post(helper, f"/admin/people/{pupil_uid}/unlock", "T-SCHOOL").status_code == 303
    assert guards.locked_seconds(store, guards.ACCOUNT, str(pupil.account_id)) == 0
    given = _post(helper, f"/admin/people/{pupil_uid}/password/reset", "T-SCHOOL")
    assert given.status_code == 303 and given.headers["location"].endswith(
        "/password?unit=T-SCHOOL")
    with db.session() as session:
        detail = session.scalar(select(AuditEvent.detail).where(
            AuditEvent.action == "account.password.reset"))
    assert '"as": "helpdesk@T-SCHOOL"' in detail
    for role in ("helpdesk", "administrator"):  # appoints nobody
        tried = _post(helper, f"/admin/people/{pupil_uid}/{role}/appoint", "T-SCHOOL",
                      at="T-SCHOOL")
        assert tried.status_code == 403, role
    assert _roles(db, pupil.account_id) == {Role.student.value}
    assert _post(helper, f"/admin/people/{uid(db, '校管理员')}/password/reset",
                 "T-SCHOOL").status_code == 404  # the school's own administrator

    ended = _post(client, f"/admin/people/{uid(db, '服务台老师')}/helpdesk/end", "T-SCHOOL",
                  at="T-SCHOOL")
    assert ended.status_code == 303 and "done=helpdesk-ended" in ended.headers["location"]
    assert Role.helpdesk.value not in _roles(db, desk.account_id)
    assert helper.get("/admin").status_code == 403  # closed at once


def test_a_districts_helpdesk_does_not_help_a_school_administrator(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """The district's administrator helps the school's administrator (a unit below); the
    district's helpdesk sees them but gets no action, and the page says why."""
    unit(db, "T-DIST", OrgKind.district)
    unit(db, "T-DS", OrgKind.school, parent="T-DIST")
    desk = make_person("d401", "pw-desk-401", name="区服务台", role=Role.staff)
    place(db, desk.account_id, "T-DIST", Role.helpdesk)
    head = make_person("a401", "pw-admin-401", name="分校管理员", role=Role.staff)
    with db.session() as session:
        for placed in session.get(Account, head.account_id).person.affiliations:
            session.delete(placed)
    place(db, head.account_id, "T-DS", Role.teacher)
    place(db, head.account_id, "T-DS", Role.school_admin)
    sign_in(client, store, desk.account_id)
    target = uid(db, "分校管理员")
    page = client.get(f"/admin/people/{target}", params={"unit": "T-DIST"})
    assert page.status_code == 200 and 'data-action="password/reset"' not in page.text
    assert "服务台" in page.text  # 管理员的登录由管理员协助, not the helpdesk
    for action in ("password/reset", "second-factors/reset", "unlock", "sign-out"):
        assert _post(client, f"/admin/people/{target}/{action}", "T-DIST").status_code == 404
    with db.session() as session:
        assert not session.get(Account, head.account_id).must_change_password

    district = TestClient(client.app)
    boss = make_person("d402", "pw-boss-402", name="区管理员", role=Role.staff)
    place(db, boss.account_id, "T-DIST", Role.district_admin)
    sign_in(district, store, boss.account_id)
    assert _post(district, f"/admin/people/{target}/unlock", "T-DIST").status_code == 303


def test_the_helpdesk_needs_two_factors_whatever_the_settings() -> None:
    from mfa import policy

    assert policy.required_level(("helpdesk",), ()) == 2
    assert policy.required_level(("teacher",), ()) == 1


def test_scim_does_not_end_the_helpdesk(client: TestClient, db: Database, settings: Settings,
                                        make_person) -> None:
    """As for an administrator's role: SCIM neither grants nor ends the console's roles
    (``directory.models.CONSOLE_ROLES``); a DELETE of such a person is refused (400)."""
    from directory.api_tokens import issue

    desk = make_person("t404", "pw-desk-404", name="同步服务台", role=Role.teacher)
    place(db, desk.account_id, "T-SCHOOL", Role.helpdesk)
    with db.session() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        _row, token = issue(session, settings, name="scim-helpdesk", scope=school,
                            permissions={"scim"})
    headers = {"authorization": f"Bearer {token}"}
    target = uid(db, "同步服务台")
    gone = client.delete(f"/scim/v2/Users/{target}", headers=headers)
    assert gone.status_code == 400 and "helpdesk" in gone.json()["detail"], gone.text
    assert Role.helpdesk.value in _roles(db, desk.account_id)


def test_the_operator_appoints_and_ends_a_helpdesk(db: Database, settings: Settings,
                                                   make_person, monkeypatch, tmp_path) -> None:
    from idp.cli import app

    desk = make_person("t403", "pw-desk-403", name="命令行服务台", role=Role.teacher)
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    made = runner.invoke(app, ["admin", "appoint", "--login", "t403", "--unit", "T-SCHOOL",
                               "--helpdesk"])
    assert made.exit_code == 0 and "helpdesk of T-SCHOOL" in made.output, made.output
    with db.session() as session:
        assert [(u.code, full) for u, full in administrators.console_posts(
            session, desk.account_id)] == [("T-SCHOOL", False)]
    ended = runner.invoke(app, ["admin", "end", "--login", "t403", "--unit", "T-SCHOOL",
                                "--helpdesk"])
    assert ended.exit_code == 0 and "ended t403's helpdesk role" in ended.output, ended.output
    assert Role.helpdesk.value not in _roles(db, desk.account_id)
