"""API tokens in the admin console (``/admin/tokens``): an administrator issues a token of
the console's own powers for their unit or one below, sees it once, and revokes it; the
operators' tokens are listed but stay theirs; tokens issued here end."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from core.audit import AuditEvent
from core.db import Database, utcnow
from core.settings import Settings
from core.store import Store
from directory import administrators, api_tokens
from directory.api_tokens import ApiToken
from directory.models import Account, OrgKind, OrgUnit, Role
from tests.idp import flow
from tests.idp.test_console_helpdesk import _post
from tests.idp.test_console_rules import _district_administrator, place, sign_in, uid, unit

TOKEN = re.compile(r"<pre[^>]*data-api-token>([^<]+)</pre>")


def _teacher_at(db: Database, make_person, code: str, login: str, name: str):
    teacher = make_person(login, f"pw-{login}", name=name, role=Role.teacher)
    with db.session() as session:
        for placed in session.get(Account, teacher.account_id).person.affiliations:
            session.delete(placed)
    place(db, teacher.account_id, code, Role.teacher)
    return teacher


def _issue(client: TestClient, at: str, *permissions: str, days: str = "90",
           name: str = "教务系统同步"):
    return client.post("/admin/tokens/issue", data={
        "csrf_token": flow.csrf_of(client.get("/").text),
        "unit": "T-DIST", "name": name, "at": at, "permission": list(permissions),
        "days": days}, follow_redirects=False)


def _lock_state(client: TestClient, token: str, person_uid: str):
    return client.get(f"/api/admin/people/{person_uid}/sign-in-lock",
                      headers={"authorization": f"Bearer {token}"})


def _unlock_token(client: TestClient, db: Database, store: Store, make_person, district,
                  login: str, name: str) -> tuple[str, str]:
    """A ``security:unlock`` token the district administrator issued for T-DS, and the uid
    of a teacher there, which it reaches."""
    _teacher_at(db, make_person, "T-DS", login, name)
    sign_in(client, store, district.account_id)
    token = TOKEN.search(client.get(_issue(client, "T-DS", "security:unlock")
                                    .headers["location"]).text)[1]
    teacher_uid = uid(db, name)
    assert _lock_state(client, token, teacher_uid).status_code == 200
    return token, teacher_uid


def test_an_administrator_issues_a_token_sees_it_once_and_revokes_it(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    district = _district_administrator(db, make_person)
    _teacher_at(db, make_person, "T-DS", "t600", "学校老师")
    sign_in(client, store, district.account_id)
    listed = client.get("/admin/tokens", params={"unit": "T-DIST"})
    assert listed.status_code == 200 and "data-no-tokens" in listed.text
    assert "data-nav-tokens" in listed.text and "API 令牌" in listed.text  # zh-CN first

    issued = _issue(client, "T-DS", "security:unlock", "directory:read", days="30")
    assert issued.status_code == 303, issued.text
    shown = client.get(issued.headers["location"])
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    token = TOKEN.search(shown.text)[1]
    assert token.startswith(api_tokens.TOKEN_PREFIX)
    again = client.get(issued.headers["location"])
    assert "data-token-gone" in again.text and token not in again.text

    teacher_uid = uid(db, "学校老师")
    assert _lock_state(client, token, teacher_uid).status_code == 200
    reset = client.post(f"/api/admin/people/{teacher_uid}/password/reset",
                        headers={"authorization": f"Bearer {token}"})
    assert reset.status_code == 403  # not a power it was given
    with db.session() as session:
        row = session.scalar(select(ApiToken))
        assert row.issued_by == f"account:{district.account_id}"
        assert timedelta(days=29) < row.expires_at - utcnow() <= timedelta(days=30)
        event = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "api_token.issue"))
        detail = json.loads(event.detail)
        assert detail["scope"] == "T-DS" and detail["as"] == "administrator@T-DIST"
        assert detail["permissions"] == "directory:read security:unlock" and "expires" in detail
        assert token not in event.detail

    page = client.get("/admin/tokens", params={"unit": "T-DIST"})
    assert "教务系统同步" in page.text and "T-DS单位" in page.text and "您签发" in page.text
    revoked = _post(client, f"/admin/tokens/{row.id}/revoke", "T-DIST")
    assert revoked.status_code == 303 and "done=revoked" in revoked.headers["location"]
    assert _lock_state(client, token, teacher_uid).status_code == 401
    assert "教务系统同步" not in client.get("/admin/tokens", params={"unit": "T-DIST"}).text
    with db.session() as session:
        event = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "api_token.revoke"))
        assert event.target == f"api-token:{row.id}"
        assert event.actor == f"account:{district.account_id}"
        assert json.loads(event.detail) == {"as": "administrator@T-DIST"}


def test_a_token_carries_no_more_than_the_console_and_reaches_no_further(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    district = _district_administrator(db, make_person)
    unit(db, "T-DS-C1", OrgKind.class_, parent="T-DS")
    sign_in(client, store, district.account_id)
    refused = {
        "scim": _issue(client, "T-DS", "scim"),  # writes the directory: the operators'
        "mixed": _issue(client, "T-DS", "scim", "directory:read"),
        "none": _issue(client, "T-DS"),
        "elsewhere": _issue(client, "T-SCHOOL", "directory:read"),  # not below T-DIST
        "a class": _issue(client, "T-DS-C1", "directory:read"),
        "for ever": _issue(client, "T-DS", "directory:read", days="1000"),
        "no name": _issue(client, "T-DS", "directory:read", name=" "),
        "nothing": _issue(client, "NO-SUCH", "directory:read"),
    }
    for why, answer in refused.items():
        assert answer.status_code == 400 and "data-error" in answer.text, why
    with db.session() as session:
        assert session.scalars(select(ApiToken)).all() == []
    kept = refused["for ever"].text  # the form keeps what was typed
    assert 'value="T-DS"' in kept and 'value="directory:read" checked' in kept


def test_the_operators_tokens_are_listed_but_stay_theirs(
        client: TestClient, db: Database, settings: Settings, store: Store,
        make_person) -> None:
    district = _district_administrator(db, make_person)
    with db.session() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-DS"))
        operators, _ = api_tokens.issue(session, settings, name="区同步", scope=school,
                                        permissions={"scim"}, issued_by="cli:root")
        elsewhere, _ = api_tokens.issue(session, settings, name="别处", scope=session.scalar(
            select(OrgUnit).where(OrgUnit.code == "T-SCHOOL")), permissions={"scim"},
            issued_by="account:999")
        ids = operators.id, elsewhere.id
    sign_in(client, store, district.account_id)
    page = client.get("/admin/tokens", params={"unit": "T-DIST"})
    row = re.search(rf'<tr data-token="{ids[0]}">.*?</tr>', page.text, re.S)[0]
    assert "区同步" in row and "data-revoke" not in row and "运维" in row
    assert "别处" not in page.text  # outside the district
    for token_id in (*ids, "x1", "99999999999"):
        assert _post(client, f"/admin/tokens/{token_id}/revoke", "T-DIST").status_code == 404
    for token_id in (ids[1], "x1", "99999999999", "١"):  # an Arabic-Indic digit one
        assert client.get(f"/admin/tokens/{token_id}",
                          params={"unit": "T-DIST"}).status_code == 404, token_id
    assert "data-token-gone" in client.get(f"/admin/tokens/{ids[0]}",
                                           params={"unit": "T-DIST"}).text  # no value here
    with db.session() as session:
        assert all(session.get(ApiToken, i).revoked_at is None for i in ids)


def test_an_expired_token_stops_and_leaves_the_list(
        client: TestClient, db: Database, settings: Settings, store: Store,
        make_person) -> None:
    district = _district_administrator(db, make_person)
    token, teacher_uid = _unlock_token(client, db, store, make_person, district,
                                       "t601", "过期测试老师")
    with db.session() as session:
        session.scalar(select(ApiToken)).expires_at = utcnow() - timedelta(seconds=1)
    assert _lock_state(client, token, teacher_uid).status_code == 401
    assert "教务系统同步" not in client.get("/admin/tokens", params={"unit": "T-DIST"}).text


def test_the_helpdesk_has_no_tokens_page(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    desk = make_person("t602", "pw-t602", name="服务台", role=Role.teacher)
    place(db, desk.account_id, "T-SCHOOL", Role.helpdesk)
    sign_in(client, store, desk.account_id)
    assert "data-nav-tokens" not in client.get("/admin").text
    assert client.get("/admin/tokens").status_code == 403
    assert _post(client, "/admin/tokens/issue", "T-SCHOOL", name="x", at="T-SCHOOL",
                 permission="directory:read", days="30").status_code == 403


def test_the_command_line_issues_a_token_that_ends(
        db: Database, settings: Settings, make_person, monkeypatch, tmp_path) -> None:
    from idp.cli import app

    make_person()  # the test city
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    made = CliRunner().invoke(app, ["tokens", "issue", "--name", "sync", "--org", "T-SCHOOL",
                                    "--permission", "scim", "--days", "7"])
    assert made.exit_code == 0, made.output
    with db.session() as session:
        row = session.scalar(select(ApiToken))
        assert row.issued_by.startswith("cli:")
        assert timedelta(days=6) < row.expires_at - utcnow() <= timedelta(days=7)
    listed = CliRunner().invoke(app, ["tokens", "list"], env={"COLUMNS": "200"})
    assert "sync" in listed.output and row.expires_at.strftime("%Y-%m-%d") in listed.output


def test_a_token_acts_with_its_issuers_powers_and_stops_with_them(
        client: TestClient, db: Database, settings: Settings, store: Store, make_person,
        monkeypatch, tmp_path) -> None:
    """An administrator let go keeps no way in through a token they issued: it works while
    they administer its unit with an open account and an active person, and stops (401,
    as an unknown token) when any of that ends; the unit's other administrators see it
    marked stopped, and so do the operators."""
    from idp.cli import app

    district = _district_administrator(db, make_person)
    colleague = make_person("d101", "pw-district-101", name="区管理员二", role=Role.staff)
    place(db, colleague.account_id, "T-DIST", Role.district_admin)
    token, teacher_uid = _unlock_token(client, db, store, make_person, district,
                                       "t602", "令牌老师")

    def issuer(change) -> int:
        with db.session() as session:
            change(session.get(Account, district.account_id))
        return _lock_state(client, token, teacher_uid).status_code

    assert issuer(lambda a: setattr(a.person, "status", "left")) == 401
    assert issuer(lambda a: setattr(a.person, "status", "active")) == 200  # not revoked
    assert issuer(lambda a: setattr(a, "disabled", True)) == 401
    assert issuer(lambda a: setattr(a, "disabled", False)) == 200
    with db.session() as session:
        district_unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-DIST"))
        assert administrators.end(session, session.get(Account, district.account_id).person,
                                  district_unit, actor="test")
    assert _lock_state(client, token, teacher_uid).status_code == 401
    with db.session() as session:  # given again the same day: a new appointment
        administrators.appoint(session, session.get(Account, district.account_id).person,
                               session.scalar(select(OrgUnit).where(OrgUnit.code == "T-DIST")),
                               actor="test")
    assert _lock_state(client, token, teacher_uid).status_code == 401
    with db.session() as session:  # a token from before migration 0023, checked by the
        row = session.scalar(select(ApiToken))  # day: only a role held since it was issued
        row.last_appointment_id = None
    assert _lock_state(client, token, teacher_uid).status_code == 200  # (same day: held)
    with db.session() as session:
        session.scalar(select(ApiToken)).created_at -= timedelta(days=1)
    assert _lock_state(client, token, teacher_uid).status_code == 401

    sign_in(client, store, colleague.account_id)
    page = client.get("/admin/tokens", params={"unit": "T-DIST"})
    row = re.search(r'<tr data-token="\d+">.*?</tr>', page.text, re.S)[0]
    assert "data-stopped" in row and "data-revoke" in row  # theirs to clean up
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    listed = CliRunner().invoke(app, ["tokens", "list"], env={"COLUMNS": "200"})
    assert "(stopped" in listed.output, listed.output


def test_a_token_goes_on_while_one_of_its_issuers_appointments_does(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    """A district administrator also made administrator of one of its schools issues a
    token for the school: when the district role ends, the school's still covers it."""
    district = _district_administrator(db, make_person)
    with db.session() as session:
        administrators.appoint(session, session.get(Account, district.account_id).person,
                               session.scalar(select(OrgUnit).where(OrgUnit.code == "T-DS")),
                               actor="test")
    token, teacher_uid = _unlock_token(client, db, store, make_person, district, "t990",
                                       "双职老师")
    with db.session() as session:
        assert administrators.end(session, session.get(Account, district.account_id).person,
                                  session.scalar(select(OrgUnit).where(
                                      OrgUnit.code == "T-DIST")), actor="test")
    assert _lock_state(client, token, teacher_uid).status_code == 200
    with db.session() as session:
        assert administrators.end(session, session.get(Account, district.account_id).person,
                                  session.scalar(select(OrgUnit).where(
                                      OrgUnit.code == "T-DS")), actor="test")
    assert _lock_state(client, token, teacher_uid).status_code == 401


def test_a_list_asks_each_issuers_standing_once(
        client: TestClient, db: Database, store: Store, make_person, monkeypatch) -> None:
    """Three tokens of one administrator for one unit: the list asks once whether their
    issuer still administers it, and marks none stopped."""
    district = _district_administrator(db, make_person)
    sign_in(client, store, district.account_id)
    for _ in range(3):
        assert _issue(client, "T-DS", "directory:read").status_code == 303
    asked = []
    real = api_tokens.issuer_administers
    monkeypatch.setattr(api_tokens, "issuer_administers",
                        lambda session, row: asked.append(row.id) or real(session, row))
    page = client.get("/admin/tokens", params={"unit": "T-DIST"})
    assert page.text.count("<tr data-token=") == 3 and "data-stopped" not in page.text
    assert len(asked) == 1
