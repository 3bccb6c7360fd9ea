"""The authorization code flow through the real login form, and its rules."""

from __future__ import annotations

import html
import json
import re
import time

import jwt as pyjwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.gm import jose as gm_jose
from directory.models import Account
from idp.oidc.tokens import half_hash
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI


def _redeem(client: TestClient, registered, code: str, **extra: str):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            **extra}
    auth = (registered.client_id, registered.secret) if registered.secret else None
    if not registered.secret:
        data["client_id"] = registered.client_id
    return client.post("/oauth2/token", data=data, auth=auth)


def _sm2_claims(client: TestClient, token: str) -> dict:
    jwks = client.get("/oauth2/jwks/all").json()
    return json.loads(gm_jose.verify_jws(token, gm_jose.import_key_set(jwks)))


def test_code_flow_sm2_id_token(client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    redirect = flow.code_flow(client, registered.client_id, person, scope="openid profile edu")
    params = redirect.params
    assert params["state"] == "st-1" and params["iss"] == "http://127.0.0.1:8000"
    response = _redeem(client, registered, params["code"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and "refresh_token" in body
    header = pyjwt.get_unverified_header(body["id_token"])
    assert header["alg"] == "SM2"
    claims = _sm2_claims(client, body["id_token"])
    assert claims["sub"] == person.sub and claims["aud"] == registered.client_id
    assert claims["nonce"] == "n-1" and claims["amr"] == ["pwd"] and claims["sid"]
    assert abs(claims["auth_time"] - time.time()) < 60
    assert claims["at_hash"] == half_hash(body["access_token"], "SM2")
    assert claims["c_hash"] == half_hash(params["code"], "SM2")
    userinfo = client.get("/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert userinfo["sub"] == person.sub and userinfo["name"] == "赵同学"
    assert userinfo["school"] == {"code": "T-SCHOOL", "name": "测试学校"}
    assert userinfo["grade"] == "一年级" and userinfo["class"] == "1班"
    assert userinfo["edu_roles"] == ["student"]


def test_userinfo_edu_claims_leave_out_ended_affiliations(client: TestClient, make_client,
                                                          make_person, db) -> None:
    """A transferred pupil's former class (an affiliation with an end date) is history:
    UserInfo names only the current school, grade and class."""
    from datetime import date

    from directory.models import Affiliation, OrgKind, Role
    from directory.orgs import ensure_org_unit

    registered, person = make_client(), make_person()
    with db.session() as session:
        old = ensure_org_unit(session, code="T-OLD", name="旧学校", kind=OrgKind.school)
        account_person = session.scalar(select(Account.person_id).where(
            Account.id == person.account_id))
        session.add(Affiliation(person_id=account_person, org_unit_id=old.id,
                                role=Role.teacher.value, valid_from=date(2020, 9, 1),
                                valid_to=date(2026, 7, 1)))
    redirect = flow.code_flow(client, registered.client_id, person, scope="openid profile edu")
    body = _redeem(client, registered, redirect.params["code"]).json()
    userinfo = client.get("/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert userinfo["school"] == {"code": "T-SCHOOL", "name": "测试学校"}
    assert userinfo["edu_roles"] == ["student"] and userinfo["class"] == "1班"


def test_rs256_id_token_with_pyjwt(client: TestClient, make_client, make_person) -> None:
    registered = make_client(id_token_signed_response_alg="RS256")
    person = make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    body = _redeem(client, registered, code).json()
    jwks = pyjwt.PyJWKSet.from_dict(client.get("/oauth2/jwks").json())
    kid = pyjwt.get_unverified_header(body["id_token"])["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid).key
    claims = pyjwt.decode(body["id_token"], key, algorithms=["RS256"],
                          audience=registered.client_id, issuer="http://127.0.0.1:8000")
    assert claims["sub"] == person.sub


def test_code_is_single_use_and_reuse_revokes(client: TestClient, make_client,
                                              make_person) -> None:
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    first = _redeem(client, registered, code).json()
    second = _redeem(client, registered, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert "code" not in second.text.lower().split("error_description")[0]
    # the tokens issued from the code are revoked
    userinfo = client.get("/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {first['access_token']}"})
    assert userinfo.status_code == 401
    refresh = client.post("/oauth2/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": first["refresh_token"]},
                          auth=(registered.client_id, registered.secret))
    assert refresh.json()["error"] == "invalid_grant"


def test_pkce_public_client(client: TestClient, make_client, make_person) -> None:
    registered = make_client(token_endpoint_auth_method="none",
                             grant_types=["authorization_code", "refresh_token"])
    person = make_person()
    verifier, challenge = flow.pkce_pair()
    without = flow.authorize(client, client_id=registered.client_id)
    assert flow.Redirect(without.headers["location"]).params["error"] == "invalid_request"
    plain = flow.authorize(client, client_id=registered.client_id, code_challenge=challenge,
                           code_challenge_method="plain")
    assert flow.Redirect(plain.headers["location"]).params["error"] == "invalid_request"
    code = flow.code_flow(client, registered.client_id, person, code_challenge=challenge,
                          code_challenge_method="S256").params["code"]
    wrong = _redeem(client, registered, code, code_verifier=flow.pkce_pair()[0])
    assert wrong.json()["error"] == "invalid_grant"
    code = flow.code_flow(client, registered.client_id, person, code_challenge=challenge,
                          code_challenge_method="S256").params["code"]
    assert _redeem(client, registered, code, code_verifier=verifier).status_code == 200


def test_a_native_apps_remembered_consent_is_confirmed_each_time(
        client: TestClient, make_client, make_person) -> None:
    """RFC 8252 8.6: any app on a device can send a public client's request to a loopback
    port, so remembered consent lets nothing through unseen there; an https redirect URI
    proves the app, and remembered consent holds."""
    loopback = "http://127.0.0.1:3000/callback"
    registered = make_client(first_party=False, token_endpoint_auth_method="none",
                             redirect_uris=[REDIRECT_URI, loopback])
    person = make_person()
    _, challenge = flow.pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    consent = flow.follow(client, flow.login(client, flow.authorize(
        client, client_id=registered.client_id, **pkce), person.login, person.password))
    ia = consent.headers["location"].split("ia=")[1]
    page = client.get(consent.headers["location"])
    flow.follow(client, client.post("/consent", data={
        "csrf_token": flow.csrf_of(page.text), "ia": ia, "decision": "allow"},
        follow_redirects=False))
    proven = flow.authorize(client, client_id=registered.client_id, prompt="none", **pkce)
    assert "code" in flow.Redirect(proven.headers["location"]).params
    other_port = "http://127.0.0.1:49152/callback"
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none",
                            redirect_uri=other_port, **pkce)
    assert silent.headers["location"].startswith(other_port)
    assert flow.Redirect(silent.headers["location"]).params["error"] == "consent_required"
    asked = flow.authorize(client, client_id=registered.client_id, redirect_uri=other_port,
                           **pkce)
    assert flow.follow(client, asked).headers["location"].startswith("/consent")


def test_redirect_uri_must_match_exactly(client: TestClient, make_client) -> None:
    registered = make_client()
    for bad in (REDIRECT_URI + "/x", REDIRECT_URI.replace("https", "http"),
                "https://evil.example.com/cb", ""):
        response = flow.authorize(client, client_id=registered.client_id, redirect_uri=bad)
        assert response.status_code == 400 and "location" not in response.headers
    unknown = flow.authorize(client, client_id="nope")
    assert unknown.status_code == 400 and "location" not in unknown.headers
    assert "未注册" in unknown.text or "not registered" in unknown.text
    # a pupil who lands here knows whom to tell, and what to give them
    reference = unknown.headers["x-request-id"]
    assert f"请告诉老师或学校管理员，并提供此编号：{reference}" in unknown.text


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": ""}, "invalid_request"),
        ({"scope": "openid guardian"}, "invalid_scope"),  # known, not this app's
        ({"scope": "openid\u3000profile"}, "invalid_scope"),  # RFC 6749 3.3: spaces only
        ({"scope": "admin"}, "invalid_scope"),  # nothing left once ignored
        ({"request_uri": "https://x"}, "request_uri_not_supported"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "bogus"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"claims": "{not json"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"prompt": "none"}, "login_required"),
        ({"id_token_hint": "a.b.c"}, "invalid_request"),
    ],
)
def test_errors_redirect_with_state_and_iss(client: TestClient, make_client, params,
                                            error) -> None:
    registered = make_client()
    response = flow.authorize(client, client_id=registered.client_id, **params)
    assert response.status_code == 303
    redirect = flow.Redirect(response.headers["location"])
    assert redirect.location.startswith(REDIRECT_URI)
    assert redirect.params["error"] == error
    assert redirect.params["state"] == "st-1" and redirect.params["iss"] == "http://127.0.0.1:8000"
    assert "code" not in redirect.params


def test_repeated_parameter_goes_back_to_the_app(client: TestClient, make_client) -> None:
    """RFC 6749 4.1.2.1: with a trusted client and redirect URI, the client hears of it."""
    registered = make_client()
    response = client.get(f"/oauth2/authorize?client_id={registered.client_id}&scope=openid"
                          f"&scope=openid&redirect_uri={REDIRECT_URI}&response_type=code"
                          "&state=st-1", follow_redirects=False)
    assert response.status_code == 303
    redirect = flow.Redirect(response.headers["location"])
    assert redirect.location.startswith(REDIRECT_URI)
    assert redirect.params["error"] == "invalid_request" and redirect.params["state"] == "st-1"
    assert "scope" in redirect.params["error_description"]


@pytest.mark.parametrize("repeated", ["client_id", "redirect_uri"])
def test_repeated_client_or_redirect_uri_is_an_error_page(client: TestClient, make_client,
                                                          repeated: str) -> None:
    registered = make_client()
    values = {"client_id": registered.client_id, "redirect_uri": REDIRECT_URI}
    response = client.get(f"/oauth2/authorize?client_id={registered.client_id}"
                          f"&redirect_uri={REDIRECT_URI}&{repeated}={values[repeated]}"
                          "&scope=openid&response_type=code", follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers


def test_empty_parameters_are_omitted(client: TestClient, make_client, make_person) -> None:
    """RFC 6749 3.1: a parameter sent without a value is treated as omitted."""
    registered, person = make_client(), make_person()
    flow.code_flow(client, registered.client_id, person)
    response = flow.authorize(client, client_id=registered.client_id, state="", max_age="",
                              response_mode="", request="", request_uri="", claims="",
                              code_challenge="", code_challenge_method="")
    redirect = flow.Redirect(response.headers["location"])
    assert "code" in redirect.params and "state" not in redirect.params


def test_loopback_redirect_uri_takes_any_port(client: TestClient, make_client,
                                              make_person) -> None:
    """RFC 8252 7.3: a native app's (public client's) loopback redirect URI matches on any
    port; a web server's stays exact."""
    native = make_client(redirect_uris=["http://127.0.0.1/callback"],
                         token_endpoint_auth_method="none")
    web = make_client(redirect_uris=["http://127.0.0.1/callback"])
    person = make_person()
    _verifier, challenge = flow.pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    page = flow.authorize(client, client_id=native.client_id,
                          redirect_uri="http://127.0.0.1:53123/callback", **pkce)
    flow.login(client, page, person.login, person.password)
    ok = flow.authorize(client, client_id=native.client_id,
                        redirect_uri="http://127.0.0.1:53124/callback", **pkce)
    assert ok.headers["location"].startswith("http://127.0.0.1:53124/callback?code=")
    for registered, other in ((native, "http://127.0.0.1:53124/other"),
                              (native, "http://localhost:53124/callback"),
                              (native, "https://127.0.0.1:53124/callback"),
                              (web, "http://127.0.0.1:53124/callback"),
                              # what a URL parser drops or ignores is not quietly matched
                              # (then redirected to as sent: a relative URL, a code in a
                              # fragment, another path)
                              (native, " http://127.0.0.1:53124/callback"),
                              (native, "\x01http://127.0.0.1/callback"),
                              (native, "http://127.0.0.1:53124/callback#"),
                              (native, "http://127.0.0.1:53124/callback?#"),
                              (native, "http://127.0.0.1/call\tback"),
                              (native, "http://127.0.0.1/callback\n"),
                              (native, "http://127.0.0.1:0/callback"),
                              (native, "http://127.0.0.1:65536/callback"),
                              (native, "http://127.0.0.1:/callback"),
                              (native, "http://x@127.0.0.1/callback")):
        refused = flow.authorize(client, client_id=registered.client_id, redirect_uri=other,
                                 **pkce)
        assert refused.status_code == 400 and "location" not in refused.headers


def test_prompt_none_with_session_and_max_age(client: TestClient, make_client,
                                              make_person) -> None:
    registered, person = make_client(), make_person()
    first = flow.code_flow(client, registered.client_id, person)
    assert "code" in first.params
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none")
    assert "code" in flow.Redirect(silent.headers["location"]).params
    auth_time_1 = _sm2_claims(client, _redeem(client, registered, first.params["code"])
                              .json()["id_token"])["auth_time"]
    time.sleep(1.1)
    stale = flow.authorize(client, client_id=registered.client_id, prompt="none", max_age="0")
    assert flow.Redirect(stale.headers["location"]).params["error"] == "login_required"
    again = flow.code_flow(client, registered.client_id, person, max_age="0")
    auth_time_2 = _sm2_claims(client, _redeem(client, registered, again.params["code"])
                              .json()["id_token"])["auth_time"]
    assert auth_time_2 > auth_time_1


def test_default_max_age_asks_for_a_new_sign_in(client: TestClient, make_client,
                                                  make_person) -> None:
    """OIDC Registration 2: with ``default_max_age`` the person "MUST be actively
    authenticated" when the sign-in is older; the request's ``max_age`` overrides it."""
    from idp import sessions

    registered, person = make_client(default_max_age=600), make_person()
    assert "code" in flow.code_flow(client, registered.client_id, person).params
    assert "code" in flow.Redirect(flow.authorize(
        client, client_id=registered.client_id, prompt="none").headers["location"]).params
    store, key = client.app.state.store, sessions._key(client.cookies.get(sessions.COOKIE))
    stored = json.loads(store.get(key))  # signed in eleven minutes ago (no sleeping: a
    stored["auth_time"] -= 660           # loaded machine took a second to sign in)
    store.set(key, json.dumps(stored).encode(), ttl=3600)
    stale = flow.authorize(client, client_id=registered.client_id, prompt="none")
    assert flow.Redirect(stale.headers["location"]).params["error"] == "login_required"
    overridden = flow.authorize(client, client_id=registered.client_id, prompt="none",
                                max_age="3600")
    assert "code" in flow.Redirect(overridden.headers["location"]).params


def test_prompt_login_forces_a_new_login(client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    flow.code_flow(client, registered.client_id, person)
    response = flow.authorize(client, client_id=registered.client_id, prompt="login")
    assert flow.is_login_page(response)


def test_login_hint_prefills(client: TestClient, make_client) -> None:
    registered = make_client()
    page = flow.authorize(client, client_id=registered.client_id, login_hint="s2026X")
    assert 'value="s2026X"' in page.text


def test_wrong_password_and_status_messages(client: TestClient, make_client,
                                            make_person) -> None:
    registered = make_client()
    make_person("s1", "pw-right-1")
    make_person("s2", "pw-right-2", status="graduated")
    start = flow.authorize(client, client_id=registered.client_id)
    wrong = flow.login(client, start, "s1", "nope")
    assert wrong.status_code == 400 and "账号或密码不正确" in wrong.text
    unknown = flow.login(client, start, "nobody", "nope")
    assert "账号或密码不正确" in unknown.text
    graduated = flow.login(client, start, "s2", "pw-right-2")
    assert graduated.status_code == 400 and "毕业" in graduated.text


def test_progressive_delay_after_failures(client: TestClient, make_client, make_person) -> None:
    registered = make_client()
    make_person("s3", "pw-right-3")
    start = flow.authorize(client, client_id=registered.client_id)
    for _ in range(4):
        flow.login(client, start, "s3", "bad")
    blocked = flow.login(client, start, "s3", "pw-right-3")
    assert blocked.status_code == 429 and "秒" in blocked.text


def test_consent_for_third_party_apps(client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(first_party=False), make_person()
    response = flow.authorize(client, client_id=registered.client_id, scope="openid profile")
    response = flow.follow(client, flow.login(client, response, person.login, person.password))
    assert response.headers["location"].startswith("/consent")
    page = client.get(response.headers["location"])
    assert "您的姓名" in page.text
    ia = response.headers["location"].split("ia=")[1]
    denied = client.post("/consent", data={"csrf_token": flow.csrf_of(page.text), "ia": ia,
                                           "decision": "deny"}, follow_redirects=False)
    assert flow.Redirect(denied.headers["location"]).params["error"] == "access_denied"
    # again, allow; the consent is remembered for the next time
    response = flow.authorize(client, client_id=registered.client_id, scope="openid profile")
    assert response.headers["location"].startswith("/consent")
    page = client.get(response.headers["location"])
    ia = response.headers["location"].split("ia=")[1]
    allowed = flow.follow(client, client.post("/consent", data={
        "csrf_token": flow.csrf_of(page.text), "ia": ia, "decision": "allow"},
        follow_redirects=False))
    assert "code" in flow.Redirect(allowed.headers["location"]).params
    silent = flow.authorize(client, client_id=registered.client_id, scope="openid profile",
                            prompt="none")
    assert "code" in flow.Redirect(silent.headers["location"]).params
    wider = flow.authorize(client, client_id=registered.client_id, scope="openid email",
                           prompt="none")
    assert flow.Redirect(wider.headers["location"]).params["error"] == "consent_required"


def test_the_consent_page_names_every_scope_it_releases(client: TestClient, make_client,
                                                        make_person) -> None:
    """The home address, and an API's own scope the page has no words for, are named too:
    nothing is released that the person was not shown."""
    registered, person = make_client(first_party=False), make_person()
    response = flow.authorize(client, client_id=registered.client_id,
                              scope="openid address api.read")
    response = flow.follow(client, flow.login(client, response, person.login, person.password))
    page = client.get(response.headers["location"])
    items = dict(re.findall(r'<li data-scope="([^"]+)">([^<]*)</li>', page.text))
    assert list(items) == ["openid", "address", "api.read"]
    assert items["address"] == "您的家庭住址" and "“api.read”" in items["api.read"]


def test_unknown_scope_values_are_ignored(client: TestClient, make_client,
                                          make_person) -> None:
    """OIDC Core 3.1.2.1: a scope value the provider does not know is ignored, and the
    token response names the scope granted (RFC 6749 5.1)."""
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person,
                          scope="openid admin profile openid").params["code"]
    assert _redeem(client, registered, code).json()["scope"] == "openid profile"


def test_form_post_response_mode(client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    response = flow.authorize(client, client_id=registered.client_id, response_mode="form_post")
    response = flow.follow(client, flow.login(client, response, person.login, person.password))
    assert response.status_code == 200
    assert f'action="{REDIRECT_URI}"' in response.text and 'name="code"' in response.text
    assert 'name="iss"' in response.text and 'name="state" value="st-1"' in response.text
    assert "form-action 'self' https://app.example.edu.cn" in response.headers[
        "content-security-policy"]


def _offline_tokens(client: TestClient, make_client, make_person):
    """A signed-in person's tokens (with a refresh token) for a new confidential client:
    (client, person, tokens, its Basic credentials)."""
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person, scope="openid offline_access",
                          prompt="consent").params["code"]
    tokens = _redeem(client, registered, code).json()
    return registered, person, tokens, (registered.client_id, registered.secret)


def test_refresh_rotation_and_family_revocation(client: TestClient, make_client,
                                                make_person) -> None:
    _registered, _person, tokens, auth = _offline_tokens(client, make_client, make_person)
    rotated = client.post("/oauth2/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": tokens["refresh_token"]},
                          auth=auth).json()
    assert rotated["refresh_token"] != tokens["refresh_token"] and "id_token" in rotated
    refreshed = _sm2_claims(client, rotated["id_token"])
    original = _sm2_claims(client, tokens["id_token"])
    assert "nonce" not in refreshed  # OIDC Core 12.2
    assert (refreshed["sub"], refreshed["auth_time"]) == (original["sub"], original["auth_time"])
    reuse = client.post("/oauth2/token", data={"grant_type": "refresh_token",
                                               "refresh_token": tokens["refresh_token"]},
                        auth=auth)
    assert reuse.json()["error"] == "invalid_grant"
    after = client.post("/oauth2/token", data={"grant_type": "refresh_token",
                                               "refresh_token": rotated["refresh_token"]},
                        auth=auth)
    assert after.json()["error"] == "invalid_grant"  # the whole family is revoked


def test_refresh_token_bound_to_client(client: TestClient, make_client, make_person) -> None:
    registered, other, person = make_client(), make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    tokens = _redeem(client, registered, code).json()
    stolen = client.post("/oauth2/token", data={"grant_type": "refresh_token",
                                                "refresh_token": tokens["refresh_token"]},
                         auth=(other.client_id, other.secret))
    assert stolen.json()["error"] == "invalid_grant"
    narrower = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "scope": "openid"}, auth=(registered.client_id, registered.secret)).json()
    assert narrower["scope"] == "openid"


def test_introspection_and_revocation(client: TestClient, make_client, make_person) -> None:
    registered, other, person = make_client(), make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    tokens = _redeem(client, registered, code).json()
    auth = (registered.client_id, registered.secret)
    active = client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                         auth=auth).json()
    assert active["active"] is True and active["sub"] == person.sub
    foreign = client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                          auth=(other.client_id, other.secret)).json()
    assert foreign == {"active": False}
    refresh = client.post("/oauth2/introspect", data={"token": tokens["refresh_token"],
                                                      "token_type_hint": "refresh_token"},
                          auth=auth).json()
    assert refresh["active"] is True and "token_type" not in refresh
    assert client.post("/oauth2/revoke", data={"token": tokens["access_token"]},
                       auth=auth).status_code == 200
    assert client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                       auth=auth).json() == {"active": False}
    assert client.post("/oauth2/revoke", data={"token": tokens["refresh_token"]},
                       auth=auth).status_code == 200
    assert client.post("/oauth2/introspect", data={"token": tokens["refresh_token"]},
                       auth=auth).json() == {"active": False}
    assert client.post("/oauth2/revoke", data={"token": "garbage"}, auth=auth).status_code == 200
    assert client.post("/oauth2/introspect", data={"token": "x"}).status_code == 401


def test_userinfo_post_and_errors(client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    tokens = _redeem(client, registered, code).json()
    posted = client.post("/oauth2/userinfo", data={"access_token": tokens["access_token"]})
    assert posted.status_code == 200 and posted.json()["sub"] == person.sub
    bare = client.get("/oauth2/userinfo")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith("Bearer, DPoP algs=")
    assert bare.content == b""  # RFC 6750 3.1: no error code without credentials
    bad = client.get("/oauth2/userinfo", headers={"Authorization": "Bearer x.y.z"})
    assert bad.status_code == 401 and "invalid_token" in bad.headers["www-authenticate"]
    cc = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                     auth=(registered.client_id, registered.secret)).json()
    machine = client.get("/oauth2/userinfo",
                         headers={"Authorization": f"Bearer {cc['access_token']}"})
    assert machine.status_code == 401


@pytest.mark.parametrize("alg", ["SM2", "RS256", "ES256", "EdDSA"])
def test_userinfo_signed_for_an_app_that_asks(client: TestClient, make_client, make_person,
                                              alg: str) -> None:
    """OIDC Core 5.3.2: ``userinfo_signed_response_alg`` gets a JWT signed with the
    provider's key of that algorithm, with iss and aud, for GET and POST alike."""
    registered = make_client(userinfo_signed_response_alg=alg)
    person = make_person()
    code = flow.code_flow(client, registered.client_id, person, scope="openid profile").params
    tokens = _redeem(client, registered, code["code"]).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    for answer in (client.get("/oauth2/userinfo", headers=bearer),
                   client.post("/oauth2/userinfo", data={"access_token": tokens["access_token"]})):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/jwt"
        assert answer.headers["cache-control"] == "no-store"
        assert pyjwt.get_unverified_header(answer.text)["alg"] == alg
        claims = (_sm2_claims(client, answer.text) if alg == "SM2"
                  else _verified(client, answer.text, alg))
        assert claims["sub"] == person.sub and claims["name"] == "赵同学"
        assert claims["iss"] == "http://127.0.0.1:8000" and claims["aud"] == registered.client_id
        assert abs(claims["iat"] - time.time()) < 60 and "email" not in claims
        assert "typ" not in pyjwt.get_unverified_header(answer.text)
    # no ID token: not taken as an id_token_hint (it has no exp, and no typ JWT)
    hinted = flow.authorize(client, client_id=registered.client_id, id_token_hint=answer.text)
    assert "error=invalid_request" in hinted.headers["location"]
    # an error is still plain JSON with its challenge
    bad = client.get("/oauth2/userinfo", headers={"Authorization": "Bearer x.y.z"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"


def _verified(client: TestClient, token: str, alg: str) -> dict:
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(client.get("/oauth2/jwks").json())
    return dict(jose_jwt.decode(token, keys, algorithms=[alg]).claims)


def test_userinfo_plain_json_when_the_alg_is_empty(client: TestClient, make_client,
                                                   make_person) -> None:
    registered = make_client(userinfo_signed_response_alg="")
    person = make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    tokens = _redeem(client, registered, code).json()
    answer = client.get("/oauth2/userinfo",
                        headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert answer.headers["content-type"] == "application/json" and answer.json()["sub"]


def test_discovery_names_the_userinfo_signing_algs(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["userinfo_signing_alg_values_supported"] == ["SM2", "RS256", "ES256",
                                                                 "EdDSA"]


def test_userinfo_takes_the_token_one_way_only(client: TestClient, make_client,
                                               make_person) -> None:
    """RFC 6750 2: one method, once; a second token anywhere, an empty Bearer or a token
    in the URL is invalid_request, never a guess at which token was meant."""
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    token = _redeem(client, registered, code).json()["access_token"]
    header = ("Authorization", f"Bearer {token}")
    for request in (
        lambda: client.get("/oauth2/userinfo", headers=[header],
                           params={"access_token": "junk"}),
        lambda: client.get("/oauth2/userinfo", params={"access_token": token}),
        lambda: client.post("/oauth2/userinfo", params={"access_token": "junk"},
                            data={"access_token": token}),
        lambda: client.get("/oauth2/userinfo", headers=[header, header]),
        lambda: client.post("/oauth2/userinfo", content=f"access_token={token}&access_token"
                            "=junk", headers={"content-type": "application/x-www-form-urlencoded"}),
        lambda: client.post("/oauth2/userinfo", headers=[("Authorization", "Bearer ")],
                            data={"access_token": token}),
        lambda: client.post("/oauth2/userinfo", headers=[header], data={"access_token": token}),
    ):
        answer = request()
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert 'error="invalid_request"' in answer.headers["www-authenticate"]
    assert client.get("/oauth2/userinfo", headers=[header]).status_code == 200


def test_id_token_hint_for_another_person_forces_login(client: TestClient, make_client,
                                                       make_person) -> None:
    registered = make_client()
    alice, bob = make_person("sa1", "pw-a-1"), make_person("sb1", "pw-b-1")
    code = flow.code_flow(client, registered.client_id, alice).params["code"]
    alice_token = _redeem(client, registered, code).json()["id_token"]
    same = flow.authorize(client, client_id=registered.client_id, prompt="none",
                          id_token_hint=alice_token)
    assert "code" in flow.Redirect(same.headers["location"]).params
    client.cookies.clear()
    flow.code_flow(client, registered.client_id, bob)
    other = flow.authorize(client, client_id=registered.client_id, prompt="none",
                           id_token_hint=alice_token)
    assert flow.Redirect(other.headers["location"]).params["error"] == "login_required"


def test_signing_in_as_another_than_the_hint_answers_login_required(
        client: TestClient, make_client, make_person) -> None:
    """OIDC Core 3.1.2.1: the hinted person is asked to sign in; someone else signing in
    ends the request with login_required instead of asking again and again."""
    registered = make_client()
    alice, bob = make_person("sa1", "pw-a-1"), make_person("sb1", "pw-b-1")
    code = flow.code_flow(client, registered.client_id, alice).params["code"]
    alice_token = _redeem(client, registered, code).json()["id_token"]
    client.cookies.clear()
    page = flow.authorize(client, client_id=registered.client_id, id_token_hint=alice_token)
    assert flow.is_login_page(page)
    answer = flow.follow(client, flow.login(client, page, bob.login, bob.password))
    redirect = flow.Redirect(answer.headers["location"])
    assert redirect.params["error"] == "login_required" and "code" not in redirect.params
    page = flow.authorize(client, client_id=registered.client_id, id_token_hint=alice_token)
    answer = flow.follow(client, flow.login(client, page, alice.login, alice.password))
    assert "code" in flow.Redirect(answer.headers["location"]).params


def test_a_sub_value_in_claims_is_honoured(client: TestClient, make_client,
                                           make_person) -> None:
    """OIDC Core 5.5.1: an ID token for a requested sub value is only ever about them."""
    registered = make_client()
    alice, bob = make_person("sa1", "pw-a-1"), make_person("sb1", "pw-b-1")
    flow.code_flow(client, registered.client_id, alice)
    for_bob = json.dumps({"id_token": {"sub": {"value": bob.sub}}})
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none",
                            claims=for_bob)
    assert flow.Redirect(silent.headers["location"]).params["error"] == "login_required"
    page = flow.authorize(client, client_id=registered.client_id, claims=for_bob)
    assert flow.is_login_page(page)
    answer = flow.follow(client, flow.login(client, page, bob.login, bob.password))
    code = flow.Redirect(answer.headers["location"]).params["code"]
    assert _sm2_claims(client, _redeem(client, registered, code).json()["id_token"])[
        "sub"] == bob.sub
    not_a_string = json.dumps({"id_token": {"sub": {"value": 7}}})
    bad = flow.authorize(client, client_id=registered.client_id, claims=not_a_string)
    assert flow.Redirect(bad.headers["location"]).params["error"] == "invalid_request"


def test_unknown_claims_members_are_ignored(client: TestClient, make_client,
                                            make_person) -> None:
    """OIDC Core 5.5: members that are not understood MUST be ignored."""
    registered, person = make_client(), make_person()
    claims = json.dumps({"id_token": {"name": None}, "access_token": {"scope": None}})
    code = flow.code_flow(client, registered.client_id, person, scope="openid profile",
                          claims=claims).params["code"]
    assert _sm2_claims(client, _redeem(client, registered, code).json()["id_token"])[
        "name"] == "赵同学"


def test_a_finished_interaction_cannot_be_resumed(client: TestClient, make_client,
                                                  make_person) -> None:
    """Once the app has its answer, replaying the resume URL mints nothing more."""
    registered, person = make_client(), make_person()
    page = flow.authorize(client, client_id=registered.client_id, prompt="login")
    ia = flow.ia_of(page)
    answer = flow.follow(client, flow.login(client, page, person.login, person.password))
    assert "code" in flow.Redirect(answer.headers["location"]).params
    client.cookies.set("idp_ia", ia)
    replay = client.get(f"/oauth2/authorize/resume?ia={ia}", follow_redirects=False)
    assert replay.status_code == 400 and "location" not in replay.headers


def test_two_resumes_at_once_mint_one_code(client: TestClient, make_client, make_person,
                                           monkeypatch) -> None:
    """A second resume that arrives while the first is minting its code finds the request
    taken: one code per request also when a browser (or a script) sends the resume link
    twice at once (a review minted 12 codes from 12 parallel resumes)."""
    from idp.oidc import codes

    registered, person = make_client(first_party=False), make_person()
    page = flow.authorize(client, client_id=registered.client_id)
    consent = flow.follow(client, flow.login(client, page, person.login, person.password))
    ia = consent.headers["location"].split("ia=")[1]
    form = client.get(consent.headers["location"])
    resume = client.post("/consent", data={"csrf_token": flow.csrf_of(form.text), "ia": ia,
                                           "decision": "allow"}, follow_redirects=False)
    seconds: list = []
    issue = codes.issue

    def issue_while_another_resumes(*args, **kwargs):
        if not seconds:  # the other request, in the middle of this one (once)
            seconds.append(None)
            seconds[0] = client.get(resume.headers["location"], follow_redirects=False)
        return issue(*args, **kwargs)

    monkeypatch.setattr(codes, "issue", issue_while_another_resumes)
    first = client.get(resume.headers["location"], follow_redirects=False)
    assert "code" in flow.Redirect(first.headers["location"]).params
    assert seconds[0].status_code == 400 and "location" not in seconds[0].headers, \
        seconds[0].headers.get("location")


def test_claims_parameter_puts_claims_in_id_token(client: TestClient, make_client,
                                                  make_person) -> None:
    registered, person = make_client(), make_person()
    claims = json.dumps({"id_token": {"name": {"essential": True}, "phone_number": None}})
    code = flow.code_flow(client, registered.client_id, person, scope="openid profile",
                          claims=claims).params["code"]
    token = _redeem(client, registered, code).json()["id_token"]
    payload = _sm2_claims(client, token)
    assert payload["name"] == "赵同学" and "phone_number" not in payload


def test_ui_locales_speaks_for_its_request_only(client: TestClient, make_client,
                                                 make_person) -> None:
    """The app's ui_locales is the language of its request's pages (also after a POST,
    from the pending request), never the browser's: no cookie, so the next pupil on a
    shared computer, or another app, gets the browser's language. The person's own choice
    (the switcher) sticks and beats an app's."""
    registered, person = make_client(first_party=False), make_person()
    page = flow.authorize(client, client_id=registered.client_id, ui_locales="en")
    assert '<html lang="en">' in page.text and "Sign in" in page.text
    assert client.cookies.get("lang") is None
    wrong = flow.login(client, page, person.login, "wrong")
    assert wrong.status_code == 400 and '<html lang="en">' in wrong.text
    consent = flow.login(client, page, person.login, person.password)
    assert '<html lang="en">' in client.get(consent.headers["location"]).text  # /consent?ia=
    assert '<html lang="zh-CN">' in client.get("/").text
    chinese = flow.authorize(client, client_id=registered.client_id, prompt="login")
    assert '<html lang="zh-CN">' in chinese.text
    switch = re.findall(r'<a href="([^"]*lang=en[^"]*)"', chinese.text)[0]
    client.get("/oauth2/authorize" + html.unescape(switch))
    assert client.cookies.get("lang") == "en"  # the person's choice
    english = flow.authorize(client, client_id=registered.client_id, ui_locales="zh-CN",
                             prompt="login")
    assert '<html lang="en">' in english.text


def test_the_consent_page_names_the_account_and_offers_another(
        client: TestClient, make_client, make_person) -> None:
    """Two pupils share a computer: the consent page says whose account it is for, and
    "not you?" signs the other one in for the same request."""
    registered = make_client(first_party=False)
    first = make_person()
    other = make_person("s20260005", "Fifth-Pass-5", name="周同学")
    response = flow.authorize(client, client_id=registered.client_id, scope="openid profile")
    response = flow.follow(client, flow.login(client, response, first.login, first.password))
    page = client.get(response.headers["location"])
    assert "当前账号：赵同学" in page.text
    switch = re.search(r'href="(/login\?ia=[^"]+)"', page.text)[1]
    signed = flow.login(client, client.get(switch), other.login, other.password)
    consent = client.get(flow.follow(client, signed).headers["location"])
    assert "当前账号：周同学" in consent.text
    ia = re.search(r'name="ia" value="([^"]+)"', consent.text)[1]
    allowed = client.post("/consent", data={"csrf_token": flow.csrf_of(consent.text),
                                            "ia": ia, "decision": "allow"},
                          follow_redirects=False)
    code = flow.Redirect(flow.follow(client, allowed).headers["location"]).params["code"]
    tokens = _redeem(client, registered, code).json()
    assert _sm2_claims(client, tokens["id_token"])["sub"] == other.sub


def test_consent_can_be_withdrawn(client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(first_party=False), make_person()
    response = flow.authorize(client, client_id=registered.client_id, scope="openid profile")
    response = flow.follow(client, flow.login(client, response, person.login, person.password))
    page = client.get(response.headers["location"])
    ia = response.headers["location"].split("ia=")[1]
    client.post("/consent", data={"csrf_token": flow.csrf_of(page.text), "ia": ia,
                                  "decision": "allow"}, follow_redirects=False)
    apps = client.get("/account/apps")
    assert "测试应用" in apps.text
    withdrawn = client.post("/account/apps/revoke", data={
        "csrf_token": flow.csrf_of(apps.text), "client_id": registered.client_id},
        follow_redirects=False)
    assert withdrawn.status_code == 303
    assert "测试应用" not in client.get("/account/apps").text
    silent = flow.authorize(client, client_id=registered.client_id, scope="openid profile",
                            prompt="none")
    assert flow.Redirect(silent.headers["location"]).params["error"] == "consent_required"
    forged = client.post("/account/apps/revoke", data={"client_id": registered.client_id})
    assert forged.status_code == 403


def test_withdrawn_consent_revokes_the_apps_refresh_tokens(client: TestClient, make_client,
                                                           make_person) -> None:
    """After the person withdraws consent the app cannot refresh its way back in."""
    registered, person = make_client(first_party=False), make_person()
    response = flow.authorize(client, client_id=registered.client_id,
                              scope="openid profile offline_access")
    response = flow.follow(client, flow.login(client, response, person.login, person.password))
    page = client.get(response.headers["location"])
    ia = response.headers["location"].split("ia=")[1]
    allowed = client.post("/consent", data={"csrf_token": flow.csrf_of(page.text), "ia": ia,
                                            "decision": "allow"}, follow_redirects=False)
    code = flow.Redirect(flow.follow(client, allowed).headers["location"]).params["code"]
    tokens = _redeem(client, registered, code).json()
    apps = client.get("/account/apps")
    client.post("/account/apps/revoke", data={"csrf_token": flow.csrf_of(apps.text),
                                              "client_id": registered.client_id})
    refreshed = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(registered.client_id, registered.secret))
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert _active(client, registered, tokens["access_token"]) is False  # and its access


def _active(client: TestClient, registered, token: str) -> bool:
    answer = client.post("/oauth2/introspect", data={"token": token},
                         auth=(registered.client_id, registered.secret))
    return answer.json()["active"]


def _user_tokens(client: TestClient, registered, person, **params: str) -> dict:
    code = flow.code_flow(client, registered.client_id, person,
                          scope="openid offline_access", **params).params["code"]
    return _redeem(client, registered, code).json()


def test_revoking_a_refresh_token_revokes_its_access_tokens(client: TestClient, make_client,
                                                            make_person) -> None:
    """RFC 7009 2.1: the access tokens of the same grant go with the refresh token, also
    the one issued with a rotated token of the family."""
    registered, person = make_client(), make_person()
    first = _user_tokens(client, registered, person)
    second = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(registered.client_id, registered.secret)).json()
    other = _user_tokens(client, registered, person)  # another grant: stays
    assert _active(client, registered, first["access_token"])
    revoked = client.post("/oauth2/revoke", data={"token": second["refresh_token"]},
                          auth=(registered.client_id, registered.secret))
    assert revoked.status_code == 200
    assert not _active(client, registered, first["access_token"])
    assert not _active(client, registered, second["access_token"])
    assert client.get("/oauth2/userinfo", headers={
        "Authorization": f"Bearer {second['access_token']}"}).status_code == 401
    assert _active(client, registered, other["access_token"])


def test_another_clients_token_is_not_revoked(client: TestClient, make_client,
                                              make_person) -> None:
    """RFC 7009 2.1: the request is refused and the client told; the token stays valid."""
    owner, stranger, person = make_client(), make_client(), make_person()
    tokens = _user_tokens(client, owner, person)
    for token in (tokens["refresh_token"], tokens["access_token"]):
        refused = client.post("/oauth2/revoke", data={"token": token},
                              auth=(stranger.client_id, stranger.secret))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert _active(client, owner, tokens["access_token"])
    assert client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(owner.client_id, owner.secret)).status_code == 200


@pytest.mark.parametrize("status", ["suspended", "graduated", "left"])
def test_a_live_session_ends_when_the_person_may_no_longer_sign_in(
        client: TestClient, make_client, make_person, db, status: str) -> None:
    """Suspending (or graduating ...) a person cuts their SSO session at the next app they
    open, and their access tokens at UserInfo: not only at their next password sign-in."""
    from directory.models import Person

    registered, person = make_client(), make_person()
    first = flow.code_flow(client, registered.client_id, person, scope="openid profile")
    tokens = _redeem(client, registered, first.params["code"]).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/oauth2/userinfo", headers=bearer).status_code == 200
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none")
    assert "code" in flow.Redirect(silent.headers["location"]).params  # the session works
    with db.session() as session:
        session.get(Person, session.get(Account, person.account_id).person_id).status = status
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none")
    assert flow.Redirect(silent.headers["location"]).params["error"] == "login_required"
    assert flow.is_login_page(flow.authorize(client, client_id=registered.client_id))
    cut = client.get("/oauth2/userinfo", headers=bearer)
    assert cut.status_code == 401 and cut.json()["error"] == "invalid_token"
    introspected = client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                               auth=(registered.client_id, registered.secret))
    assert introspected.json() == {"active": False}
    assert 'error="invalid_token"' in cut.headers["www-authenticate"]
    refreshed = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(registered.client_id, registered.secret))
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert _active(client, registered, tokens["access_token"]) is False  # and its access


def test_userinfo_profile_email_phone_claims(client: TestClient, make_client, make_person,
                                             db, settings) -> None:
    """Every claim of the profile, email and phone scopes, from the directory: the phone
    number decrypted for this answer only, the username the most specific login name."""
    from datetime import date

    from core.field_crypto import seal
    from directory.models import ADDRESS, PHONE, IdentifierKind, LoginIdentifier, Person

    registered, person = make_client(), make_person("s77", "pw-right-77", name="钱老师")
    with db.session() as session:
        account = session.get(Account, person.account_id)
        row = session.get(Person, account.person_id)
        row.gender, row.birth_date = "female", date(2012, 3, 4)
        seal(settings, PHONE, row, "13912345678")
        seal(settings, ADDRESS, row, "北京市海淀区学院路 1 号")
        session.add_all([
            LoginIdentifier(account_id=account.id, kind=IdentifierKind.email.value,
                            value="qian@example.edu.cn"),
            LoginIdentifier(account_id=account.id, kind=IdentifierKind.username.value,
                            value="qianls"),
        ])
    redirect = flow.code_flow(client, registered.client_id, person,
                              scope="openid profile email phone address")
    body = _redeem(client, registered, redirect.params["code"]).json()
    for method in ("GET", "POST"):
        userinfo = client.request(method, "/oauth2/userinfo", headers={
            "Authorization": f"Bearer {body['access_token']}"}).json()
        assert userinfo.pop("updated_at") > 1_700_000_000
        assert userinfo == {
            "sub": person.sub, "name": "钱老师", "family_name": "钱", "given_name": "老师",
            "gender": "female", "birthdate": "2012-03-04", "preferred_username": "qianls",
            "locale": "zh-CN", "email": "qian@example.edu.cn", "email_verified": False,
            "phone_number": "+8613912345678", "phone_number_verified": False,
            "address": {"formatted": "北京市海淀区学院路 1 号"},
        }


def test_userinfo_claims_by_scope_only(client: TestClient, make_client, make_person) -> None:
    """A token with the openid scope alone gives ``sub`` and nothing else."""
    registered, person = make_client(), make_person("s78", "pw-right-78")
    redirect = flow.code_flow(client, registered.client_id, person, scope="openid")
    body = _redeem(client, registered, redirect.params["code"]).json()
    userinfo = client.get("/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert userinfo == {"sub": person.sub}


def test_a_wrong_token_type_hint_does_not_stop_the_search(client: TestClient, make_client,
                                                          make_person) -> None:
    """RFC 7009 2.1 and RFC 7662 2.1: the hint says where to look first, nothing more."""
    _registered, person, tokens, auth = _offline_tokens(client, make_client, make_person)
    access = client.post("/oauth2/introspect", data={
        "token": tokens["access_token"], "token_type_hint": "refresh_token"}, auth=auth).json()
    assert access["active"] is True and access["sub"] == person.sub
    refresh = client.post("/oauth2/introspect", data={
        "token": tokens["refresh_token"], "token_type_hint": "access_token"}, auth=auth).json()
    assert refresh["active"] is True
    revoked = client.post("/oauth2/revoke", data={
        "token": tokens["refresh_token"], "token_type_hint": "access_token"}, auth=auth)
    assert revoked.status_code == 200
    assert client.post("/oauth2/introspect", data={"token": tokens["refresh_token"]},
                       auth=auth).json() == {"active": False}
    refreshed = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth)
    assert refreshed.status_code == 400
    client.post("/oauth2/revoke", data={"token": tokens["access_token"],
                                        "token_type_hint": "refresh_token"}, auth=auth)
    assert client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                       auth=auth).json() == {"active": False}


@pytest.mark.parametrize(("scheme", "prefix", "attributes"), [
    ("https", "__Host-", {"httponly", "secure", "samesite=none", "path=/"}),
    ("http", "", {"httponly", "samesite=lax", "path=/"})])
def test_session_cookie_comes_with_cross_site_posts_over_https(app, make_client, make_person,
                                                               scheme: str, prefix: str,
                                                               attributes: set[str]) -> None:
    """Over https the SSO cookie is SameSite=None (an app may POST its authorization
    request from its own site), always HttpOnly; plain http keeps Lax. Over https the
    session, CSRF and pending-request cookies are ``__Host-`` cookies: no sibling host can
    plant them. The pending requests' cookie is SameSite=None over https too: a cross-site
    POST request adds to the other tabs' requests instead of replacing them."""
    browser = TestClient(app, base_url=f"{scheme}://127.0.0.1:8000")
    registered, person = make_client(), make_person()
    start = flow.authorize(browser, client_id=registered.client_id)
    csrf = next(h for h in start.headers.get_list("set-cookie")
                if h.startswith(f"{prefix}csrf="))
    assert ("secure" in csrf.lower()) == (scheme == "https") and "domain" not in csrf.lower()
    pending = next(h for h in start.headers.get_list("set-cookie")
                   if h.startswith(f"{prefix}idp_ia="))  # the pending request's, too
    assert ("secure" in pending.lower()) == (scheme == "https")
    assert ("samesite=none" if scheme == "https" else "samesite=lax") in pending.lower()
    signed_in = flow.login(browser, start, person.login, person.password)
    cookie = next(h for h in signed_in.headers.get_list("set-cookie")
                  if h.startswith(f"{prefix}idp_session="))
    found = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert attributes <= found and ("secure" in found) == (scheme == "https")
    assert "domain" not in cookie.lower()
    assert not any(part.startswith(("max-age", "expires")) for part in found)  # ends with
    # the browser: a shared classroom computer is signed out when it is closed
    silent = flow.authorize(browser, client_id=registered.client_id, prompt="none")
    assert "code" in flow.Redirect(silent.headers["location"]).params  # it is read back


def test_a_planted_plain_csrf_cookie_is_not_believed_over_https(app) -> None:
    """A sibling host can set a plain ``csrf`` cookie for the whole site; over https only
    ``__Host-csrf`` counts, which it cannot set."""
    attacker = TestClient(app, base_url="https://127.0.0.1:8000")
    page = attacker.get("/login")
    token, planted = flow.csrf_of(page.text), attacker.cookies.get("__Host-csrf")
    assert planted and "csrf" not in attacker.cookies  # only the __Host- name is set
    victim = TestClient(app, base_url="https://127.0.0.1:8000")
    victim.cookies.set("csrf", planted)
    forged = victim.post("/login", data={"csrf_token": token, "login": "x", "password": "y"})
    assert forged.status_code == 403


def test_prompt_consent_shows_the_consent_page_to_first_party_apps(
        client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(first_party=True), make_person()
    flow.code_flow(client, registered.client_id, person)  # signed in, no consent page
    again = flow.follow(client, flow.authorize(client, client_id=registered.client_id,
                                               prompt="consent"))
    assert again.headers["location"].startswith("/consent?ia=")


def test_platform_apps_default_to_sm2_id_tokens(client: TestClient, db, settings,
                                                make_person) -> None:
    """An app registered without id_token_signed_response_alg gets the platform default
    (SM2) in its metadata; a client record that names none signs RS256 (OIDC's default)."""
    from directory.apps import App, register_app

    callback = "https://app.example.edu.cn/callback"
    with db.session() as session:
        app, secret = register_app(session, settings, name="默认应用", first_party=True,
                                   metadata={"redirect_uris": [callback],
                                             "grant_types": ["authorization_code"],
                                             "scope": "openid profile"})
        client_id = app.client_id
        assert json.loads(app.metadata_json)["id_token_signed_response_alg"] == "SM2"
    person = make_person()

    def id_token_alg() -> str:
        code = flow.code_flow(client, client_id, person).params["code"]
        tokens = client.post("/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": callback},
            auth=(client_id, secret)).json()
        return pyjwt.get_unverified_header(tokens["id_token"])["alg"]

    assert id_token_alg() == "SM2"
    with db.session() as session:  # a record that names no algorithm
        row = session.scalar(select(App).where(App.client_id == client_id))
        metadata = json.loads(row.metadata_json)
        del metadata["id_token_signed_response_alg"]
        row.metadata_json = json.dumps(metadata)
    client.app.state.clients.forget(client_id)
    assert id_token_alg() == "RS256"


@pytest.mark.parametrize(("display", "touch"), [("touch", True), ("page", False),
                                                ("popup", False), ("wap", False)])
def test_display_touch_gives_larger_controls(client: TestClient, make_client,
                                             display: str, touch: bool) -> None:
    """display=touch marks the sign-in page for fingers; other values get the page."""
    page = flow.authorize(client, client_id=make_client().client_id, display=display,
                          claims_locales="en zh-CN")
    assert page.status_code == 200 and ('<body class="touch">' in page.text) == touch


def test_a_code_redeemed_again_while_its_tokens_are_issued(client: TestClient, make_client,
                                                           make_person, monkeypatch) -> None:
    """The second redemption lands between the first one's take and its tokens: both
    answer invalid_grant and the tokens the first issued are revoked (RFC 6749 4.1.2)."""
    from idp.oidc import codes
    from idp.oidc.tokens import token_key

    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person,
                          scope="openid offline_access").params["code"]
    issued_bodies: list[dict] = []
    original = codes.issue_tokens

    def issue_then_second_redemption(request, client_, grant, **kwargs):
        issued = original(request, client_, grant, **kwargs)
        issued_bodies.append(issued.body)
        codes._refuse_reuse(request, token_key(code), client_)  # a second redemption
        return issued

    monkeypatch.setattr(codes, "issue_tokens", issue_then_second_redemption)
    first = _redeem(client, registered, code)
    assert first.status_code == 400 and first.json()["error"] == "invalid_grant"
    tokens, auth = issued_bodies[0], (registered.client_id, registered.secret)
    assert client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                       auth=auth).json() == {"active": False}
    refreshed = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=auth)
    assert refreshed.status_code == 400


def test_prompt_select_account_continues_or_switches(client: TestClient, make_client,
                                                     make_person) -> None:
    """prompt=select_account asks which account: the signed-in one, or another, which
    signs in on the login page and becomes the browser's session."""
    registered = make_client()
    alice = make_person("sa7", "pw-a-7", name="安同学")
    bob = make_person("sb7", "pw-b-7", name="鲍同学")
    flow.code_flow(client, registered.client_id, alice)

    def choose(choice: str):
        asked = flow.follow(client, flow.authorize(client, client_id=registered.client_id,
                                                   prompt="select_account"))
        assert asked.headers["location"].startswith("/select-account?ia=")
        page = client.get(asked.headers["location"])
        assert page.status_code == 200 and "安同学" in page.text
        return client.post("/select-account", data={
            "csrf_token": flow.csrf_of(page.text), "ia": flow.ia_of(page), "choice": choice},
            follow_redirects=False)

    def sub_of(response) -> str:
        code = flow.Redirect(flow.follow(client, response).headers["location"]).params["code"]
        return _sm2_claims(client, _redeem(client, registered, code).json()["id_token"])["sub"]

    assert sub_of(choose("current")) == alice.sub
    other = choose("other")
    assert other.headers["location"].startswith("/login?ia=")
    login_page = client.get(other.headers["location"])
    signed_in = client.post("/login", data={
        "csrf_token": flow.csrf_of(login_page.text), "ia": flow.ia_of(login_page),
        "login": bob.login, "password": bob.password}, follow_redirects=False)
    assert sub_of(signed_in) == bob.sub
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none")
    code = flow.Redirect(silent.headers["location"]).params["code"]
    assert _sm2_claims(client, _redeem(client, registered, code).json()["id_token"])[
        "sub"] == bob.sub  # the browser's session is now bob's


def test_token_endpoint_reads_empty_parameters_as_omitted(client: TestClient, make_client,
                                                          make_person) -> None:
    """RFC 6749 3.1: a refresh with ``scope=`` keeps the original scope (RFC 6749 6)."""
    registered, person = make_client(), make_person()
    tokens = _user_tokens(client, registered, person)
    refreshed = client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": ""},
        auth=(registered.client_id, registered.secret)).json()
    assert refreshed["scope"] == tokens["scope"] and "id_token" in refreshed
    machine = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                 "scope": ""},
                          auth=(registered.client_id, registered.secret)).json()
    assert machine["scope"] == "api.read api.write"


def test_media_types_are_case_insensitive(client: TestClient, make_client,
                                          make_person) -> None:
    registered, person = make_client(), make_person()
    form = {"Content-Type": "Application/X-WWW-Form-Urlencoded"}
    answer = client.post("/oauth2/token", content="grant_type=client_credentials",
                         headers=form, auth=(registered.client_id, registered.secret))
    assert answer.status_code == 200 and answer.json()["access_token"]
    token = _user_tokens(client, registered, person)["access_token"]
    claims = client.post("/oauth2/userinfo", content=f"access_token={token}", headers=form)
    assert claims.status_code == 200 and claims.json()["sub"] == person.sub


def test_a_missing_redirect_uri_is_invalid_request_and_spends_nothing(
        client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    missing = client.post("/oauth2/token", data={"grant_type": "authorization_code",
                                                 "code": code},
                          auth=(registered.client_id, registered.secret))
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert _redeem(client, registered, code).status_code == 200  # the code is still good


def test_consent_and_account_choice_belong_to_the_account_that_gave_them(
        client: TestClient, make_client, make_person, store) -> None:
    """Consent given (or an account chosen) in a pending request does not carry over to
    another account that signs in in the same browser before the request resumes."""
    from idp import sessions

    registered = make_client(first_party=False)
    alice, bob = make_person("sa1", "pw-a-1"), make_person("sb1", "pw-b-1")
    response = flow.authorize(client, client_id=registered.client_id, scope="openid profile",
                              prompt="select_account")
    response = flow.follow(client, flow.login(client, response, alice.login, alice.password))
    consent_url = response.headers["location"]
    assert consent_url.startswith("/consent?ia=")
    ia = consent_url.split("ia=")[1]
    page = client.get(consent_url)
    client.post("/consent", data={"csrf_token": flow.csrf_of(page.text), "ia": ia,
                                  "decision": "allow"}, follow_redirects=False)
    token, _ = sessions.start(store, account_id=bob.account_id, sub=bob.sub, amr=["pwd"],
                              acr="urn:edu:acr:sfa")
    client.cookies.delete(sessions.COOKIE)
    client.cookies.set(sessions.COOKIE, token)  # bob signs in elsewhere in this browser
    resumed = client.get(f"/oauth2/authorize/resume?ia={ia}", follow_redirects=False)
    assert resumed.headers["location"].startswith("/select-account?ia=")
    choice = client.get(resumed.headers["location"])
    chosen = client.post("/select-account", data={"csrf_token": flow.csrf_of(choice.text),
                                                  "ia": ia, "choice": "current"},
                         follow_redirects=False)
    asked = flow.follow(client, chosen)
    assert asked.headers["location"].startswith("/consent?ia=")  # bob's own consent


def test_two_tabs_sign_in_to_two_apps(client: TestClient, make_client, make_person) -> None:
    """A portal opens two apps at once: each tab's pending request stays usable, and
    signing in in one tab lets the other carry on without a second sign-in."""
    first_app, second_app, person = make_client(), make_client(), make_person()
    tab1 = flow.authorize(client, client_id=first_app.client_id)
    tab2 = flow.authorize(client, client_id=second_app.client_id)
    ia1, ia2 = flow.ia_of(tab1), flow.ia_of(tab2)
    assert ia1 != ia2
    done1 = flow.follow(client, flow.login(client, tab1, person.login, person.password))
    assert "code" in flow.Redirect(done1.headers["location"]).params
    done2 = flow.follow(client, client.get(f"/oauth2/authorize/resume?ia={ia2}",
                                           follow_redirects=False))
    redirect = flow.Redirect(done2.headers["location"])
    assert "code" in redirect.params and "idp_ia" not in client.cookies


def test_a_cross_site_post_request_joins_the_other_tabs_over_https(app, make_client,
                                                                  make_person) -> None:
    """A browser sends only ``SameSite=None`` cookies with a cross-site ``POST`` (an app's
    form posting its authorization request): over https the pending requests' cookie is
    one of them, so the new request joins the open tab's instead of replacing it, and both
    tabs' sign-ins go through."""
    browser = TestClient(app, base_url="https://127.0.0.1:8000")
    first_app, second_app, person = make_client(), make_client(), make_person()
    tab1 = flow.authorize(browser, client_id=first_app.client_id)
    cross_site = {name: value for name, value in browser.cookies.items()
                  if _same_site(tab1, name) == "none"}  # what the browser sends along
    assert "__Host-idp_ia" in cross_site and "__Host-csrf" not in cross_site
    posted = TestClient(app, base_url="https://127.0.0.1:8000", cookies=cross_site).post(
        "/oauth2/authorize", data={
            "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
            "client_id": second_app.client_id, "state": "st-2", "nonce": "n-2"},
        follow_redirects=False)
    assert flow.is_login_page(posted)
    browser.cookies.delete("__Host-idp_ia")  # the answer's cookie lands in the browser
    browser.cookies.set("__Host-idp_ia", posted.cookies["__Host-idp_ia"])
    ia1 = flow.ia_of(tab1)
    assert browser.cookies["__Host-idp_ia"].split(".")[0] == ia1  # tab 1's is still there
    done1 = flow.follow(browser, flow.login(browser, tab1, person.login, person.password))
    assert "code" in flow.Redirect(done1.headers["location"]).params
    ia2 = posted.headers["location"].split("ia=")[1]
    done2 = flow.follow(browser, browser.get(f"/oauth2/authorize/resume?ia={ia2}",
                                             follow_redirects=False))
    assert flow.Redirect(done2.headers["location"]).params["state"] == "st-2"


def _same_site(response, name: str) -> str:
    header = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith(name + "="))
    return next(part.split("=")[1].strip().lower() for part in header.split(";")
                if part.strip().lower().startswith("samesite="))


def test_a_browser_keeps_its_five_latest_pending_requests(client: TestClient, make_client,
                                                          make_person) -> None:
    registered, person = make_client(), make_person()
    tabs = [flow.ia_of(flow.authorize(client, client_id=registered.client_id))
            for _ in range(6)]
    assert client.cookies["idp_ia"].split(".") == tabs[1:]  # the oldest tab's is dropped
    page = client.get(f"/login?ia={tabs[0]}")
    assert page.status_code == 400  # expired for this browser
    done = flow.follow(client, flow.login(client, client.get(f"/login?ia={tabs[5]}"),
                                          person.login, person.password))
    assert "code" in flow.Redirect(done.headers["location"]).params
    assert client.cookies["idp_ia"].split(".") == tabs[1:5]  # the answered one leaves


def _refresh(client: TestClient, auth, token: str, **extra: str):
    return client.post("/oauth2/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": token, **extra})


def test_a_refused_refresh_leaves_the_token_usable(client: TestClient, make_client,
                                                   make_person) -> None:
    """RFC 6749 6: the old refresh token goes only once a new one is issued; a refused
    scope is no reuse, and the retry without it works (it used to revoke the family)."""
    _registered, person, tokens, auth = _offline_tokens(client, make_client, make_person)
    wider = _refresh(client, auth, tokens["refresh_token"], scope="openid profile")
    assert wider.json()["error"] == "invalid_scope"
    retry = _refresh(client, auth, tokens["refresh_token"])
    assert retry.status_code == 200, retry.text
    userinfo = client.get("/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == person.sub


def test_a_refresh_reads_its_scope_as_a_set(client: TestClient, make_client,
                                             make_person) -> None:
    _registered, _person, tokens, auth = _offline_tokens(client, make_client, make_person)
    malformed = _refresh(client, auth, tokens["refresh_token"], scope="openid\tprofile")
    assert malformed.json()["error"] == "invalid_scope"
    twice = _refresh(client, auth, tokens["refresh_token"], scope="openid openid  openid")
    assert twice.status_code == 200 and twice.json()["scope"] == "openid"


def test_a_refresh_that_fails_to_issue_leaves_the_token_usable(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    """A store or database failure while issuing: nothing was issued, nothing is spent."""
    from idp.oidc import grants

    _registered, _person, tokens, auth = _offline_tokens(client, make_client, make_person)
    real = grants.issue_tokens

    def broken(*args, **kwargs):
        raise RuntimeError("the store went away")

    monkeypatch.setattr(grants, "issue_tokens", broken)
    with pytest.raises(RuntimeError):
        _refresh(client, auth, tokens["refresh_token"])
    monkeypatch.setattr(grants, "issue_tokens", real)
    assert _refresh(client, auth, tokens["refresh_token"]).status_code == 200


def test_introspection_of_a_refresh_token_follows_the_account(
        client: TestClient, make_client, make_person, db) -> None:
    """A disabled account's refresh token is inactive at introspection, as the token
    endpoint would refuse it (it said active until a refresh was tried)."""
    _registered, person, tokens, auth = _offline_tokens(client, make_client, make_person)
    ask = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    active = client.post("/oauth2/introspect", auth=auth, data=ask).json()
    assert active["active"] is True and active["sub"] == person.sub
    assert active["scope"] == "openid offline_access"
    with db.session() as session:
        session.execute(update(Account).where(Account.id == person.account_id).values(
            disabled=True))
    assert client.post("/oauth2/introspect", auth=auth, data=ask).json() == {"active": False}


def test_a_protected_resource_introspects_every_apps_access_tokens(
        client: TestClient, make_client, make_person) -> None:
    """RFC 7662 2.1: the API (or gateway) the app calls asks about the app's token with
    its own credentials; an ordinary client still learns only about its own tokens."""
    app_client, person = make_client(), make_person()
    api = make_client(grant_types=["client_credentials"], protected_resource=True)
    other = make_client(grant_types=["client_credentials"])
    code = flow.code_flow(client, app_client.client_id, person).params["code"]
    tokens = _redeem(client, app_client, code).json()
    seen = client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                       auth=(api.client_id, api.secret)).json()
    assert seen["active"] is True and seen["client_id"] == app_client.client_id
    assert seen["sub"] == person.sub
    assert client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                       auth=(other.client_id, other.secret)).json() == {"active": False}
    refresh = client.post("/oauth2/introspect", data={"token": tokens["refresh_token"]},
                          auth=(api.client_id, api.secret)).json()
    assert refresh == {"active": False}  # refresh tokens go to no resource server


def test_a_revocation_during_a_refresh_sticks(client: TestClient, make_client, make_person,
                                              monkeypatch) -> None:
    """Revoked between the refresh's checks and its claim: the refresh fails."""
    from idp.oidc import refresh_tokens

    _registered, _person, tokens, auth = _offline_tokens(client, make_client, make_person)
    real = refresh_tokens.account_may_continue

    def revoked_meanwhile(db, account_id):
        client.post("/oauth2/revoke", auth=auth, data={"token": tokens["refresh_token"]})
        return real(db, account_id)

    monkeypatch.setattr(refresh_tokens, "account_may_continue", revoked_meanwhile)
    refused = _refresh(client, auth, tokens["refresh_token"])
    assert refused.json()["error"] == "invalid_grant", refused.text


def test_a_family_revoked_while_the_new_token_is_made_takes_it_along(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    """The family's revocation lands after the claim, before the new row exists: the
    new token (and its access token) must not survive it."""
    from idp.oidc import grants, refresh_tokens

    _registered, _person, tokens, auth = _offline_tokens(client, make_client, make_person)
    real = grants.id_token_claims
    row = refresh_tokens.find(client.app.state.db, client.app.state.settings,
                              tokens["refresh_token"])

    def revoked_meanwhile(*args, **kwargs):
        refresh_tokens.revoke_family(client.app.state.db, client.app.state.store, row.family)
        return real(*args, **kwargs)

    monkeypatch.setattr(grants, "id_token_claims", revoked_meanwhile)
    refused = _refresh(client, auth, tokens["refresh_token"])
    assert refused.json()["error"] == "invalid_grant", refused.text


def test_an_access_token_is_no_id_token_hint(client: TestClient, make_client,
                                             make_person) -> None:
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    tokens = _redeem(client, registered, code).json()
    answer = flow.authorize(client, client_id=registered.client_id,
                            id_token_hint=tokens["access_token"])
    assert flow.Redirect(answer.headers["location"]).params["error"] == "invalid_request"
    assert "code" in flow.Redirect(flow.authorize(
        client, client_id=registered.client_id,
        id_token_hint=tokens["id_token"]).headers["location"]).params


def test_a_suspended_apps_tokens_stop_working(client: TestClient, make_client, make_person,
                                              db) -> None:
    """UserInfo and introspection (also a protected resource's) refuse them once the
    registry sees the suspension (30 s per process; forgotten here at once)."""
    from directory.apps import App

    registered, person = make_client(), make_person()
    api = make_client(grant_types=["client_credentials"], protected_resource=True)
    tokens = _redeem(client, registered, flow.code_flow(
        client, registered.client_id, person).params["code"]).json()
    with db.session() as session:
        session.execute(update(App).where(App.client_id == registered.client_id).values(
            status="suspended"))
    client.app.state.clients.forget(registered.client_id)
    userinfo = client.get("/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401
    assert client.post("/oauth2/introspect", data={"token": tokens["access_token"]},
                       auth=(api.client_id, api.secret)).json() == {"active": False}


def test_an_id_token_hint_is_an_id_token_of_ours(app) -> None:
    """Signature, ``typ: JWT``, our issuer and an ``exp`` (its time is not checked): our
    access tokens, logout tokens and signed UserInfo answers are no hints."""
    from idp.oidc.id_token_hint import hint_claims

    keys, issuer = app.state.keys, app.state.settings.issuer
    base = {"iss": issuer, "sub": "s-1", "aud": "app-1"}
    assert hint_claims(keys, keys.sign({**base, "exp": 1}, "SM2", typ="JWT"), issuer)
    for token in (keys.sign(base, "SM2", typ="JWT"),  # no exp
                  keys.sign({**base, "exp": "soon"}, "SM2", typ="JWT"),
                  keys.sign({**base, "exp": 1}, "SM2"),  # no typ
                  keys.sign({**base, "exp": 1}, "SM2", typ="at+jwt"),
                  keys.sign({**base, "exp": 1, "iss": "https://other"}, "SM2", typ="JWT")):
        assert hint_claims(keys, token, issuer) is None


def test_a_code_survives_an_outage_of_its_redemption(client: TestClient, make_client,
                                                     make_person, monkeypatch) -> None:
    """The database fails while the tokens are made: 503, and the app's retry after the
    outage gets the tokens (the code was given back), unless someone else tried the code
    meanwhile."""
    from sqlalchemy.exc import OperationalError

    from idp.oidc import codes

    real = codes.issue_tokens

    def outage(*args, **kwargs):
        raise OperationalError("INSERT", None, ConnectionError("server closed the connection"))

    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    monkeypatch.setattr(codes, "issue_tokens", outage)
    down = _redeem(client, registered, code)
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["error"] == "temporarily_unavailable"  # what OAuth libraries read
    monkeypatch.setattr(codes, "issue_tokens", real)
    retried = _redeem(client, registered, code)
    assert retried.status_code == 200 and "id_token" in retried.json()
    assert _redeem(client, registered, code).json()["error"] == "invalid_grant"  # once

    other = flow.code_flow(client, registered.client_id, person).params["code"]

    def outage_while_a_copy_is_tried(*args, **kwargs):
        assert _redeem(client, registered, other).json()["error"] == "invalid_grant"
        return outage()

    monkeypatch.setattr(codes, "issue_tokens", outage_while_a_copy_is_tried)
    assert _redeem(client, registered, other).status_code == 503
    monkeypatch.setattr(codes, "issue_tokens", real)
    assert _redeem(client, registered, other).json()["error"] == "invalid_grant"  # not back


def test_a_copy_tried_while_the_code_is_given_back_keeps_it_spent(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    from idp.oidc import codes

    def outage(*args, **kwargs):
        raise OperationalError("INSERT", None, ConnectionError("server closed the connection"))

    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    store = client.app.state.store
    real_give_back, tried = store.give_back, []

    def a_copy_first(*args, **kwargs):
        tried.append(_redeem(client, registered, code).json()["error"])
        return real_give_back(*args, **kwargs)

    monkeypatch.setattr(codes, "issue_tokens", outage)
    monkeypatch.setattr(store, "give_back", a_copy_first)
    assert _redeem(client, registered, code).status_code == 503
    monkeypatch.undo()
    assert tried == ["invalid_grant"]
    assert _redeem(client, registered, code).json().get("error") == "invalid_grant"


def test_a_read_only_database_gives_the_code_back_too(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    """A failover's standby (SQLSTATE 25006) is the same outage as an unreachable server."""
    from sqlalchemy.exc import InternalError

    from idp.oidc import codes

    class ReadOnlySqlTransaction(Exception):
        sqlstate = "25006"

    def read_only(*args, **kwargs):
        raise InternalError("INSERT", None, ReadOnlySqlTransaction("read-only transaction"))

    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    real = codes.issue_tokens
    monkeypatch.setattr(codes, "issue_tokens", read_only)
    down = _redeem(client, registered, code)
    assert down.status_code == 503 and down.json()["error"] == "temporarily_unavailable"
    monkeypatch.setattr(codes, "issue_tokens", real)
    assert _redeem(client, registered, code).status_code == 200


def test_the_token_endpoint_answers_oauth_json_whatever_the_accept(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    """A back channel: java.net.HttpURLConnection's default Accept asks for text/html
    first, and an outage there is still OAuth JSON."""
    from sqlalchemy.exc import OperationalError

    from idp.oidc import codes

    def outage(*args, **kwargs):
        raise OperationalError("INSERT", None, ConnectionError("server closed the connection"))

    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    monkeypatch.setattr(codes, "issue_tokens", outage)
    down = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(registered.client_id, registered.secret),
        headers={"Accept": "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"})
    assert down.status_code == 503 and down.headers["content-type"].startswith(
        "application/json")
    assert down.json()["error"] == "temporarily_unavailable"
