"""Passwords: an administrator's reset (a temporary password replaced at the next sign-in),
a person's own change, and signing out everywhere (sessions and tokens begun before end)."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from directory import passwords
from directory.models import Account, Role
from idp import sessions
from mfa import guards
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.live import live_server  # noqa: F401 - fixture
from tests.idp.test_cli import demo_var, idp
from tests.idp.test_lockout import _token, _uid, token_actor
from tests.idp.test_mfa_flow import _id_token_claims, _submit
from tests.idp.test_second_factor_reset import enrol_at_sign_in

TEMPORARY = re.compile(r"^[a-km-z2-9]{4}-[a-km-z2-9]{4}-[a-km-z2-9]{4}$")


def _tokens(client: TestClient, registered, code: str) -> dict:
    answer = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(registered.client_id, registered.secret))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _refresh(client: TestClient, registered, refresh_token: str):
    return client.post("/oauth2/token", data={"grant_type": "refresh_token",
                                              "refresh_token": refresh_token},
                       auth=(registered.client_id, registered.secret))


def _signed_in(client: TestClient) -> bool:
    return "data-signed-in" in client.get("/").text


def _actions(db: Database, action: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _new_password(client: TestClient, password: str, again: str | None = None):
    page = client.get("/password/new")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    return client.post("/password/new", data={
        "csrf_token": flow.csrf_of(page.text), "password": password,
        "again": password if again is None else again}, follow_redirects=False)


def test_admin_reset_ends_everything_and_the_next_sign_in_sets_a_new_password(
        client: TestClient, make_client, make_person, db: Database, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guards, "MAX_DELAY", 0)  # no waits between the wrong passwords
    registered = make_client()
    pupil = make_person("s80", "pw-pupil-80-old", name="忘密码同学")
    tokens = _tokens(client, registered, flow.code_flow(
        client, registered.client_id, pupil, scope="openid profile").params["code"])
    assert _signed_in(client)
    url = f"/api/admin/people/{_uid(db, '忘密码同学')}/password/reset"
    unlock_only = _token(db, settings, "T-CITY", {"security:unlock"})
    assert client.post(url, headers={"authorization": f"Bearer {unlock_only}"}).status_code \
        == 403
    elsewhere = TestClient(client.app)  # the pupil, trying passwords, locked the account
    start = flow.authorize(elsewhere, client_id=registered.client_id)
    for _ in range(guards.ACCOUNT.lock_after):
        flow.login(elsewhere, start, "s80", "x")
    assert guards.locked_seconds(client.app.state.store, guards.ACCOUNT, str(pupil.account_id))

    token = _token(db, settings, "T-CITY", {"security:password-reset"})
    admin = {"authorization": f"Bearer {token}"}
    time.sleep(1.01)  # access tokens carry whole seconds: issued a second before the reset
    answer = client.post(url, headers=admin)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    temporary = answer.json()["temporary_password"]
    assert TEMPORARY.match(temporary) and answer.json()["must_change"] is True
    assert [e.actor for e in _actions(db, "account.password.reset")] == [
        token_actor(db, settings, token)]
    assert temporary not in str([e.detail for e in _actions(db, "account.password.reset")])

    # whatever began before the reset has ended: the session (at once, in the store), the
    assert client.app.state.store.members(f"sso-of:{pupil.account_id}") == set()  # tokens
    assert not _signed_in(client)
    assert _refresh(client, registered, tokens["refresh_token"]).json()["error"] == \
        "invalid_grant"
    assert client.get("/oauth2/userinfo", headers={
        "authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
    introspected = client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                               auth=(registered.client_id, registered.secret)).json()
    assert introspected == {"active": False}

    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s80", "pw-pupil-80-old").status_code == 400
    after = flow.login(client, start, "s80", temporary)  # the lock was lifted with the reset
    assert after.status_code == 303 and after.headers["location"] == "/password/new"
    assert not _signed_in(client)  # no session before the new password
    assert "两次输入的新密码不一致" in _new_password(client, "long-enough-1", "other-one-2").text
    assert "太容易被猜到" in _new_password(client, "Password1").text
    assert "至少需要 8 个字符" in _new_password(client, "short").text
    assert "不要沿用临时密码" in _new_password(client, temporary).text
    from idp import sessions

    store = client.app.state.store  # a session begun elsewhere meanwhile (a passkey): the
    meanwhile, _ = sessions.start(store, account_id=pupil.account_id, sub=pupil.sub,  # new
                                  amr=["hwk"], acr="urn:edu:acr:sfa")  # password ends it
    done = flow.follow(client, _new_password(client, "my own long password"))
    assert store.get(sessions._key(meanwhile)) is None
    redirect = flow.Redirect(done.headers["location"])
    assert redirect.location.startswith(REDIRECT_URI) and redirect.params["state"] == "st-1"
    assert _id_token_claims(client, registered, redirect.params["code"])["sub"] == pupil.sub
    assert "idp_pw" not in client.cookies and _signed_in(client)
    with db.session() as session:
        assert not session.get(Account, pupil.account_id).must_change_password
    client.cookies.clear()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s80", temporary).status_code == 400
    assert flow.login(client, start, "s80", "my own long password").status_code == 303


def test_a_new_password_is_not_ones_own_login(db: Database, settings: Settings,
                                              make_person) -> None:
    pupil = make_person("s2026080801", "pw-pupil-81")
    with db.session() as session:
        assert passwords.problem_with(session, settings, pupil.account_id,
                                      "ｓ２０２６ 080801") == passwords.OWN_LOGIN
        assert passwords.problem_with(session, settings, pupil.account_id,
                                      "s2026080802") is None
        assert passwords.problem_with(session, settings, pupil.account_id,
                                      "zzzzzzzzzz") == passwords.TOO_COMMON
        assert passwords.problem_with(session, settings, pupil.account_id,
                                      "1234567890") == passwords.TOO_COMMON
        assert passwords.problem_with(session, settings, pupil.account_id,
                                      "x" * 1025) == passwords.TOO_LONG


def test_own_change_keeps_this_browser_and_signs_out_the_others(
        client: TestClient, make_client, make_person, db: Database) -> None:
    registered = make_client()
    pupil = make_person("s82", "pw-pupil-82-old")
    other = TestClient(client.app)  # the pupil's phone
    flow.code_flow(other, registered.client_id, pupil)
    flow.code_flow(client, registered.client_id, pupil)
    assert _signed_in(client) and _signed_in(other)
    page = client.get("/account/security/password")
    assert page.status_code == 200 and "在所有设备上退出" in page.text

    def change(current: str, new: str):
        return client.post("/account/security/password", data={
            "csrf_token": flow.csrf_of(page.text), "current": current, "password": new,
            "again": new}, follow_redirects=False)

    wrong = change("not-my-password", "a brand new password")
    assert wrong.status_code == 400 and "当前密码不正确" in wrong.text
    assert guards.failures(client.app.state.store, guards.ACCOUNT, str(pupil.account_id)) == 1
    done = change("pw-pupil-82-old", "a brand new password")
    assert done.status_code == 303
    assert "密码已修改" in client.get(done.headers["location"]).text
    assert _signed_in(client) and not _signed_in(other)
    assert [e.actor for e in _actions(db, "account.password.change")] == [
        f"account:{pupil.account_id}"]
    client.cookies.clear()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s82", "pw-pupil-82-old").status_code == 400
    assert flow.login(client, start, "s82", "a brand new password").status_code == 303


def test_a_change_whose_session_ended_meanwhile_stands_and_signs_in_again(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    """The browser's session ended (another tab signed out) between the check and the
    move to a new cookie token: the new password stands, the cookie goes, no 500."""
    registered = make_client()
    pupil = make_person("s83", "pw-pupil-83-old")
    flow.code_flow(client, registered.client_id, pupil)
    page = client.get("/account/security/password")
    real_renew = sessions.renew

    def signed_out_meanwhile(store, token, session):
        sessions.end(store, token)  # the other tab's sign-out
        return real_renew(store, token, session)

    monkeypatch.setattr(sessions, "renew", signed_out_meanwhile)
    done = client.post("/account/security/password", data={
        "csrf_token": flow.csrf_of(page.text), "current": "pw-pupil-83-old",
        "password": "another brand new one", "again": "another brand new one"},
        follow_redirects=False)
    assert done.status_code == 303 and not _signed_in(client)
    back = client.get(done.headers["location"])  # a sign-in, then the page that says so
    assert flow.is_login_page(back)
    [kept_next] = re.findall(r'name="next" value="([^"]*)"', back.text)
    answer = client.post("/login", data={
        "csrf_token": flow.csrf_of(back.text), "login": "s83",
        "password": "another brand new one", "next": html.unescape(kept_next)},
        follow_redirects=False)
    assert answer.headers["location"] == "/account/security/password?done=1"
    assert "密码已修改" in client.get(answer.headers["location"]).text


def test_the_password_page_needs_a_recent_sign_in(client: TestClient) -> None:
    answer = client.get("/account/security/password", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_sign_out_everywhere_from_one_browser(client: TestClient, make_client, make_person,
                                              db: Database, settings: Settings) -> None:
    registered = make_client()
    pupil = make_person("s83", "pw-pupil-83")
    other = TestClient(client.app)
    flow.code_flow(other, registered.client_id, pupil)
    kept = _tokens(other, registered, flow.code_flow(
        other, registered.client_id, pupil, scope="openid offline_access",
        prompt="consent").params["code"])
    assert "offline_access" in kept["scope"].split()
    flow.code_flow(client, registered.client_id, pupil)
    page = client.get("/account/security/password")
    out = client.post("/account/sign-out-everywhere",
                      data={"csrf_token": flow.csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/?signed_out=1"
    assert not _signed_in(client) and not _signed_in(other)
    # offline access too: a lost phone's apps must sign in again
    assert _refresh(client, registered, kept["refresh_token"]).json()["error"] == \
        "invalid_grant"
    assert len(_actions(db, "account.sign_out_everywhere")) == 1
    # a new sign-in right after holds (whole seconds, the same one included)
    flow.code_flow(client, registered.client_id, pupil)
    assert _signed_in(client)

    # the helpdesk's sign-out (admin API) ends it again
    url = f"/api/admin/people/{_uid(db, '赵同学')}/sign-out"
    helpdesk = {"authorization": f"Bearer {_token(db, settings, 'T-CITY', {'security:unlock'})}"}
    assert client.post(url, headers=helpdesk).json() == {"signed_out": True, "sessions_ended": 1}
    assert not _signed_in(client)


def test_cli_reset_password_and_sign_out(tmp_path: Path) -> None:
    env = demo_var(tmp_path)
    reset = idp("security", "reset-password", "--login", "s20260001", env=env)
    assert reset.returncode == 0, reset.stderr
    assert TEMPORARY.match(reset.stdout.strip())
    out = idp("security", "sign-out", "--login", "s20260001", env=env)
    assert out.returncode == 0 and "signed out everywhere" in out.stdout
    assert "end when next used" in out.stderr  # no shared store: out of the CLI's reach
    assert idp("security", "sign-out", "--login", "nobody-at-all", env=env).returncode == 2
    verify = idp("audit", "verify", env=env)
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout


def test_an_account_without_a_password_sets_its_first_only_with_a_code(
        client: TestClient, make_client, make_person, db: Database) -> None:
    """An account made without a password (SCIM; it signs in by SMS code or passkey) does
    not set its first one on a recent sign-in alone: whoever sat down at a session left
    open would choose it. The page leads to a code to the phone instead
    (``tests/idp/test_sms_login.py`` goes that way to the end)."""
    registered = make_client()
    pupil = make_person("s84", "pw-pupil-84")
    flow.code_flow(client, registered.client_id, pupil)
    with db.session() as session:  # as SCIM makes it (the sign-in above stands in for SMS)
        session.get(Account, pupil.account_id).password_hash = None
    page = client.get("/account/security/password")
    assert "data-no-password" in page.text and 'id="current"' not in page.text
    assert 'href="/login/sms?forgot=1" data-first-by-code' in page.text
    refused = client.post("/account/security/password", data={
        "csrf_token": flow.csrf_of(page.text), "password": "my first password",
        "again": "my first password"}, follow_redirects=False)
    assert refused.status_code == 400 and "data-no-password" in refused.text
    assert "role=\"alert\"" not in refused.text  # its sentence said once, not twice
    with db.session() as session:
        assert session.get(Account, pupil.account_id).password_hash is None


def _reset(client: TestClient, db: Database, settings: Settings, name: str) -> str:
    token = _token(db, settings, "T-CITY", {"security:password-reset"})
    answer = client.post(f"/api/admin/people/{_uid(db, name)}/password/reset",
                         headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["temporary_password"]


def test_a_code_issued_before_the_reset_gets_no_tokens(
        client: TestClient, make_client, make_person, db: Database,
        settings: Settings) -> None:
    registered = make_client()
    pupil = make_person("s85", "pw-pupil-85", name="代码同学")
    code = flow.code_flow(client, registered.client_id, pupil).params["code"]
    _reset(TestClient(client.app), db, settings, "代码同学")
    answer = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(registered.client_id, registered.secret))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_a_second_reset_stops_the_step_of_the_first(
        client: TestClient, make_client, make_person, db: Database,
        settings: Settings) -> None:
    registered = make_client()
    make_person("s86", "pw-pupil-86", name="两次重置同学")
    first = _reset(client, db, settings, "两次重置同学")
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s86", first).headers["location"] == "/password/new"
    page = client.get("/password/new")
    _reset(TestClient(client.app), db, settings, "两次重置同学")  # whoever had the first
    stopped = client.post("/password/new", data={"csrf_token": flow.csrf_of(page.text),
                                                  "password": "a password of mine",
                                                  "again": "a password of mine"})
    assert stopped.status_code == 400 and "登录已中止" in stopped.text
    assert not _signed_in(client)


def test_the_step_stops_when_the_account_is_disabled_meanwhile(
        client: TestClient, make_client, make_person, db: Database,
        settings: Settings) -> None:
    registered = make_client()
    pupil = make_person("s87", "pw-pupil-87", name="停用同学")
    temporary = _reset(client, db, settings, "停用同学")
    start = flow.authorize(client, client_id=registered.client_id)
    flow.login(client, start, "s87", temporary)
    page = client.get("/password/new")
    with db.session() as session:
        session.get(Account, pupil.account_id).disabled = True
    stopped = client.post("/password/new", data={"csrf_token": flow.csrf_of(page.text),
                                                  "password": "a password of mine",
                                                  "again": "a password of mine"})
    assert stopped.status_code == 400 and not _signed_in(client)
    with db.session() as session:
        assert session.get(Account, pupil.account_id).must_change_password


def test_a_teacher_shows_the_second_factor_before_choosing_the_new_password(
        client: TestClient, make_client, make_person, db: Database,
        settings: Settings) -> None:
    """The temporary password alone must not replace the owner's: for an account that needs
    a second factor, the new password is chosen after it."""
    registered = make_client()
    teacher = make_person("t88", "pw-teacher-88", name="重置老师", role=Role.teacher)
    secret = enrol_at_sign_in(client, registered, "t88", "pw-teacher-88")

    temporary = _reset(client, db, settings, "重置老师")
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t88", temporary).headers["location"] == "/mfa"
    assert client.get("/password/new").status_code == 400  # not before the second factor
    with db.session() as session:
        assert session.get(Account, teacher.account_id).must_change_password
    page = client.get("/mfa")
    later = _submit(client, page.text, pyotp.TOTP(secret).at(time.time() + 30))
    assert later.headers["location"] == "/password/new"
    done = flow.follow(client, _new_password(client, "the teacher's own one"))
    code = flow.Redirect(done.headers["location"]).params["code"]
    claims = _id_token_claims(client, registered, code)
    assert claims["sub"] == teacher.sub and "otp" in claims["amr"]


def test_a_second_factor_step_begun_before_a_reset_stops(
        client: TestClient, make_client, make_person, db: Database,
        settings: Settings) -> None:
    """A thief with the old password reaches /mfa; the helpdesk resets the password; the
    thief's code from the (stolen) phone no longer finishes the sign-in."""
    registered = make_client()
    make_person("t89", "pw-teacher-89", name="被盗老师", role=Role.teacher)
    secret = enrol_at_sign_in(client, registered, "t89", "pw-teacher-89")
    start = flow.authorize(client, client_id=registered.client_id)
    flow.login(client, start, "t89", "pw-teacher-89")
    page = client.get("/mfa")
    _reset(TestClient(client.app), db, settings, "被盗老师")
    stopped = _submit(client, page.text, pyotp.TOTP(secret).at(time.time() + 30))
    assert stopped.status_code == 400 and "登录已中止" in stopped.text
    assert not _signed_in(client)


def test_a_school_reaches_only_the_people_it_manages(client: TestClient, make_person,
                                                     db: Database, settings: Settings) -> None:
    """A school's token resets its own people, not a teacher who moved to another school
    nor one who also belongs elsewhere (a district administrator who teaches there)."""
    from datetime import date

    from directory.models import OrgKind, OrgUnit, Person
    from directory.orgs import ensure_org_unit
    from directory.people import affiliate

    make_person("t90", "pw-teacher-90", name="调动老师", role=Role.teacher)
    uid = _uid(db, "调动老师")
    url = f"/api/admin/people/{uid}/password/reset"
    school = {"authorization": "Bearer " + _token(db, settings, "T-SCHOOL",
                                                  {"security:password-reset"})}
    city = {"authorization": "Bearer " + _token(db, settings, "T-CITY",
                                                {"security:password-reset"})}
    assert client.post(url, headers=school).status_code == 200  # the school's own teacher
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.uid == uid))
        root = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-CITY"))
        other = ensure_org_unit(session, code="T-OTHER-SCHOOL", name="另一所学校",
                                kind=OrgKind.school, parent=root)
        affiliate(session, person, other, Role.teacher, date(2026, 9, 1))
    assert client.post(url, headers=school).status_code == 404  # also belongs elsewhere
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.uid == uid))
        for affiliation in person.affiliations:
            if affiliation.org_unit.code != "T-OTHER-SCHOOL":
                affiliation.valid_to = date(2026, 11, 1)  # moved: only the other school now
    assert client.post(url, headers=school).status_code == 404
    assert client.post(url, headers=city).status_code == 200


def test_a_temporary_password_serves_a_week(client: TestClient, make_client, make_person,
                                            db: Database, settings: Settings) -> None:
    from datetime import timedelta

    registered = make_client()
    pupil = make_person("s91", "pw-pupil-91", name="一周同学")
    temporary = _reset(client, db, settings, "一周同学")
    with db.session() as session:
        account = session.get(Account, pupil.account_id)
        account.password_changed_at -= timedelta(days=passwords.TEMPORARY_DAYS, seconds=1)
    start = flow.authorize(client, client_id=registered.client_id)
    expired = flow.login(client, start, "s91", temporary)
    assert expired.status_code == 400 and "临时密码已过期" in expired.text
    with db.session() as session:
        session.get(Account, pupil.account_id).password_changed_at -= timedelta(days=-1)
    assert flow.login(client, start, "s91", temporary).headers["location"] == "/password/new"


def test_guesses_of_the_current_password_take_turns(live_server, make_person,  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An open session must not be a way to guess the password faster than /login allows:
    wrong current passwords sent all at once are checked one at a time, so after the free
    attempts the delay refuses the rest."""
    import html
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.idp.live import _HIDDEN

    monkeypatch.setattr(guards, "MAX_DELAY", 300)
    make_person("s92", "pw-pupil-92")
    with httpx.Client(base_url=live_server.url, timeout=30) as browser:
        page = browser.get("/login").text
        form = {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}
        signed = browser.post("/login", data={**form, "login": "s92", "password": "pw-pupil-92"})
        assert signed.status_code == 303
        page = browser.get("/account/security/password").text
        data = {**{k: html.unescape(v) for k, v in _HIDDEN.findall(page)},
                "current": "a guess", "password": "new enough one", "again": "new enough one"}
        tabs = [httpx.Client(base_url=live_server.url, timeout=30, cookies=browser.cookies)
                for _ in range(12)]
    start = threading.Barrier(len(tabs))

    def guess(tab: httpx.Client) -> int:
        start.wait()
        return tab.post("/account/security/password", data=data).status_code

    with ThreadPoolExecutor(len(tabs)) as pool:
        statuses = list(pool.map(guess, tabs))
    for tab in tabs:
        tab.close()
    assert statuses.count(400) == guards.ACCOUNT.free_attempts, statuses
    assert statuses.count(429) == len(tabs) - guards.ACCOUNT.free_attempts


def test_the_new_password_page_allows_the_app_its_answer_goes_to(
        client: TestClient, make_client, make_person, db: Database,
        settings: Settings) -> None:
    """The new password's answer is the redirect to the app (with the code): Chromium
    applies the page's form-action to it, so the page must allow the app's origin, as the
    sign-in and second-factor pages do (an error shown again too)."""
    registered = make_client()
    make_person("s89", "pw-pupil-89", name="新密码同学")
    temporary = _reset(client, db, settings, "新密码同学")
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s89", temporary).headers["location"] == "/password/new"
    app_form_action = "form-action 'self' https://app.example.edu.cn;"
    page = client.get("/password/new")
    assert app_form_action in page.headers["content-security-policy"]
    mistyped = client.post("/password/new", data={
        "csrf_token": flow.csrf_of(page.text), "password": "a password of mine",
        "again": "another password"})
    assert mistyped.status_code == 400
    assert app_form_action in mistyped.headers["content-security-policy"]
    done = _new_password(client, "a password of mine")
    assert done.status_code == 303 and done.headers["location"].startswith(REDIRECT_URI + "?")
    plain = client.get("/login")  # no app request: 'self' only
    assert "form-action 'self';" in plain.headers["content-security-policy"]
