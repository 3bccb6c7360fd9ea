"""Second factor in the sign-in: required by role, by the app, by the request (step-up)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time

import pyotp
import pytest
from fastapi.testclient import TestClient

from core.gm import jose as gm_jose
from directory.models import Role
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

SECRET_ON_PAGE = re.compile(r"<code>([A-Z2-7 ]+)</code>")


def _code(secret: str, at: float | None = None) -> str:
    """A TOTP code from Debian's oathtool when present (an independent implementation)."""
    if at is None and shutil.which("oathtool"):
        return subprocess.run(["oathtool", "--totp", "-b", secret], capture_output=True,
                              text=True, check=True).stdout.strip()
    return pyotp.TOTP(secret).at(at or time.time())


def _id_token_claims(client: TestClient, registered, code: str) -> dict:
    body = client.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": REDIRECT_URI},
                       auth=(registered.client_id, registered.secret)).json()
    jwks = client.get("/oauth2/jwks/all").json()
    return json.loads(gm_jose.verify_jws(body["id_token"], gm_jose.import_key_set(jwks)))


def _submit(client: TestClient, page_html: str, code: str):
    return client.post("/mfa", data={"csrf_token": flow.csrf_of(page_html), "code": code},
                       follow_redirects=False)


def test_teacher_enrols_at_first_sign_in_then_uses_the_code(client: TestClient, make_client,
                                                            make_person) -> None:
    registered = make_client()
    teacher = make_person("t1", "pw-teacher-1", role=Role.teacher)
    start = flow.authorize(client, client_id=registered.client_id)
    after_password = flow.login(client, start, "t1", "pw-teacher-1")
    assert after_password.headers["location"] == "/mfa"
    assert "idp_session" not in client.cookies  # no session before the second factor
    page = client.get("/mfa")
    assert "<svg" in page.text and "身份验证器" in page.text
    secret = SECRET_ON_PAGE.search(page.text).group(1).replace(" ", "")
    opened = re.search(r'href="(otpauth://[^"]+)" data-otpauth', page.text)[1]  # on the phone
    assert pyotp.parse_uri(html.unescape(opened)).secret == secret
    wrong = _submit(client, page.text, "000000")
    assert wrong.status_code == 400 and "验证码不正确" in wrong.text
    first_code = _code(secret)
    done = flow.follow(client, _submit(client, page.text, first_code))
    code = flow.Redirect(done.headers["location"]).params["code"]
    claims = _id_token_claims(client, registered, code)
    assert claims["acr"] == "urn:edu:acr:mfa" and claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["sub"] == teacher.sub
    # next sign-in: the code of the enrolled app is asked for, no new enrolment
    client.cookies.clear()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t1", "pw-teacher-1").headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "<svg" not in page.text
    reused = _submit(client, page.text, first_code)
    assert reused.status_code == 400  # the same code cannot be used twice
    later = _submit(client, page.text, pyotp.TOTP(secret).at(time.time() + 30))
    assert "code" in flow.Redirect(flow.follow(client, later).headers["location"]).params


def test_step_up_with_acr_values_and_prompt_none(client: TestClient, make_client,
                                                 make_person) -> None:
    registered = make_client()
    student = make_person()
    first = flow.code_flow(client, registered.client_id, student)
    assert _id_token_claims(client, registered, first.params["code"])["acr"] == "urn:edu:acr:sfa"
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none",
                            acr_values="urn:edu:acr:mfa")
    assert flow.Redirect(silent.headers["location"]).params["error"] == "interaction_required"
    step_up = flow.authorize(client, client_id=registered.client_id,
                             acr_values="urn:edu:acr:mfa")
    assert step_up.headers["location"] == "/mfa"
    page = client.get("/mfa")
    secret = SECRET_ON_PAGE.search(page.text).group(1).replace(" ", "")
    done = flow.follow(client, _submit(client, page.text, _code(secret)))
    claims = _id_token_claims(client, registered,
                              flow.Redirect(done.headers["location"]).params["code"])
    assert claims["acr"] == "urn:edu:acr:mfa" and "otp" in claims["amr"]
    assert claims["sub"] == student.sub
    first_claims = _id_token_claims(client, registered, flow.code_flow(
        client, registered.client_id, student).params["code"])
    assert first_claims["sid"] == claims["sid"]  # the same session ...


def _step_up_page(client: TestClient, registered) -> tuple:
    """A signed-in browser's request for two factors: the step-up page and the secret to
    enrol (the person has no authenticator yet)."""
    client.get(flow.authorize(client, client_id=registered.client_id,
                              acr_values="urn:edu:acr:mfa").headers["location"])
    page = client.get("/mfa")
    return page, SECRET_ON_PAGE.search(page.text).group(1).replace(" ", "")


def test_step_up_gives_the_session_a_new_cookie(client: TestClient, make_client, make_person,
                                                store) -> None:
    """... under a new cookie token: one taken before the step-up is worth nothing."""
    from idp import sessions

    registered = make_client()
    student = make_person()
    flow.code_flow(client, registered.client_id, student)
    before = client.cookies.get(sessions.COOKIE)
    page, secret = _step_up_page(client, registered)
    flow.follow(client, _submit(client, page.text, _code(secret)))
    after = client.cookies.get(sessions.COOKIE)
    assert after and after != before
    assert store.get(sessions._key(before)) is None
    assert sessions.SSOSession(**json.loads(store.get(sessions._key(after)))).acr == \
        "urn:edu:acr:mfa"


@pytest.mark.parametrize("acr", [{"essential": True, "values": ["urn:edu:acr:mfa"]},
                                 {"essential": True, "value": "urn:edu:acr:mfa"}])
def test_essential_acr_claim_steps_up_like_acr_values(client: TestClient, make_client,
                                                      make_person, acr: dict) -> None:
    """OIDC Core 5.5.1.1: an essential ``acr`` in the claims parameter must be met."""
    import json

    registered = make_client()
    student = make_person()
    flow.code_flow(client, registered.client_id, student)  # a password session
    claims = json.dumps({"id_token": {"acr": acr}})
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none",
                            claims=claims)
    assert flow.Redirect(silent.headers["location"]).params["error"] == "interaction_required"
    assert flow.authorize(client, client_id=registered.client_id,
                          claims=claims).headers["location"] == "/mfa"
    voluntary = json.dumps({"id_token": {"acr": {"values": ["urn:edu:acr:mfa"]}}})
    asked = flow.authorize(client, client_id=registered.client_id, claims=voluntary)
    assert "code" in flow.Redirect(asked.headers["location"]).params  # not essential
    either = json.dumps({"id_token": {"acr": {"essential": True, "values": [
        "urn:edu:acr:sfa", "urn:edu:acr:mfa"]}}})
    met = flow.authorize(client, client_id=registered.client_id, claims=either)
    assert "code" in flow.Redirect(met.headers["location"]).params  # one of them is met


def test_essential_acr_is_answered_with_a_value_asked_for(client: TestClient, make_client,
                                                         make_person) -> None:
    """OIDC Core 5.5.1.1: the acr returned matches one of the values asked for; when none
    can be, the authentication fails."""
    import json

    registered = make_client()
    student = make_person()
    flow.code_flow(client, registered.client_id, student)  # a password session
    either = json.dumps({"id_token": {"acr": {"essential": True, "values": [
        "urn:edu:acr:sfa", "urn:example:other"]}}})
    code = flow.code_flow(client, registered.client_id, student, claims=either).params["code"]
    assert _id_token_claims(client, registered, code)["acr"] == "urn:edu:acr:sfa"
    unknown = json.dumps({"id_token": {"acr": {"essential": True,
                                               "values": ["urn:example:other"]}}})
    for prompt in ({}, {"prompt": "none"}):
        failed = flow.authorize(client, client_id=registered.client_id, claims=unknown,
                                **prompt)
        redirect = flow.Redirect(failed.headers["location"])
        assert redirect.params["error"] == "unmet_authentication_requirements"
        assert "code" not in redirect.params


def test_app_policy_default_acr_values(client: TestClient, make_client, make_person) -> None:
    registered = make_client(default_acr_values=["urn:edu:acr:mfa"])
    make_person()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "s20269999", "Correct-Horse-9").headers[
        "location"] == "/mfa"


def test_mfa_page_without_a_step_is_a_clear_error(client: TestClient) -> None:
    response = client.get("/mfa")
    assert response.status_code == 400 and "登录已过期" in response.text


@pytest.mark.parametrize("value", ["urn:edu:acr:sfa", "urn:edu:acr:mfa"])
def test_discovery_advertises_the_levels(client: TestClient, value: str) -> None:
    assert value in client.get("/.well-known/openid-configuration").json()[
        "acr_values_supported"]


def test_the_second_factor_page_says_when_codes_are_locked(client: TestClient, make_client,
                                                           make_person, store) -> None:
    """After five wrong codes even the right one is refused for a while: the page says so
    (429, how long, what else to do) instead of "the code is not correct"."""
    from mfa import totp

    registered = make_client(default_acr_values=["urn:edu:acr:mfa"])
    student = make_person()
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, student.login, student.password).headers[
        "location"] == "/mfa"
    page = client.get("/mfa")
    secret = SECRET_ON_PAGE.search(page.text).group(1).replace(" ", "")
    right = _code(secret)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(totp.MAX_FAILURES - 1):
        assert _submit(client, page.text, wrong).status_code == 400
    assert _submit(client, page.text, wrong).status_code == 429  # the fifth locks: say so
    locked = _submit(client, page.text, right)
    assert locked.status_code == 429 and "分钟内不再核对验证码" in locked.text


def _old_session(client: TestClient, store, person) -> None:
    """This browser's session of ``person``, signed in with a password long ago."""
    from idp import sessions

    token, old = sessions.start(store, account_id=person.account_id, sub=person.sub,
                                amr=["pwd"], acr="urn:edu:acr:sfa")
    old.auth_time -= sessions.REAUTH_SECONDS + 60
    sessions.save(store, token, old)
    client.cookies.set(sessions.COOKIE, token)


def test_a_step_up_of_an_old_session_sets_up_no_app(client: TestClient, make_client,
                                                    make_person, store) -> None:
    """A session left open on a shared computer: an app asking for two factors must not let
    whoever sits there add their own authenticator app (the account pages ask for a recent
    sign-in too); signing in again with the password does."""
    registered, student = make_client(), make_person()
    _old_session(client, store, student)
    step_up = flow.authorize(client, client_id=registered.client_id,
                             acr_values="urn:edu:acr:mfa")
    assert step_up.headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "<svg" not in page.text and "otpauth" not in page.text
    assert "只能在刚用密码登录后设置" in page.text
    assert 'action="/mfa"' not in page.text  # no code to type: nothing is set up
    cancelled = client.post("/mfa/cancel", data={"csrf_token": flow.csrf_of(page.text)},
                            follow_redirects=False)
    again = flow.login(client, client.get(cancelled.headers["location"]), student.login,
                       student.password)
    assert again.headers["location"] == "/mfa"
    assert "<svg" in client.get("/mfa").text  # the password was just typed: set up here


def test_a_step_up_ends_with_the_sign_out(client: TestClient, make_client,
                                          make_person) -> None:
    registered, student = make_client(), make_person()
    flow.code_flow(client, registered.client_id, student)
    page, secret = _step_up_page(client, registered)
    client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})
    left = _submit(client, page.text, _code(secret))  # the next person at the computer
    assert left.status_code == 400 and "已过期" in left.text
    assert "idp_session" not in client.cookies


def test_a_step_up_whose_session_ends_as_it_finishes_brings_nothing_back(
        client: TestClient, make_client, make_person, store, monkeypatch) -> None:
    """Another tab signs out between the step-up's read of the session and its move to a
    new token: the sign-in has expired (a page, no 500), and the session stays ended."""
    from idp import sessions

    registered, student = make_client(), make_person()
    flow.code_flow(client, registered.client_id, student)
    page, secret = _step_up_page(client, registered)
    real_renew = sessions.renew

    def signed_out_meanwhile(store_, token, session):
        sessions._end_stored(client.app.state, sessions._key(token))  # the other tab's
        return real_renew(store_, token, session)  # sign-out lands here

    monkeypatch.setattr(sessions, "renew", signed_out_meanwhile)
    cookie = client.cookies.get(sessions.COOKIE)
    left = _submit(client, page.text, _code(secret))
    assert left.status_code == 400 and "已过期" in left.text
    assert store.get(sessions._key(cookie)) is None and not store.members(
        sessions._index(student.account_id))


def test_a_step_up_does_not_finish_for_someone_else(client: TestClient, make_client,
                                                    make_person, store) -> None:
    """A step-up upgrades the session it began in, or nothing: after another person signed
    in in the same browser, the step's code signs nobody in."""
    from idp import sessions

    registered, first, second = make_client(), make_person(), make_person(
        "s20268888", "pw-second-88")
    flow.code_flow(client, registered.client_id, first)
    page, secret = _step_up_page(client, registered)
    step_cookie = client.cookies.get("idp_mfa")
    flow.code_flow(client, registered.client_id, second, prompt="login")
    client.cookies.set("idp_mfa", step_cookie)
    refused = _submit(client, page.text, _code(secret))
    assert refused.status_code == 400 and "已过期" in refused.text
    token = client.cookies.get(sessions.COOKIE)
    assert sessions.load(store, _request_with(sessions.COOKIE, token))[1].account_id == \
        second.account_id


def _request_with(name: str, value: str):
    from starlette.requests import Request

    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"cookie", f"{name}={value}".encode())]})


@pytest.mark.parametrize("how", ["start page", "end-session endpoint"])
def test_a_sign_out_forgets_a_first_sign_ins_second_factor_step(
        client: TestClient, make_client, make_person, how: str) -> None:
    """Right after the password there is no session yet: a sign-out must still end the
    step, or the next person at the computer sets up their own app on the account."""
    registered = make_client()
    make_person("t1", "pw-teacher-1", role=Role.teacher)
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t1", "pw-teacher-1").headers["location"] == "/mfa"
    page = client.get("/mfa")
    assert "<svg" in page.text
    if how == "start page":  # (its button shows with a session; the form is the same)
        client.post("/logout", data={"csrf_token": flow.csrf_of(page.text)})
    else:
        client.get("/oauth2/logout")
    left = client.get("/mfa")
    assert left.status_code == 400 and "<svg" not in left.text



def test_two_factors_sent_at_once_finish_the_step_once(client: TestClient, make_client,
                                                       make_person, monkeypatch) -> None:
    """Both requests read the step before either finished it: the step is taken atomically
    when a factor succeeds, so the second one starts no second session."""
    from idp import mfa_step
    from mfa import totp

    registered = make_client()
    make_person("t1", "pw-teacher-1", role=Role.teacher)
    flow.login(client, flow.authorize(client, client_id=registered.client_id), "t1",
               "pw-teacher-1")
    page = client.get("/mfa")
    loaded, seen = mfa_step.STEPS.load, []

    def as_read_before_either_finished(request):
        if not seen:
            seen.append(loaded(request))
        return seen[0]

    monkeypatch.setattr(mfa_step.STEPS, "load", as_read_before_either_finished)
    monkeypatch.setattr(totp, "confirm", lambda *args, **kwargs: True)  # two good factors
    assert _submit(client, page.text, "123456").status_code == 303
    second = _submit(client, page.text, "654321")
    assert second.status_code == 400 and "已过期" in second.text
