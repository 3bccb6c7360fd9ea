"""A stolen phone keeps its SIM: the helpdesk's reset with ``phone`` suspends the SMS codes
to the number on file (``Account.sms_suspended_at``) until the number changes or the
suspension is lifted (API and CLI); see docs/mfa.md "A lost or replaced phone"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from directory.models import Account, OrgKind, OrgUnit, Role
from directory.orgs import ensure_org_unit
from mfa import sms
from tests.idp import flow
from tests.idp.test_cli import demo_var, idp
from tests.idp.test_lockout import _token, _uid, token_actor
from tests.idp.test_sms_login import MASKED, _ask_code, _enter_code
from tests.mfa.test_sms import PHONE_NUMBER, Outbox, add_phone

RESET = "/api/admin/people/{uid}/second-factors/reset"
RESTORE = "/api/admin/people/{uid}/phone/restore"
UNKNOWN_NUMBER = "13912345678"


@pytest.fixture
def outbox(app, tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path)
    app.state.sms_gateway = box.gateway
    return box


def _next_message_allowed(client: TestClient, settings: Settings, phone: str) -> None:
    """Forget the number's one-a-minute gap (the test does not wait a minute)."""
    client.app.state.store.delete(f"sms:gap:{sms._phone_id(settings, phone)}")


def _shape(response) -> str:
    """The page without what differs by the number typed (as test_sms_login compares)."""
    text = re.sub(r'value="1\d{10}"', 'value=""', MASKED.sub("", response.text))
    return re.sub(r'name="csrf_token" value="[^"]+"', "", text)


def _admin(db: Database, settings: Settings, permissions=frozenset({"security:mfa-reset"}),
           code: str = "T-CITY") -> dict[str, str]:
    return {"authorization": f"Bearer {_token(db, settings, code, set(permissions))}"}


def _suspended(db: Database, account_id: int) -> bool:
    with db.session() as session:
        return session.get(Account, account_id).sms_suspended_at is not None


def _events(db: Database, action: str) -> list[dict]:
    with db.session() as session:
        return [json.loads(e.detail or "{}") for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))]


@pytest.fixture
def teacher(make_person, db: Database, settings: Settings):
    made = make_person("t80", "pw-teacher-80", name="被偷手机老师", role=Role.teacher)
    add_phone(db, settings, made.account_id)
    return made


def test_a_suspended_number_signs_in_like_a_number_without_an_account(
        client: TestClient, outbox, teacher, db: Database, settings: Settings) -> None:
    headers = _admin(db, settings)
    url = RESET.format(uid=_uid(db, "被偷手机老师"))
    before = _ask_code(client)  # the thief asks for a code just before the reset
    stolen_code = outbox.last_code()
    done = client.post(url, headers=headers, json={"phone": True})
    assert done.status_code == 200 and done.json()["reset"] is True
    assert _suspended(db, teacher.account_id)
    assert _events(db, "mfa.reset")[-1] == {"authenticator_apps": 0, "recovery_codes": 0,
                                            "passkeys": 0, "phone_suspended": True}
    # the code sent before no longer signs in
    refused = _enter_code(client, before, stolen_code)
    assert refused.status_code == 400 and "idp_session" not in client.cookies

    _next_message_allowed(client, settings, PHONE_NUMBER)
    suspended = _ask_code(client)
    unknown = _ask_code(client, UNKNOWN_NUMBER)
    assert suspended.status_code == unknown.status_code == 200
    assert _shape(suspended) == _shape(unknown)
    assert len(outbox.messages()) == 1  # nothing sent since, the gateway never called
    answers = [_enter_code(client, suspended, "000000").status_code
               for _ in range(sms.MAX_ATTEMPTS + 1)]
    assert answers == [400] * sms.MAX_ATTEMPTS + [429]  # as an unknown number's decoy
    with db.session() as session:
        sends = [(e.actor, json.loads(e.detail)["reason"]) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sms.send",
                                     AuditEvent.outcome == "failure"))]
        assert sends[-2:] == [(f"account:{teacher.account_id}", "sms_suspended"),
                              ("unknown", "unknown_number")]
        details = " ".join(e.detail or "" for e in session.scalars(select(AuditEvent)))
        assert PHONE_NUMBER not in details

    # lifted: codes go to the number again
    restored = client.post(RESTORE.format(uid=_uid(db, "被偷手机老师")), headers=headers)
    assert restored.status_code == 200 and restored.json() == {"restored": True}
    _next_message_allowed(client, settings, PHONE_NUMBER)
    page = _ask_code(client)
    assert [m["phone"] for m in outbox.messages()] == [PHONE_NUMBER] * 2
    assert _enter_code(client, page, outbox.last_code()).status_code == 303


def test_the_second_factor_offers_no_sms_and_an_earlier_code_fails(
        client: TestClient, outbox, make_client, teacher, db: Database,
        settings: Settings) -> None:
    registered = make_client()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t80", "pw-teacher-80").headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "/mfa/sms/send" in page.text
    assert client.post("/mfa/sms/send", data={
        "csrf_token": flow.csrf_of(page.text)}).status_code == 200
    earlier = outbox.last_code()

    done = client.post(RESET.format(uid=_uid(db, "被偷手机老师")),
                       headers=_admin(db, settings), json={"phone": True, "passkeys": False})
    assert done.status_code == 200
    with db.session() as session:  # the code sent before the reset is refused at the source
        result = sms.verify_code(session, settings, client.app.state.store, PHONE_NUMBER,
                                 sms.Purpose.mfa, earlier, account_id=teacher.account_id)
        assert result.status is sms.VerifyStatus.wrong
        assert sms.phone_of(session, settings, teacher.account_id) is None

    client.cookies.clear()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t80", "pw-teacher-80").headers["location"] == "/mfa"
    page = client.get("/mfa")
    # as with no phone on file: a new authenticator app is set up right after the password
    assert "/mfa/sms/send" not in page.text and "138****8000" not in page.text
    assert "<svg" in page.text
    token = flow.csrf_of(page.text)
    assert client.post("/mfa/sms/send", data={"csrf_token": token}).status_code == 404
    assert client.post("/mfa/sms", data={"csrf_token": token,
                                         "sms_code": earlier}).status_code == 400
    assert "idp_session" not in client.cookies
    assert len(outbox.messages()) == 1  # only the code before the reset


def test_without_phone_the_reset_leaves_the_number_alone(
        client: TestClient, outbox, teacher, db: Database, settings: Settings) -> None:
    url = RESET.format(uid=_uid(db, "被偷手机老师"))
    assert client.post(url, headers=_admin(db, settings)).status_code == 200
    assert client.post(url, headers=_admin(db, settings),
                       json={"passkeys": True}).status_code == 200
    assert not _suspended(db, teacher.account_id)
    assert all("phone_suspended" not in e for e in _events(db, "mfa.reset"))
    _ask_code(client)
    assert [m["phone"] for m in outbox.messages()] == [PHONE_NUMBER]


@pytest.mark.parametrize("body", [{"phone": "yes"}, {"phone": 1}, {"phone": None},
                                  {"phone": True, "number": PHONE_NUMBER}, [True]])
def test_a_bad_body_is_a_problem_and_changes_nothing(
        client: TestClient, teacher, db: Database, settings: Settings, body) -> None:
    answer = client.post(RESET.format(uid=_uid(db, "被偷手机老师")),
                         headers=_admin(db, settings), json=body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert not _suspended(db, teacher.account_id) and _events(db, "mfa.reset") == []


def test_the_restore_endpoint(client: TestClient, teacher, db: Database,
                              settings: Settings) -> None:
    uid = _uid(db, "被偷手机老师")
    url = RESTORE.format(uid=uid)
    headers = _admin(db, settings)
    assert client.post(RESET.format(uid=uid), headers=headers,
                       json={"phone": True}).status_code == 200

    assert client.post(url).status_code == 401
    unlock_only = _admin(db, settings, {"security:unlock"})
    assert client.post(url, headers=unlock_only).status_code == 403
    with db.session() as session:
        city = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-CITY"))
        ensure_org_unit(session, code="T-ELSE", name="别的学校", kind=OrgKind.school,
                        parent=city)
    elsewhere = _admin(db, settings, code="T-ELSE")
    assert client.post(url, headers=elsewhere).status_code == 404
    assert client.post(RESTORE.format(uid="no-such-person"), headers=headers).status_code == 404
    assert _suspended(db, teacher.account_id)

    first = client.post(url, headers=headers)
    assert first.status_code == 200 and first.json() == {"restored": True}
    assert not _suspended(db, teacher.account_id)
    again = client.post(url, headers=headers)
    assert again.status_code == 200 and again.json() == {"restored": False}
    with db.session() as session:
        rows = [(e.actor, e.target, json.loads(e.detail)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "mfa.phone_restore")
            .order_by(AuditEvent.seq))]
    target = f"account:{teacher.account_id}"
    actor = token_actor(db, settings, headers["authorization"].removeprefix("Bearer "))
    assert rows == [(actor, target, {"restored": True}), (actor, target, {"restored": False})]


def test_cli_reset_with_phone_and_restore(tmp_path: Path) -> None:
    env = demo_var(tmp_path)
    entry = json.loads((tmp_path / "demo.json").read_text())["phone_login"]
    login = entry["login"]
    reset = idp("security", "reset-mfa", "--login", login, "--phone", env=env)
    assert reset.returncode == 0, reset.stderr
    assert "SMS codes to its number suspended" in reset.stdout
    assert entry["phone"] not in reset.stdout + reset.stderr
    first = idp("security", "restore-phone", "--login", login, env=env)
    assert first.returncode == 0 and first.stdout.strip() == "SMS codes to its number restored"
    again = idp("security", "restore-phone", "--login", login, env=env)
    assert again.returncode == 0 and again.stdout.strip() == "SMS codes were not suspended"
    plain = idp("security", "reset-mfa", "--login", login, env=env)
    assert "suspended" not in plain.stdout
    assert idp("security", "restore-phone", "--login", login, env=env).stdout.strip() == \
        "SMS codes were not suspended"
    unknown = idp("security", "restore-phone", "--login", "nobody-at-all", env=env)
    assert unknown.returncode == 2 and "no account" in unknown.stderr
    verify = idp("audit", "verify", env=env)
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout
