"""Hostile input found by a review's fuzzing: each is answered with an error, never a 500."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from mfa.webauthn import origin, rp_id
from tests.idp import flow
from tests.idp.conftest import make_person  # noqa: F401 - fixture
from tests.mfa.test_webauthn import SoftKey, _enrol

PASSKEYS = "/account/security/passkeys"


def _signed_in(client: TestClient, person) -> dict[str, str]:
    """Sign ``person`` in at /login; the header with the CSRF token scripts send."""
    page = client.get("/login")
    answer = client.post("/login", data={"csrf_token": flow.csrf_of(page.text),
                                         "login": person.login, "password": person.password},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return {"X-CSRF-Token": flow.csrf_of(client.get("/").text)}


def test_a_passkey_from_an_origin_that_is_no_text_is_refused(client: TestClient, settings,
                                                             make_person) -> None:  # noqa: F811
    """clientDataJSON's ``origin`` (or ``type``) written as ``"\\ud800"``, a lone surrogate:
    py_webauthn's refusal quotes it, and the audit row of the refusal must still be
    written (no UTF-8 holds a lone surrogate)."""
    person = make_person()
    headers = _signed_in(client, person)
    key = SoftKey(rp_id(settings), origin(settings), person.sub.encode())
    for odd in ({"origin": "\ud800"}, {"origin": "http://x\udfff.example"}):
        options = client.post(f"{PASSKEYS}/options", headers=headers,
                              json={"password": person.password}).json()
        answer = client.post(f"{PASSKEYS}/register", headers=headers,
                             json={"name": "key", "credential": key.create(options, **odd)})
        assert answer.status_code == 400, answer.text
        assert "error" in answer.json()


def test_a_passkey_sign_in_from_an_origin_that_is_no_text_is_refused(
        client: TestClient, db, settings, store, make_person) -> None:  # noqa: F811
    """The same at the usernameless sign-in (no session needed): anyone who registered a
    passkey of their own could make /login/passkey/verify answer a 500."""
    key, _row = _enrol(db, settings, store, make_person())
    headers = {"X-CSRF-Token": flow.csrf_of(client.get("/login").text)}
    options = client.post("/login/passkey/options", headers=headers, json={}).json()
    answer = client.post("/login/passkey/verify", headers=headers,
                         json={"credential": key.get(options, origin="\ud800")})
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    with db.sessions() as session:  # the refusal is audited, its reason written as text
        reasons = list(session.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "mfa.webauthn.authenticate", AuditEvent.outcome == "failure")))
    assert len(reasons) == 1 and "\\ud800" in reasons[0]
