"""Sign-in with a phone number and an SMS code, and SMS as the second factor on /mfa."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.gm import jose as gm_jose
from directory.models import Account, Role
from idp.login import passwords
from mfa import sms
from mfa.sms_gateways import HttpGateway
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.mfa.test_sms import PHONE_NUMBER, Outbox, add_phone

MASKED = re.compile(r"1\d\d\*\*\*\*\d{4}")


@pytest.fixture
def outbox(app, tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path)
    app.state.sms_gateway = box.gateway
    return box


def _claims(client: TestClient, registered, code: str) -> dict:
    body = client.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": REDIRECT_URI},
                       auth=(registered.client_id, registered.secret)).json()
    jwks = client.get("/oauth2/jwks/all").json()
    return json.loads(gm_jose.verify_jws(body["id_token"], gm_jose.import_key_set(jwks)))


def _ask_code(client: TestClient, phone: str = PHONE_NUMBER, ia: str = ""):
    page = client.get("/login/sms", params={"ia": ia} if ia else None)
    assert page.status_code == 200
    return client.post("/login/sms", data={"csrf_token": flow.csrf_of(page.text), "ia": ia,
                                           "phone": phone}, follow_redirects=False)


def _enter_code(client: TestClient, page, code: str, phone: str = PHONE_NUMBER, ia: str = ""):
    return client.post("/login/sms/verify", data={"csrf_token": flow.csrf_of(page.text),
                                                  "ia": ia, "phone": phone, "code": code},
                       follow_redirects=False)


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_login_page_links_to_sms_sign_in(client: TestClient) -> None:
    page = client.get("/login")
    assert 'href="/login/sms"' in page.text and "用短信验证码登录" in page.text
    english = client.get("/login/sms", params={"ui_locales": "en"})
    assert "Sign in with an SMS code" in english.text


def test_sign_in_by_phone_to_the_start_page(client, outbox, make_person, db, settings) -> None:
    person = make_person()
    add_phone(db, settings, person.account_id)
    page = _ask_code(client, "+86 138 0013 8000")
    assert page.status_code == 200 and "138****8000" in page.text
    assert PHONE_NUMBER not in MASKED.sub("", page.text.replace(
        f'value="{PHONE_NUMBER}"', ""))  # the number only in the hidden field
    done = _enter_code(client, page, outbox.last_code())
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert "idp_session" in client.cookies


def test_authorization_code_flow_with_sms(client, outbox, make_client, make_person, db,
                                          settings) -> None:
    registered = make_client()
    person = make_person()
    add_phone(db, settings, person.account_id)
    start = flow.authorize(client, client_id=registered.client_id)
    ia = flow.ia_of(start)  # the authorization endpoint shows the sign-in page itself
    assert f'href="/login/sms?ia={ia}"' in start.text
    page = _ask_code(client, ia=ia)
    assert f'name="ia" value="{ia}"' in page.text and "测试应用" in page.text
    # the code's answer is the redirect to the app: the page's CSP lets its form go there
    assert "form-action 'self' https://app.example.edu.cn;" in page.headers[
        "content-security-policy"]
    done = flow.follow(client, _enter_code(client, page, outbox.last_code(), ia=ia))
    redirect = flow.Redirect(done.headers["location"])
    assert redirect.location.startswith(REDIRECT_URI) and redirect.params["state"] == "st-1"
    claims = _claims(client, registered, redirect.params["code"])
    assert claims["sub"] == person.sub and claims["amr"] == ["sms"]
    assert claims["acr"] == "urn:edu:acr:sfa"


def test_wrong_reused_and_too_many_codes(client, outbox, make_person, db, settings) -> None:
    person = make_person()
    add_phone(db, settings, person.account_id)
    page = _ask_code(client)
    code = outbox.last_code()
    wrong = _enter_code(client, page, _wrong(code))
    assert wrong.status_code == 400 and "验证码不正确或已过期" in wrong.text
    assert "idp_session" not in client.cookies
    for garbage in ("", "abc", "1" * 20, "12345"):  # malformed: costs no attempt
        assert _enter_code(client, page, garbage).status_code == 400
    fullwidth = _wrong(code).translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    assert _enter_code(client, page, fullwidth).status_code == 400  # counts: 2 of 5
    assert _enter_code(client, page, code).status_code == 303
    client.cookies.delete("idp_session")
    assert _enter_code(client, page, code).status_code == 400  # used once only
    # a fresh code, five wrong tries, then even the right code is refused
    client.app.state.store.delete(f"sms:gap:{sms._phone_id(settings, PHONE_NUMBER)}")
    page = _ask_code(client)
    code = outbox.last_code()
    for _ in range(sms.MAX_ATTEMPTS):
        assert _enter_code(client, page, _wrong(code)).status_code == 400
    refused = _enter_code(client, page, code)
    assert refused.status_code == 429 and "错误次数过多" in refused.text
    assert "idp_session" not in client.cookies


def test_expired_code(client, outbox, make_person, db, settings, monkeypatch) -> None:
    import time

    person = make_person()
    add_phone(db, settings, person.account_id)
    page = _ask_code(client)
    now = time.time()
    monkeypatch.setattr(sms.time, "time", lambda: now + sms.CODE_SECONDS + 5)
    assert _enter_code(client, page, outbox.last_code()).status_code == 400


def test_sending_limits(client, outbox, make_person, db, settings) -> None:
    person = make_person()
    add_phone(db, settings, person.account_id)
    assert _ask_code(client).status_code == 200
    again = _ask_code(client)
    assert again.status_code == 429 and "请等待" in again.text
    gap = f"sms:gap:{sms._phone_id(settings, PHONE_NUMBER)}"
    store = client.app.state.store
    for _ in range(sms.PHONE_DAILY - 1):
        store.delete(gap)
        assert _ask_code(client).status_code == 200
    store.delete(gap)
    assert _ask_code(client).status_code == 429
    assert len(outbox.messages()) == sms.PHONE_DAILY
    # per client IP (the test client is one address); refused asks count too: 12 so far
    statuses = [_ask_code(client, f"137{n:08d}").status_code for n in range(sms.IP_HOURLY)]
    assert statuses == [200] * (sms.IP_HOURLY - sms.PHONE_DAILY - 2) + [429] * 12


def test_unknown_number_gives_the_identical_answer(client, outbox, make_person, db,
                                                   settings) -> None:
    person = make_person()
    add_phone(db, settings, person.account_id)
    known = _ask_code(client)
    unknown = _ask_code(client, "13912345678")
    assert known.status_code == unknown.status_code == 200

    def shape(response) -> str:
        text = re.sub(r'value="1\d{10}"', 'value=""', MASKED.sub("", response.text))
        return re.sub(r'name="csrf_token" value="[^"]+"', "", text)

    assert shape(known) == shape(unknown)
    assert [m["phone"] for m in outbox.messages()] == [PHONE_NUMBER]
    assert _enter_code(client, unknown, "123456", "13912345678").status_code == 400


@pytest.mark.parametrize(("status", "words"), [
    ("suspended", "暂停"), ("graduated", "毕业"), ("transferred", "转学"), ("left", "注销"),
])
def test_refused_accounts_are_told_only_after_a_correct_code(
        client, outbox, make_person, db, settings, status: str, words: str) -> None:
    from core.web import i18n
    from idp.login import STATUS_MESSAGES

    person = make_person(status=status)
    add_phone(db, settings, person.account_id)
    page = _ask_code(client)
    code = outbox.last_code()
    expected = i18n.gettext("zh-CN", STATUS_MESSAGES[status])
    wrong = _enter_code(client, page, _wrong(code))
    assert wrong.status_code == 400 and expected not in wrong.text
    refused = _enter_code(client, page, code)
    assert refused.status_code == 403 and expected in refused.text and words in refused.text
    assert "idp_session" not in client.cookies


def test_bad_input_is_a_page_not_a_500(client, outbox) -> None:
    page = client.get("/login/sms")
    token = flow.csrf_of(page.text)
    for phone in ("", "abc", "1" * 40, "12345678901", "<script>"):
        answer = client.post("/login/sms", data={"csrf_token": token, "phone": phone})
        assert answer.status_code == 400 and "11 位" in answer.text
        assert "<script>" not in answer.text
    assert client.post("/login/sms", data={"csrf_token": token,
                                           "phone": "1" * 41}).status_code in (400, 422)
    assert client.post("/login/sms/verify", data={"csrf_token": token, "phone": "x",
                                                  "code": "1"}).status_code == 400
    assert client.post("/login/sms", data={"phone": PHONE_NUMBER}).status_code == 403  # CSRF
    assert client.post("/mfa/sms", data={"csrf_token": token, "sms_code": "1"}).status_code == 400
    assert outbox.messages() == []


def test_gateway_failure_is_audited_and_does_not_hold_the_number(
        client, app, make_person, db, settings) -> None:
    """The gateway is called after the answer (its timing must not tell registered numbers
    apart): a failure is audited, and the number may ask again at once."""
    person = make_person()
    add_phone(db, settings, person.account_id)
    app.state.sms_gateway = HttpGateway(
        "https://relay.example.edu.cn/sms",
        transport=httpx.MockTransport(lambda request: httpx.Response(502)))
    assert _ask_code(client).status_code == 200
    with db.sessions() as session:
        reasons = [json.loads(e.detail or "{}").get("reason") for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sms.send"))]
    assert "gateway_failed" in reasons
    sent: list[httpx.Request] = []
    app.state.sms_gateway = HttpGateway(
        "https://relay.example.edu.cn/sms",
        transport=httpx.MockTransport(lambda request: sent.append(request)
                                      or httpx.Response(200)))
    assert _ask_code(client).status_code == 200  # a failed send does not hold the number
    assert len(sent) == 1


def test_an_unregistered_number_answers_wrong_guesses_like_a_registered_one(
        client, make_person, db, settings) -> None:
    """Both reach the attempt limit at the same guess: no enumeration by the 429."""
    person = make_person()
    add_phone(db, settings, person.account_id)
    token = flow.csrf_of(client.get("/login/sms").text)
    for number in (PHONE_NUMBER, "13900139000"):
        assert client.post("/login/sms", data={"csrf_token": token,
                                               "phone": number}).status_code == 200
        answers = [client.post("/login/sms/verify", data={
            "csrf_token": token, "phone": number, "code": "000000"}).status_code
            for _ in range(sms.MAX_ATTEMPTS + 1)]
        assert answers == [400] * sms.MAX_ATTEMPTS + [429], number


def test_sms_off_hides_the_link_and_the_pages(client, app) -> None:
    app.state.settings = app.state.settings.model_copy(update={"sms_gateway": "none"})
    assert "/login/sms" not in client.get("/login").text
    assert client.get("/login/sms").status_code == 404


def test_sms_as_second_factor(client, outbox, make_client, make_person, db, settings) -> None:
    registered = make_client()
    teacher = make_person("t1", "pw-teacher-1", role=Role.teacher)
    add_phone(db, settings, teacher.account_id)
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t1", "pw-teacher-1").headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "发送验证码到 138****8000" in page.text and PHONE_NUMBER not in page.text
    # no authenticator app yet, but a phone: the code proves it; a password alone does not
    # get to add an app (that is for the account pages, with both factors)
    assert "otpauth" not in page.text and "确认是您本人" in page.text
    assert 'action="/mfa"' not in page.text
    sent = client.post("/mfa/sms/send", data={"csrf_token": flow.csrf_of(page.text)})
    assert sent.status_code == 200 and "已发送到 138****8000" in sent.text
    code = outbox.last_code()
    wrong = client.post("/mfa/sms", data={"csrf_token": flow.csrf_of(page.text),
                                          "sms_code": _wrong(code)})
    assert wrong.status_code == 400 and "idp_session" not in client.cookies
    done = flow.follow(client, client.post("/mfa/sms", data={
        "csrf_token": flow.csrf_of(page.text), "sms_code": code}, follow_redirects=False))
    claims = _claims(client, registered, flow.Redirect(done.headers["location"]).params["code"])
    assert claims["amr"] == ["pwd", "sms", "mfa"] and claims["acr"] == "urn:edu:acr:mfa"
    assert claims["sub"] == teacher.sub


def test_sms_sign_in_then_second_factor_is_not_sms_again(client, outbox, make_client,
                                                         make_person, db, settings) -> None:
    registered = make_client()
    teacher = make_person("t1", "pw-teacher-1", role=Role.teacher)
    add_phone(db, settings, teacher.account_id)
    start = flow.authorize(client, client_id=registered.client_id)
    ia = flow.ia_of(start)
    page = _ask_code(client, ia=ia)
    after = _enter_code(client, page, outbox.last_code(), ia=ia)
    assert after.headers["location"] == "/mfa"  # a teacher needs a second factor
    mfa_page = client.get("/mfa")
    # two codes may come from the one phone: no second factor completes an SMS sign-in, so
    # none is offered (an authenticator app set up here would be the thief's), and the
    # page says to sign in with the password
    assert "/mfa/sms/send" not in mfa_page.text and "<svg" not in mfa_page.text
    assert 'action="/mfa"' not in mfa_page.text and "请改用密码登录" in mfa_page.text
    assert client.post("/mfa/sms/send", data={
        "csrf_token": flow.csrf_of(mfa_page.text)}).status_code == 404
    assert len(outbox.messages()) == 1


def test_login_code_does_not_pass_the_mfa_step(client, outbox, make_client, make_person, db,
                                               settings) -> None:
    registered = make_client()
    teacher = make_person("t1", "pw-teacher-1", role=Role.teacher)
    add_phone(db, settings, teacher.account_id)
    _ask_code(client)
    login_code = outbox.last_code()
    start = flow.authorize(client, client_id=registered.client_id)
    flow.login(client, start, "t1", "pw-teacher-1")
    page = client.get("/mfa")
    answer = client.post("/mfa/sms", data={"csrf_token": flow.csrf_of(page.text),
                                           "sms_code": login_code})
    assert answer.status_code == 400 and "idp_session" not in client.cookies


def test_demo_student_signs_in_by_phone(client, outbox, db, settings) -> None:
    from idp import demo

    with db.session() as session:
        content = demo.seed(session, settings)
    with db.session() as session:
        assert demo.seed(session, settings)["phone_login"] == content["phone_login"]
    entry = content["phone_login"]
    assert sms.normalise(entry["phone"]) == entry["phone"] and "/login/sms" in entry["how"]
    student = next(u for u in content["users"] if u["login"] == entry["login"])
    assert student["phone"] == entry["phone"]
    page = _ask_code(client, entry["phone"])
    done = _enter_code(client, page, outbox.last_code(entry["phone"]), entry["phone"])
    assert done.status_code == 303 and "idp_session" in client.cookies


def test_an_expired_request_leaves_the_code_unspent(client, outbox, make_person, db,
                                                    settings) -> None:
    """The request is looked up before the code is checked: the page says it expired,
    and the same code still signs in (it used to be spent first)."""
    person = make_person()
    add_phone(db, settings, person.account_id)
    page = _ask_code(client)
    expired = _enter_code(client, page, outbox.last_code(), ia="gone")
    assert expired.status_code == 400 and "登录已过期" in expired.text
    done = _enter_code(client, page, outbox.last_code())
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_a_forgotten_password_is_set_again_after_an_sms_code(
        client, outbox, make_client, make_person, db, settings) -> None:
    """The sign-in page's "forgot your password?" link: an SMS code to the account's
    phone, then a new password chosen before going on (the step an administrator's reset
    uses), then the app's request goes on; the old password no longer signs in and the new
    one does; the audit says how it was proven. Only that step sets a password without the
    current one: the session it starts still asks for it on the password page."""
    registered, person = make_client(), make_person("s86", "pw-forgotten-86")
    add_phone(db, settings, person.account_id)
    start = flow.authorize(client, client_id=registered.client_id)
    ia = flow.ia_of(start)
    link = re.search(r'href="([^"]+)" data-forgot-sms', start.text)[1]
    assert link == f"/login/sms?forgot=1&amp;ia={ia}"
    asked = client.get(link.replace("&amp;", "&"))
    assert 'name="forgot" value="1"' in asked.text and "忘记密码" in asked.text
    page = client.post("/login/sms", data={"csrf_token": flow.csrf_of(asked.text), "ia": ia,
                                           "phone": PHONE_NUMBER, "forgot": "1"})
    assert page.text.count('name="forgot" value="1"') == 2  # the code's form and "resend"
    done = client.post("/login/sms/verify", data={
        "csrf_token": flow.csrf_of(page.text), "ia": ia, "phone": PHONE_NUMBER,
        "code": outbox.last_code(), "forgot": "1"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/password/new"
    assert "idp_session" not in client.cookies  # no session before the new password
    form = client.get("/password/new")
    assert "data-forgotten" in form.text
    chosen = client.post("/password/new", data={
        "csrf_token": flow.csrf_of(form.text), "password": "a remembered one",
        "again": "a remembered one"}, follow_redirects=False)
    redirect = flow.Redirect(flow.follow(client, chosen).headers["location"])
    assert redirect.params["state"] == "st-1" and "code" in redirect.params
    with db.session() as session:
        event = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "account.password.change"))
        assert json.loads(event.detail) == {"must_change": False, "forgotten": "sms"}
    mine = client.get("/account/security/password")  # the session asks for it, as always
    assert 'id="current"' in mine.text

    client.cookies.clear()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s86", "pw-forgotten-86").status_code == 400
    assert flow.login(client, start, "s86", "a remembered one").status_code == 303


def test_an_sms_sign_in_without_forgot_sets_no_password(client, outbox, make_person, db,
                                                        settings) -> None:
    """A plain SMS sign-in starts a session; the new-password step is not there to use,
    and the password page asks the current password."""
    person = make_person()
    add_phone(db, settings, person.account_id)
    done = _enter_code(client, _ask_code(client), outbox.last_code())
    assert done.headers["location"] == "/" and "idp_session" in client.cookies
    assert client.get("/password/new").status_code == 400  # no step of this browser
    assert 'id="current"' in client.get("/account/security/password").text


def test_the_sms_pages_keep_only_a_path_of_this_site_as_next(client, outbox, make_person,
                                                             db, settings) -> None:
    person = make_person()
    add_phone(db, settings, person.account_id)
    for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page = client.get("/login/sms", params={"next": hostile})
        assert 'name="next"' not in page.text, hostile
    page = client.get("/login/sms")
    code_page = client.post("/login/sms", data={"csrf_token": flow.csrf_of(page.text),
                                                "phone": PHONE_NUMBER,
                                                "next": "https://evil.example/"})
    done = client.post("/login/sms/verify", data={
        "csrf_token": flow.csrf_of(code_page.text), "phone": PHONE_NUMBER,
        "code": outbox.last_code(), "next": "https://evil.example/"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"


def _forgotten_code(client, outbox):
    """Ask for a code with the sign-in page's "forgot your password?" link and enter it;
    the answer."""
    asked = client.get("/login/sms", params={"forgot": "1"})
    page = client.post("/login/sms", data={"csrf_token": flow.csrf_of(asked.text),
                                           "phone": PHONE_NUMBER, "forgot": "1"})
    return client.post("/login/sms/verify", data={
        "csrf_token": flow.csrf_of(page.text), "phone": PHONE_NUMBER,
        "code": outbox.last_code(), "forgot": "1"}, follow_redirects=False)


def test_a_teachers_forgotten_password_is_not_set_by_a_code_alone(
        client, outbox, make_person, db, settings) -> None:
    """Those the policy asks two factors of are told at once that a code to their phone
    cannot set a new password (after an SMS code no one-time code makes two factors), and
    whom to ask: no dead end on the second-factor page, no session, no new-password step."""
    teacher = make_person("t86", "pw-teacher-86", role=Role.teacher)
    add_phone(db, settings, teacher.account_id)
    done = _forgotten_code(client, outbox)
    assert done.status_code == 403 and "请联系学校管理员重置密码" in done.text
    assert "idp_pw" not in client.cookies and "idp_mfa" not in client.cookies
    assert "idp_session" not in client.cookies
    assert client.get("/password/new").status_code == 400


def _forgotten_step(client, outbox) -> None:
    """The browser at the new-password step (``_forgotten_code``)."""
    assert _forgotten_code(client, outbox).headers["location"] == "/password/new"


def _choose(client, password: str):
    form = client.get("/password/new")
    return client.post("/password/new", data={"csrf_token": flow.csrf_of(form.text),
                                              "password": password, "again": password},
                       follow_redirects=False)


def test_a_forgotten_step_does_not_outlive_the_next_persons_sign_in(
        client, outbox, make_person, db, settings) -> None:
    """Pupil A gets to the new-password step on a classroom computer and walks away; pupil
    B signs in there with B's own password: A's step is gone, B cannot set A's password
    (from a review)."""
    victim = make_person("s93", "victims-password")
    add_phone(db, settings, victim.account_id)
    make_person("s94", "other-password", name="钱同学")
    _forgotten_step(client, outbox)
    page = client.get("/login")
    assert client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "login": "s94",
                                       "password": "other-password"},
                       follow_redirects=False).status_code == 303
    assert client.get("/password/new").status_code == 400
    with db.session() as session:
        hashed = session.get(Account, victim.account_id).password_hash
    assert passwords(settings.password_scheme).verify(hashed, "victims-password").ok


@pytest.mark.parametrize("change", ["another number", "codes suspended"])
def test_a_forgotten_step_stops_when_the_number_is_no_longer_theirs(
        client, outbox, make_person, db, settings, change: str) -> None:
    """A code counts only while its number is the account's phone: the school gives the
    account another number, or its codes are suspended after a stolen phone, and the step
    begun with the old one stops (from a review)."""
    from sqlalchemy import update

    from core.db import utcnow
    from directory.models import IdentifierKind, LoginIdentifier

    person = make_person("s95", "pw-s95-old")
    add_phone(db, settings, person.account_id)
    _forgotten_step(client, outbox)
    with db.session() as session:
        if change == "another number":
            session.execute(update(LoginIdentifier).where(
                LoginIdentifier.account_id == person.account_id,
                LoginIdentifier.kind == IdentifierKind.phone.value).values(
                    value="13900139000"))
        else:
            session.get(Account, person.account_id).sms_suspended_at = utcnow()
    stopped = _choose(client, "old-phone-holder-1")
    assert stopped.status_code == 400 and "登录已中止" in stopped.text
    with db.session() as session:
        hashed = session.get(Account, person.account_id).password_hash
    assert passwords(settings.password_scheme).verify(hashed, "pw-s95-old").ok


def test_a_passwordless_account_sets_its_first_password_with_a_code(
        client, outbox, make_person, db, settings) -> None:
    """A SCIM-made account (no password) signed in by SMS: its open session can neither set
    a first password nor add a passkey (both would let whoever sat down keep the account);
    the password page's button asks a fresh code, then the password is chosen."""
    person = make_person("s92", "unused")
    add_phone(db, settings, person.account_id)
    page = client.get("/login")  # stands in for its SMS sign-in (one code per minute)
    client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "login": "s92",
                                "password": "unused"})
    with db.session() as session:
        session.get(Account, person.account_id).password_hash = None
    keys = client.get("/account/security/passkeys")
    assert "data-password-first" in keys.text and "data-passkey-register" not in keys.text
    headers = {"X-CSRF-Token": flow.csrf_of(client.get("/account/security/password").text)}
    refused = client.post("/account/security/passkeys/options", headers=headers, json={})
    assert refused.status_code == 400 and "challenge" not in refused.json()
    link = re.search(r'href="([^"]+)" data-first-by-code',
                     client.get("/account/security/password").text)[1]
    assert link == "/login/sms?forgot=1"
    _forgotten_step(client, outbox)
    assert _choose(client, "my first password").status_code == 303
    with db.session() as session:
        hashed = session.get(Account, person.account_id).password_hash
    assert passwords(settings.password_scheme).verify(hashed, "my first password").ok


@pytest.mark.parametrize("value", ["", "abc", "0", "true"])
def test_forgot_other_than_1_is_a_plain_sms_sign_in_page(client, outbox, value: str) -> None:
    """Only ``forgot=1`` asks for the forgotten-password way; anything else is the plain
    page (never a 400 JSON answer to a person's browser)."""
    page = client.get("/login/sms", params={"forgot": value})
    assert page.status_code == 200 and 'name="forgot"' not in page.text
    assert "用短信验证码登录" in page.text
    sent = client.post("/login/sms", data={"csrf_token": flow.csrf_of(page.text),
                                           "phone": PHONE_NUMBER, "forgot": value})
    assert sent.status_code == 200 and 'name="forgot"' not in sent.text
