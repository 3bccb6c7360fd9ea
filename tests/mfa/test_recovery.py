"""Recovery codes: single use, normalisation, limits, storage as MACs, the pages, /mfa."""

from __future__ import annotations

import json
import re

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.gm import jose as gm_jose
from directory.models import Role
from idp import sessions
from mfa import recovery, totp
from mfa.credentials import MfaCredential
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.flow import csrf_of

PAGE = "/account/security/recovery"
CODE = re.compile(r"^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$")


@pytest.fixture
def person(make_person):
    return make_person()


def generate(db, settings, account_id: int) -> list[str]:
    with db.session() as session:
        return recovery.generate(session, settings, account_id)


def use(db, settings, store, account_id: int, code: str) -> bool:
    with db.session() as session:
        return recovery.use(session, settings, store, account_id, code)


def remaining(db, account_id: int) -> int:
    with db.session() as session:
        return recovery.remaining(session, account_id)


def test_ten_distinct_codes_of_50_bits(db, settings, person):
    codes = generate(db, settings, person.account_id)
    assert len(codes) == 10 == len(set(codes))
    assert all(CODE.match(code) for code in codes)
    assert len(recovery.ALPHABET) == 32 and recovery.LENGTH * 5 >= 50
    assert remaining(db, person.account_id) == 10


def test_each_code_works_once(db, settings, store, person):
    codes = generate(db, settings, person.account_id)
    for n, code in enumerate(codes, 1):
        assert use(db, settings, store, person.account_id, code)
        assert remaining(db, person.account_id) == 10 - n
    store.delete(f"recovery:fail:{person.account_id}")
    assert not use(db, settings, store, person.account_id, codes[0])  # reuse refused
    assert not use(db, settings, store, person.account_id, codes[-1])


def test_input_is_normalised(db, settings, store, person):
    codes = generate(db, settings, person.account_id)
    raw = [c.replace("-", "") for c in codes]
    assert use(db, settings, store, person.account_id, codes[0].upper())
    assert use(db, settings, store, person.account_id, f"  {raw[1][:3]} {raw[1][3:]}  ")
    assert use(db, settings, store, person.account_id, "-".join(raw[2]))
    assert remaining(db, person.account_id) == 7
    assert recovery.normalise("ABCDE-FGHJK") == "abcdefghjk"
    assert recovery.normalise("0o1il-22222") == "00111" + "22222"  # look-alikes
    assert recovery.normalise("abcde-fghj") is None  # too short
    assert recovery.normalise("abcde-fghju") is None  # u is not in the alphabet


def test_codes_are_bound_to_their_account(db, settings, store, person, make_person):
    other = make_person("s20268888")
    codes = generate(db, settings, other.account_id)
    generate(db, settings, person.account_id)
    assert not use(db, settings, store, person.account_id, codes[0])
    assert use(db, settings, store, other.account_id, codes[0])


def test_wrong_codes_are_limited(db, settings, store, person):
    codes = generate(db, settings, person.account_id)
    for _ in range(recovery.MAX_FAILURES):
        assert not use(db, settings, store, person.account_id, "aaaaa-aaaaa")
    assert recovery.locked_seconds(store, person.account_id) > 0
    assert not use(db, settings, store, person.account_id, codes[0])  # even a right one
    assert remaining(db, person.account_id) == 10  # and it was not spent
    store.delete(f"recovery:fail:{person.account_id}")
    assert use(db, settings, store, person.account_id, codes[0])


def test_a_right_code_gives_its_attempt_back(db, settings, store, person):
    codes = generate(db, settings, person.account_id)
    for _ in range(recovery.MAX_FAILURES - 1):
        assert not use(db, settings, store, person.account_id, "aaaaa-aaaaa")
    assert use(db, settings, store, person.account_id, codes[0])
    assert recovery.locked_seconds(store, person.account_id) == 0
    assert use(db, settings, store, person.account_id, codes[1])


def test_generating_anew_invalidates_the_old_set(db, settings, store, person):
    old = generate(db, settings, person.account_id)
    new = generate(db, settings, person.account_id)
    assert not set(old) & set(new)
    assert remaining(db, person.account_id) == 10
    assert not use(db, settings, store, person.account_id, old[0])
    assert use(db, settings, store, person.account_id, new[0])


def test_codes_are_never_stored_or_audited_in_clear(db, settings, store, person):
    codes = generate(db, settings, person.account_id)
    use(db, settings, store, person.account_id, codes[0])
    use(db, settings, store, person.account_id, "aaaaa-aaaaa")
    with db.session() as session:
        rows = session.scalars(select(MfaCredential).where(
            MfaCredential.kind == "recovery")).all()
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        stored = json.dumps([[r.credential_id, r.secret_enc, r.data, r.name] for r in rows])
        audited = json.dumps([[e.action, e.target, e.outcome, e.detail] for e in events])
    assert len(rows) == 9 and all(r.confirmed_at is not None for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.credential_id) for r in rows)  # HMAC-SM3
    for code in codes:
        for form in (code, code.replace("-", ""), code.upper()):
            assert form not in stored and form not in audited
    actions = [(e.action, e.outcome) for e in events]
    assert ("mfa.recovery.generate", "success") in actions
    assert ("mfa.recovery.use", "success") in actions
    assert ("mfa.recovery.use", "failure") in actions


# --- the self-service page -----------------------------------------------------------------

def sign_in(client, store, person) -> None:
    token, _ = sessions.start(store, account_id=person.account_id, sub=person.sub, amr=["pwd"],
                              acr="1")
    client.cookies.set(sessions.COOKIE, token)


def test_an_old_session_must_sign_in_again_first(client, store, make_person) -> None:
    """Changing factors needs a sign-in within the last ten minutes; then the person comes
    straight back to the page."""
    person = make_person("s60", "pw-right-60")
    token, old = sessions.start(store, account_id=person.account_id, sub=person.sub,
                                amr=["pwd"], acr="urn:edu:acr:sfa")
    old.auth_time -= sessions.REAUTH_SECONDS + 60
    sessions.save(store, token, old)
    client.cookies.set(sessions.COOKIE, token)
    stale = client.get(PAGE, follow_redirects=False)
    assert stale.headers["location"] == sessions.reauth_url(PAGE)
    page = client.get(stale.headers["location"])
    done = client.post("/login", data={"csrf_token": csrf_of(page.text), "ia": "",
                                       "login": person.login, "password": person.password,
                                       "next": PAGE}, follow_redirects=False)
    assert done.headers["location"] == PAGE
    assert client.get(PAGE, follow_redirects=False).status_code == 200


def test_page_needs_a_signed_in_person(client):
    response = client.get(PAGE, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == sessions.reauth_url(PAGE)
    csrf = csrf_of(client.get("/login").text)
    response = client.post(PAGE + "/generate", data={"csrf_token": csrf},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == sessions.reauth_url(PAGE)


def test_generate_through_the_page(client, db, settings, store, person):
    sign_in(client, store, person)
    client.headers["accept-language"] = "en"
    page = client.get(PAGE)
    assert page.status_code == 200 and "no unused recovery codes" in page.text
    shown = client.post(PAGE + "/generate", data={"csrf_token": csrf_of(page.text)})
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    assert "shown only once" in shown.text
    block = re.search(r'<pre id="recovery-codes">(.*?)</pre>', shown.text, re.S).group(1)
    codes = block.split()
    assert len(codes) == 10 and all(CODE.match(c) for c in codes)
    assert use(db, settings, store, person.account_id, codes[3])
    assert "Unused recovery codes: 9" in client.get(PAGE).text


def test_page_is_chinese_by_default(client, db, settings, store, person):
    generate(db, settings, person.account_id)
    sign_in(client, store, person)
    page = client.get(PAGE, headers={"accept-language": "zh-CN"})
    assert "未使用的恢复码：10 个" in page.text and "生成新的恢复码" in page.text


def test_generate_without_a_valid_csrf_token_is_refused(client, db, store, person):
    sign_in(client, store, person)
    client.get(PAGE)  # sets the csrf cookie
    assert client.post(PAGE + "/generate", data={}).status_code == 403
    assert client.post(PAGE + "/generate", data={"csrf_token": "forged"}).status_code == 403
    assert remaining(db, person.account_id) == 0


# --- the second step of sign-in ------------------------------------------------------------

def _enrolled_teacher(db, settings, store, make_person):
    teacher = make_person("t1", "pw-teacher-1", role=Role.teacher)
    with db.session() as session:
        enrolment = totp.begin_enrolment(session, settings, teacher.account_id,
                                         "Authenticator app", label="t1")
    with db.session() as session:
        assert totp.confirm(session, settings, store, teacher.account_id, enrolment.uid,
                            pyotp.TOTP(enrolment.secret_base32).now())
    return teacher


def _to_mfa(client: TestClient, client_id: str):
    start = flow.authorize(client, client_id=client_id)
    assert flow.login(client, start, "t1", "pw-teacher-1").headers["location"] == "/mfa"
    return client.get("/mfa")


def test_a_teacher_signs_in_with_a_recovery_code(client: TestClient, db, settings, store,
                                                 make_client, make_person):
    registered = make_client()
    teacher = _enrolled_teacher(db, settings, store, make_person)
    page = _to_mfa(client, registered.client_id)
    assert 'action="/mfa/recovery"' not in page.text  # no codes yet: not offered
    codes = generate(db, settings, teacher.account_id)
    client.cookies.clear()
    page = _to_mfa(client, registered.client_id)
    assert 'action="/mfa/recovery"' in page.text and "改用恢复码" in page.text
    wrong = client.post("/mfa/recovery", data={"csrf_token": csrf_of(page.text),
                                               "recovery_code": "aaaaa-aaaaa"})
    assert wrong.status_code == 400 and "恢复码不正确" in wrong.text
    assert "idp_session" not in client.cookies
    done = flow.follow(client, client.post(
        "/mfa/recovery", data={"csrf_token": csrf_of(wrong.text),
                               "recovery_code": codes[0].upper()}, follow_redirects=False))
    code = flow.Redirect(done.headers["location"]).params["code"]
    body = client.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": REDIRECT_URI},
                       auth=(registered.client_id, registered.secret)).json()
    jwks = gm_jose.import_key_set(client.get("/oauth2/jwks/all").json())
    claims = json.loads(gm_jose.verify_jws(body["id_token"], jwks))
    assert claims["acr"] == "urn:edu:acr:mfa" and claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["sub"] == teacher.sub
    assert remaining(db, teacher.account_id) == 9
    # the used code does not work a second time
    client.cookies.clear()
    page = _to_mfa(client, registered.client_id)
    reused = client.post("/mfa/recovery", data={"csrf_token": csrf_of(page.text),
                                                 "recovery_code": codes[0]})
    assert reused.status_code == 400


def test_recovery_form_needs_csrf_and_a_step(client: TestClient, db, settings, store,
                                             make_client, make_person):
    registered = make_client()
    teacher = _enrolled_teacher(db, settings, store, make_person)
    codes = generate(db, settings, teacher.account_id)
    _to_mfa(client, registered.client_id)
    refused = client.post("/mfa/recovery", data={"csrf_token": "forged",
                                                 "recovery_code": codes[0]})
    assert refused.status_code == 403
    assert remaining(db, teacher.account_id) == 10
    fresh = TestClient(client.app)
    csrf = csrf_of(fresh.get("/login").text)
    expired = fresh.post("/mfa/recovery", data={"csrf_token": csrf, "recovery_code": codes[0]})
    assert expired.status_code == 400 and remaining(db, teacher.account_id) == 10

