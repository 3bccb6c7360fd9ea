"""A lost or replaced phone: an administrator resets the second factors (API and CLI), and
the second-factor page says so and lets the person leave the step."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from core.store import Store
from directory.models import Account, OrgKind, OrgUnit, Role
from directory.orgs import ensure_org_unit
from mfa import credentials, recovery
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_cli import demo_var, idp
from tests.idp.test_lockout import _token, _uid, token_actor
from tests.idp.test_mfa_flow import SECRET_ON_PAGE, _code, _id_token_claims, _submit
from tests.mfa.test_webauthn import _enrol

URL = "/api/admin/people/{uid}/second-factors/reset"


def enrol_at_sign_in(client: TestClient, registered, login: str, password: str) -> str:
    """The teacher's first sign-in: set up the authenticator app on the /mfa page; its
    secret."""
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, login, password).headers["location"] == "/mfa"
    page = client.get("/mfa")
    secret = SECRET_ON_PAGE.search(page.text).group(1).replace(" ", "")
    done = flow.follow(client, _submit(client, page.text, _code(secret)))
    assert done.headers["location"].startswith(REDIRECT_URI)
    client.cookies.clear()
    return secret


def _factors(db: Database, account_id: int) -> dict[str, int]:
    with db.session() as session:
        rows = credentials.confirmed(session, account_id)
        return {kind: sum(r.kind == kind for r in rows) for kind in ("totp", "recovery",
                                                                      "webauthn")}


def test_admin_resets_a_lost_phone_and_the_next_sign_in_sets_up_a_new_app(
        client: TestClient, make_client, make_person, db: Database, settings: Settings,
        store: Store) -> None:
    registered = make_client()
    teacher = make_person("t70", "pw-teacher-70", name="丢手机老师", role=Role.teacher)
    enrol_at_sign_in(client, registered, "t70", "pw-teacher-70")
    with db.session() as session:
        recovery.generate(session, settings, teacher.account_id)
    _enrol(db, settings, store, teacher)
    assert _factors(db, teacher.account_id) == {"totp": 1, "recovery": 10, "webauthn": 1}
    url = URL.format(uid=_uid(db, "丢手机老师"))

    unlock_only = _token(db, settings, "T-CITY", {"security:unlock"})
    refused = client.post(url, headers={"authorization": f"Bearer {unlock_only}"})
    assert refused.status_code == 403  # unlocking is not resetting
    assert client.post(url).status_code == 401
    with db.session() as session:
        city = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-CITY"))
        ensure_org_unit(session, code="T-ELSE", name="别的学校", kind=OrgKind.school,
                        parent=city)
    elsewhere = _token(db, settings, "T-ELSE", {"security:mfa-reset"})
    assert client.post(url, headers={"authorization": f"Bearer {elsewhere}"}).status_code == 404
    assert _factors(db, teacher.account_id) == {"totp": 1, "recovery": 10, "webauthn": 1}

    token = _token(db, settings, "T-CITY", {"security:mfa-reset"})
    headers = {"authorization": f"Bearer {token}"}
    bad = client.post(url, headers=headers, json={"passkeys": True, "everything": True})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith(
        "application/problem+json")
    assert _factors(db, teacher.account_id) == {"totp": 1, "recovery": 10, "webauthn": 1}
    done = client.post(url, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["removed"] == {"authenticator_apps": 1, "recovery_codes": 10,
                                      "passkeys": 0}
    assert _factors(db, teacher.account_id) == {"totp": 0, "recovery": 0, "webauthn": 1}
    with db.sessions() as session:  # what the lost phone held ends (docs/passwords.md)
        assert session.get(Account, teacher.account_id).signed_out_at is not None
    assert store.members(f"sso-of:{teacher.account_id}") == set()  # its sessions at once
    with_keys = client.post(url, headers=headers, json={"passkeys": True})
    assert with_keys.json()["removed"] == {"authenticator_apps": 0, "recovery_codes": 0,
                                           "passkeys": 1}
    with db.session() as session:
        events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.action == "mfa.reset").order_by(AuditEvent.seq)))
    assert [(e.actor, e.target) for e in events] == [
        (token_actor(db, settings, token), f"account:{teacher.account_id}")] * 2

    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t70", "pw-teacher-70").headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "<svg" in page.text  # no factor left: a new app is set up after the password


def test_cli_resets_on_the_database_alone(tmp_path: Path) -> None:
    env = demo_var(tmp_path)
    first = idp("security", "reset-mfa", "--login", "t20260001", env=env)
    assert first.returncode == 0, first.stderr
    assert "removed 1 authenticator app(s)" in first.stdout
    again = idp("security", "reset-mfa", "--login", "t20260001", "--passkeys", env=env)
    assert "removed 0 authenticator app(s), 0 recovery code(s), 0 passkey(s)" in again.stdout
    unknown = idp("security", "reset-mfa", "--login", "nobody-at-all", env=env)
    assert unknown.returncode == 2 and "no account" in unknown.stderr
    verify = idp("audit", "verify", env=env)
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_second_factor_page_helps_with_a_lost_phone_and_can_be_left(
        client: TestClient, make_client, make_person, lang: str) -> None:
    registered = make_client()
    make_person("t71", "pw-teacher-71", role=Role.teacher)
    student = make_person("s71", "pw-student-71")
    client.headers["accept-language"] = lang
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t71", "pw-teacher-71").headers["location"] == "/mfa"
    page = client.get("/mfa")
    help_text = {"zh-CN": "手机丢了", "en": "Lost your phone"}[lang]
    assert help_text in page.text and "data-mfa-cancel" in page.text

    left = client.post("/mfa/cancel", data={"csrf_token": flow.csrf_of(page.text)},
                       follow_redirects=False)
    assert left.status_code == 303 and left.headers["location"].startswith("/login?ia=")
    assert "idp_mfa" not in client.cookies and "idp_session" not in client.cookies
    assert client.get("/mfa").status_code == 400  # the step is gone
    # someone else signs in on the same request and reaches the app
    done = flow.follow(client, flow.login(client, left, "s71", "pw-student-71"))
    redirect = flow.Redirect(done.headers["location"])
    assert redirect.location.startswith(REDIRECT_URI) and redirect.params["state"] == "st-1"
    assert _id_token_claims(client, registered, redirect.params["code"])["sub"] == student.sub


def test_leaving_a_step_needs_the_form(client: TestClient, make_client, make_person) -> None:
    make_person("t72", "pw-teacher-72", role=Role.teacher)
    start = flow.authorize(client, client_id=make_client().client_id)
    flow.login(client, start, "t72", "pw-teacher-72")
    assert client.post("/mfa/cancel", follow_redirects=False).status_code in (400, 403)
    assert client.get("/mfa").status_code == 200  # still there


def test_leaving_a_step_up_keeps_the_session(client: TestClient, make_client,
                                             make_person) -> None:
    """A step-up of one's own session (an app asks for more), left: back to that request's
    sign-in page, and the session stays as it was."""
    registered = make_client()
    flow.code_flow(client, registered.client_id, make_person())
    session_cookie = client.cookies.get("idp_session")
    step_up = flow.authorize(client, client_id=registered.client_id,
                             acr_values="urn:edu:acr:mfa")
    assert step_up.headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "取消，换一个账号登录" not in page.text and ">取消<" in page.text
    left = client.post("/mfa/cancel", data={"csrf_token": flow.csrf_of(page.text)},
                       follow_redirects=False)
    assert left.status_code == 303 and left.headers["location"].startswith("/login?ia=")
    assert client.cookies.get("idp_session") == session_cookie


def test_over_https_the_step_cookie_is_host_prefixed(app, make_client, make_person) -> None:
    """Like the session's, the step's cookie is __Host- over https: a sibling subdomain
    cannot plant a step of its own."""
    browser = TestClient(app, base_url="https://127.0.0.1:8000")
    make_person("t73", "pw-teacher-73", role=Role.teacher)
    start = flow.authorize(browser, client_id=make_client().client_id)
    after = flow.login(browser, start, "t73", "pw-teacher-73")
    assert after.headers["location"] == "/mfa"
    assert any(h.startswith("__Host-idp_mfa=") and "secure" in h.lower()
               for h in after.headers.get_list("set-cookie"))
    page = browser.get("/mfa")
    assert page.status_code == 200
    left = browser.post("/mfa/cancel", data={"csrf_token": flow.csrf_of(page.text)},
                        follow_redirects=False)
    cleared = [h for h in left.headers.get_list("set-cookie") if "idp_mfa=" in h]
    assert cleared and cleared[0].startswith("__Host-idp_mfa=") and "max-age=0" in \
        cleared[0].lower()
