"""Resource indicators (RFC 8707): an app names the API a token is for with ``resource``;
the access token's ``aud`` is then that API, one API per token, never one the
authorization did not name; UserInfo refuses an API's token, and an API that registered
its identifiers introspects only the tokens for it (and the issuer's)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import jwt as pyjwt
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

ISSUER = "http://127.0.0.1:8000"
GRADES = "https://grades.example.edu.cn/api"
TIMETABLE = "urn:edu:timetable"


def _form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A urlencoded body with repeated parameters (httpx's ``data`` takes a dict)."""
    return {"content": urlencode(pairs),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


def _claims(token: str) -> dict[str, Any]:
    return pyjwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def apis(make_client):
    """Two APIs (protected resources with identifiers) and a gateway (without)."""
    made = {name: make_client(protected_resource=True, resource_identifiers=identifiers,
                              grant_types=["client_credentials"], redirect_uris=[])
            for name, identifiers in (("grades", [GRADES]), ("timetable", [TIMETABLE]))}
    made["gateway"] = make_client(protected_resource=True, grant_types=["client_credentials"],
                                  redirect_uris=[])
    return made


def _cc(client: TestClient, app, *resources: str):
    return client.post("/oauth2/token", auth=(app.client_id, app.secret),
                       **_form([("grant_type", "client_credentials"),
                                *(("resource", r) for r in resources)]))


def _signed_in(client: TestClient, app, person, *resources: str, **extra: str):
    """The code flow with ``resources`` (repeated parameters); the redirect's params."""
    verifier, challenge = flow.pkce_pair()
    query = [("response_type", "code"), ("client_id", app.client_id),
             ("redirect_uri", REDIRECT_URI), ("scope", "openid profile offline_access"),
             ("state", "st-r"), ("nonce", "n-r"), ("code_challenge", challenge),
             ("code_challenge_method", "S256"), *(("resource", r) for r in resources),
             *extra.items()]
    response = client.get("/oauth2/authorize", params=query, follow_redirects=False)
    if flow.is_login_page(response):
        response = flow.login(client, response, person.login, person.password)
    return flow.Redirect(flow.follow(client, response).headers["location"]).params, verifier


def _redeem(client: TestClient, app, params: dict[str, str], verifier: str, *resources: str):
    return client.post("/oauth2/token", auth=(app.client_id, app.secret), **_form([
        ("grant_type", "authorization_code"), ("code", params["code"]),
        ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier),
        *(("resource", r) for r in resources)]))


def _refresh(client: TestClient, app, token: str, *resources: str):
    return client.post("/oauth2/token", auth=(app.client_id, app.secret), **_form([
        ("grant_type", "refresh_token"), ("refresh_token", token),
        *(("resource", r) for r in resources)]))


def test_client_credentials_for_an_api(client: TestClient, make_client, apis) -> None:
    app = make_client()
    answer = _cc(client, app, GRADES)
    assert answer.status_code == 200, answer.text
    assert _claims(answer.json()["access_token"])["aud"] == GRADES
    assert _claims(_cc(client, app).json()["access_token"])["aud"] == ISSUER
    for resources, why in [((GRADES, TIMETABLE), "one resource per access token"),
                           (("https://unknown.example/api",), "not a registered API"),
                           (("/relative",), "absolute URI"),
                           (("https://grades.example.edu.cn/api#x",), "absolute URI")]:
        refused = _cc(client, app, *resources)
        assert refused.status_code == 400, resources
        assert refused.json()["error"] == "invalid_target"
        assert why in refused.json()["error_description"]


def test_a_code_for_one_api(client: TestClient, make_client, make_person, apis) -> None:
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person, GRADES)
    tokens = _redeem(client, app, params, verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert _claims(body["access_token"])["aud"] == GRADES
    assert _claims(body["id_token"])["aud"] == app.client_id  # the ID token is the app's
    # UserInfo is not the API the token is for
    refused = client.get("/oauth2/userinfo",
                         headers={"Authorization": f"Bearer {body['access_token']}"})
    assert refused.status_code == 401
    assert "another resource" in refused.headers["www-authenticate"]
    # a refresh cannot ask for an API the authorization did not name, and stays usable
    wider = _refresh(client, app, body["refresh_token"], TIMETABLE)
    assert wider.json()["error"] == "invalid_target"
    again = _refresh(client, app, body["refresh_token"])
    assert again.status_code == 200, again.text
    assert _claims(again.json()["access_token"])["aud"] == GRADES
    # the rotated refresh token keeps the grant's API
    last = _refresh(client, app, again.json()["refresh_token"], GRADES)
    assert _claims(last.json()["access_token"])["aud"] == GRADES


def test_a_code_for_two_apis_gives_a_token_for_each(client: TestClient, make_client,
                                                    make_person, apis) -> None:
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person, GRADES, TIMETABLE)
    tokens = _redeem(client, app, params, verifier, TIMETABLE).json()
    assert _claims(tokens["access_token"])["aud"] == TIMETABLE
    grades = _refresh(client, app, tokens["refresh_token"], GRADES).json()
    assert _claims(grades["access_token"])["aud"] == GRADES
    unnamed = _refresh(client, app, grades["refresh_token"])
    assert unnamed.json()["error"] == "invalid_target"
    assert "several resources" in unnamed.json()["error_description"]


def test_a_token_request_cannot_name_an_api_the_authorization_did_not(
        client: TestClient, make_client, make_person, apis) -> None:
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person)
    refused = _redeem(client, app, params, verifier, GRADES)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_target"
    params, verifier = _signed_in(client, app, person)  # without: a token for UserInfo
    token = _redeem(client, app, params, verifier).json()["access_token"]
    assert _claims(token)["aud"] == ISSUER
    assert client.get("/oauth2/userinfo",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("resource", ["https://unknown.example/api", "not-absolute",
                                      GRADES + "?q=1"])
def test_the_authorization_endpoint_refuses_an_unknown_api(
        client: TestClient, make_client, make_person, apis, resource: str) -> None:
    app, person = make_client(), make_person()
    params, _ = _signed_in(client, app, person, resource)
    assert params["error"] == "invalid_target"
    assert params["state"] == "st-r" and params["iss"] == ISSUER
    assert "code" not in params


def test_an_api_introspects_only_the_tokens_for_it(client: TestClient, make_client,
                                                 apis) -> None:
    app = make_client()
    for_grades = _cc(client, app, GRADES).json()["access_token"]
    for_timetable = _cc(client, app, TIMETABLE).json()["access_token"]
    for_issuer = _cc(client, app).json()["access_token"]

    def active(api, token: str) -> bool:
        return client.post("/oauth2/introspect", data={"token": token},
                           auth=(api.client_id, api.secret)).json()["active"]

    seen = client.post("/oauth2/introspect", data={"token": for_grades},
                       auth=(apis["grades"].client_id, apis["grades"].secret)).json()
    assert seen["active"] is True and seen["aud"] == GRADES
    assert not active(apis["grades"], for_timetable)
    assert not active(apis["grades"], for_issuer)  # nor the issuer's (replayed at it)
    assert all(active(apis["gateway"], t) for t in (for_grades, for_timetable, for_issuer))
    assert active(app, for_timetable)  # an app learns about its own tokens


def test_resources_in_a_pushed_request_and_a_request_object(
        client: TestClient, make_client, make_person, apis) -> None:
    key = ECKey.generate_key("P-256", private=True)
    app = make_client(jwks={"keys": [{**key.as_dict(private=False), "kid": "k1"}]})
    person = make_person()
    verifier, challenge = flow.pkce_pair()
    pushed = client.post("/oauth2/par", auth=(app.client_id, app.secret), **_form([
        ("response_type", "code"), ("client_id", app.client_id),
        ("redirect_uri", REDIRECT_URI), ("scope", "openid"), ("code_challenge", challenge),
        ("code_challenge_method", "S256"), ("resource", GRADES), ("resource", TIMETABLE)]))
    assert pushed.status_code == 201, pushed.text
    redirect = flow.code_flow(client, app.client_id, person,
                              request_uri=pushed.json()["request_uri"])
    tokens = _redeem(client, app, redirect.params, verifier, GRADES).json()
    assert _claims(tokens["access_token"])["aud"] == GRADES
    assert _refresh(client, app, tokens["refresh_token"], TIMETABLE).status_code == 200

    now = int(time.time())
    verifier, challenge = flow.pkce_pair()
    signed = jwt.encode({"alg": "ES256", "kid": "k1", "typ": "oauth-authz-req+jwt"}, {
        "iss": app.client_id, "aud": ISSUER, "client_id": app.client_id, "exp": now + 300,
        "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
        "code_challenge": challenge, "code_challenge_method": "S256",
        "resource": TIMETABLE}, key, algorithms=["ES256"])
    redirect = flow.code_flow(client, app.client_id, person, request=signed)
    tokens = _redeem(client, app, redirect.params, verifier).json()
    assert _claims(tokens["access_token"])["aud"] == TIMETABLE
    bad = client.post("/oauth2/par", auth=(app.client_id, app.secret), data={
        "request": jwt.encode({"alg": "ES256", "kid": "k1"}, {
            "iss": app.client_id, "aud": ISSUER, "client_id": app.client_id,
            "exp": now + 300, "response_type": "code", "redirect_uri": REDIRECT_URI,
            "scope": "openid", "resource": {"x": 1}}, key, algorithms=["ES256"])})
    assert bad.json()["error"] == "invalid_request_object"


def test_a_suspended_api_gets_no_more_tokens(client: TestClient, make_client, db,
                                             apis) -> None:
    from directory.apps import AppStatus, find_app

    app = make_client()
    assert _cc(client, app, GRADES).status_code == 200
    with db.session() as session:
        find_app(session, apis["grades"].client_id).status = AppStatus.suspended.value
    client.app.state.resources.forget()
    assert _cc(client, app, GRADES).json()["error"] == "invalid_target"


@pytest.mark.parametrize(("metadata", "why"), [
    ({"resource_identifiers": [GRADES + "/x"]}, "need protected_resource"),
    ({"protected_resource": True, "resource_identifiers": ["relative/path"]}, "absolute URI"),
    ({"protected_resource": True, "resource_identifiers": [GRADES + "?v=1"]}, "absolute URI"),
    ({"protected_resource": True, "resource_identifiers": [GRADES + "#f"]}, "absolute URI"),
    ({"protected_resource": True, "resource_identifiers": ["https://a b"]}, "absolute URI"),
    ({"protected_resource": True, "resource_identifiers": ["https:///nohost"]}, "absolute URI"),
    ({"protected_resource": True, "resource_identifiers": [TIMETABLE, TIMETABLE]}, "each once"),
    ({"protected_resource": True, "resource_identifiers": "urn:x"}, "list of strings"),
])
def test_registration_checks_the_identifiers(make_client, metadata: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        make_client(**metadata)


def test_an_identifier_names_one_api_and_never_the_issuer(make_client, apis) -> None:
    with pytest.raises(ValueError, match="another app's"):
        make_client(protected_resource=True, resource_identifiers=[GRADES])
    with pytest.raises(ValueError, match="the issuer"):
        make_client(protected_resource=True, resource_identifiers=[ISSUER + "/"])


@pytest.mark.parametrize("identifier", [
    ISSUER, "HTTP://127.0.0.1:8000/", "http://127.0.0.1:8000:", "http://127.0.0.1:8000/.",
    "https://GRADES.example.edu.cn/api", "https://grades.example.edu.cn:443/api",
    "https://grades.example.edu.cn/%61pi", "https://grades.example.edu.cn/./api",
    "urn:EDU:timetable"])
def test_an_identifier_is_written_in_its_normal_form(make_client, apis,
                                                     identifier: str) -> None:
    """RFC 3986 6.2.2, 6.2.3: spellings of the issuer or of another API's identifier that
    a resource server comparing URIs would take as the same are refused."""
    with pytest.raises(ValueError, match=r"normal form|absolute URI"):
        make_client(protected_resource=True, resource_identifiers=[identifier])


@pytest.mark.parametrize("identifier", ["urn:é", 'urn:a"b', "urn:a<b>", "urn:a%zz",
                                        "https://a\\b/", "http://x:99999999/",
                                        "http://[::1]:abc/", "urn:a{b}|^`"])
def test_an_identifier_is_an_rfc3986_uri(make_client, identifier: str) -> None:
    with pytest.raises(ValueError, match="absolute URI"):
        make_client(protected_resource=True, resource_identifiers=[identifier])


@pytest.mark.parametrize("asked", [(GRADES, TIMETABLE), ("https://unknown.example/api",),
                                   ("not absolute",)])
def test_a_mistaken_resource_spends_no_code(client: TestClient, make_client, make_person,
                                            apis, asked) -> None:
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person, GRADES, TIMETABLE)
    refused = _redeem(client, app, params, verifier, *asked)
    assert refused.json()["error"] == "invalid_target"
    retried = _redeem(client, app, params, verifier, GRADES)
    assert retried.status_code == 200, retried.text


def test_consent_names_the_apis_and_covers_them(client: TestClient, make_client, make_person,
                                                db, apis) -> None:
    """A third-party app: the consent page names the APIs by their apps' names; the
    remembered consent covers those APIs, not another one."""
    from directory.apps import find_app

    with db.session() as session:
        find_app(session, apis["grades"].client_id).name = "成绩服务"
    app, person = make_client(first_party=False), make_person()
    query = [("response_type", "code"), ("client_id", app.client_id),
             ("redirect_uri", REDIRECT_URI), ("scope", "openid profile"), ("state", "s"),
             ("resource", GRADES)]
    asked = client.get("/oauth2/authorize", params=query, follow_redirects=False)
    to_consent = flow.follow(client, flow.login(client, asked, person.login, person.password))
    assert to_consent.headers["location"].startswith("/consent")
    page = client.get(to_consent.headers["location"])
    assert "并用这些权限访问以下服务" in page.text and "<li data-api>成绩服务</li>" in page.text
    allowed = flow.follow(client, client.post("/consent", data={
        "csrf_token": flow.csrf_of(page.text), "ia": flow.ia_of(page), "decision": "allow"},
        follow_redirects=False))
    assert "code" in flow.Redirect(allowed.headers["location"]).params

    def silently(*resources: str) -> dict[str, str]:
        answer = client.get("/oauth2/authorize", follow_redirects=False, params=[
            *(q for q in query if q[0] != "resource"), ("prompt", "none"),
            *(("resource", r) for r in resources)])
        return flow.Redirect(answer.headers["location"]).params

    assert "code" in silently(GRADES)
    assert "code" in silently()  # the scopes alone were allowed too
    assert silently(TIMETABLE)["error"] == "consent_required"
    assert silently(GRADES, TIMETABLE)["error"] == "consent_required"
    # the person's list of allowed apps names the service
    listed = client.get("/account/apps")
    assert "用于以下服务：成绩服务" in listed.text and GRADES not in listed.text


def test_a_grant_from_a_newer_version_is_refused_not_used(client: TestClient, make_client,
                                                          make_person, db, settings) -> None:
    """A rollback: a refresh token whose grant names a member this version does not know
    (a binding, a limit) is invalid_grant, never a 500 and never used without it."""
    from sqlalchemy import select

    from idp.oidc.refresh_tokens import RefreshToken
    from idp.oidc.tokens import Grant

    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person)
    refresh = _redeem(client, app, params, verifier).json()["refresh_token"]
    with db.session() as session:
        row = session.scalars(select(RefreshToken).where(
            RefreshToken.client_id == app.client_id)).one()
        row.grant_json = row.grant_json[:-1] + ', "mtls_thumbprint": "x"}'
    refused = _refresh(client, app, refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "another version" in refused.json()["error_description"]
    with pytest.raises(ValueError):
        Grant.from_json({"client_id": "a", "scope": "openid", "later": 1})
    assert Grant.from_json(Grant(client_id="a", scope="s", resources=(GRADES,),
                                 resource_owners=("api_g",)).to_json()).resources == (GRADES,)


def test_an_api_may_name_the_apps_that_may_ask_for_its_tokens(
        client: TestClient, make_client, make_person, db) -> None:
    """``resource_clients``: only those apps get tokens for the API, at the token endpoint
    and the authorization endpoint; an app struck off later cannot refresh for it."""
    import json

    from directory.apps import find_app

    allowed, other, person = make_client(), make_client(), make_person()
    api = make_client(protected_resource=True, resource_identifiers=[GRADES],
                      resource_clients=[allowed.client_id],
                      grant_types=["client_credentials"], redirect_uris=[])
    assert _claims(_cc(client, allowed, GRADES).json()["access_token"])["aud"] == GRADES
    refused = _cc(client, other, GRADES).json()
    assert refused["error"] == "invalid_target" and "may not ask" in refused[
        "error_description"]
    params, _ = _signed_in(client, other, person, GRADES)
    assert params["error"] == "invalid_target"
    params, verifier = _signed_in(client, allowed, person, GRADES)
    refresh = _redeem(client, allowed, params, verifier).json()["refresh_token"]
    with db.session() as session:
        row = find_app(session, api.client_id)
        row.metadata_json = json.dumps({**json.loads(row.metadata_json),
                                        "resource_clients": [other.client_id]})
    client.app.state.resources.forget()
    assert _refresh(client, allowed, refresh).json()["error"] == "invalid_target"


@pytest.mark.parametrize(("metadata", "why"), [
    ({"resource_clients": ["app_x"]}, "need resource_identifiers"),
    ({"protected_resource": True, "resource_identifiers": [GRADES],
      "resource_clients": ["bad id!"]}, "client_ids"),
    ({"protected_resource": True, "resource_identifiers": [GRADES],
      "resource_clients": ["app_x\n"]}, "client_ids"),
])
def test_registration_checks_the_apps_that_may_ask(make_client, metadata: dict,
                                                   why: str) -> None:
    with pytest.raises(ValueError, match=why):
        make_client(**metadata)


def test_a_withdrawn_consent_keeps_no_api(db, store, make_client, make_person) -> None:
    """Allowing again after withdrawing starts from nothing, APIs included."""
    from idp.oidc import consent

    app, person = make_client(first_party=False), make_person()
    consent.grant(db, person.account_id, app.client_id, "openid api.read", {GRADES: "api_g"})
    assert consent.covers(db, person.account_id, app.client_id, "api.read", {GRADES: "api_g"})
    assert not consent.covers(db, person.account_id, app.client_id, "api.read",
                              {TIMETABLE: "api_t"})
    assert not consent.covers(db, person.account_id, app.client_id, "api.read",
                              {GRADES: "api_other"})  # the identifier changed hands
    consent.revoke(db, store, person.account_id, app.client_id)
    consent.grant(db, person.account_id, app.client_id, "openid api.read")
    assert consent.covers(db, person.account_id, app.client_id, "api.read")
    assert not consent.covers(db, person.account_id, app.client_id, "api.read",
                              {GRADES: "api_g"})


def _cli_env(monkeypatch, settings, database_url: str, **extra: str) -> None:
    """The CLI's environment, in this process: the tests' database, and ``extra``."""
    import os

    from tests.conftest import TEST_MASTER_KEY

    for name in [n for n in os.environ if n.startswith("IDP_")]:
        monkeypatch.delenv(name)
    for name, value in {"IDP_VAR_DIR": str(settings.var_dir), "IDP_DATABASE_URL": database_url,
                        "IDP_MASTER_KEY": TEST_MASTER_KEY, **extra}.items():
        monkeypatch.setenv(name, value)


def _give_up(monkeypatch, tmp_path, settings, database_url: str, store, api,
             kept: list[str]) -> None:
    """``idp apps update`` (in this process, on the tests' database and store): ``api``
    keeps only ``kept`` of its identifiers."""
    import json

    from idp import cli_apps

    _cli_env(monkeypatch, settings, database_url,
             IDP_REDIS_URL="redis://127.0.0.1:6379/0")  # a shared store: told
    monkeypatch.setattr("idp.cli_apps.make_store", lambda _settings: _Unclosed(store))
    file = tmp_path / "api.json"
    file.write_text(json.dumps({**api.metadata, "resource_identifiers": kept}))
    cli_apps.apps_update(client_id=api.client_id, metadata=file)


def _api(make_client, *identifiers: str):
    return make_client(protected_resource=True, resource_identifiers=list(identifiers),
                       grant_types=["client_credentials"], redirect_uris=[])


@pytest.fixture
def give_up(monkeypatch, tmp_path, settings, database_url: str, store):
    return lambda api, kept: _give_up(monkeypatch, tmp_path, settings, database_url, store,
                                      api, kept)


def test_an_identifier_given_up_takes_its_consents_and_grants_along(
        client: TestClient, make_client, make_person, db, give_up) -> None:
    """``idp apps update`` dropping an identifier: the grants and consents made for that
    API give the API that registers it next nothing (the owner is checked), the old API's
    access tokens are ``active: false`` to it, and the identifiers kept work as before."""
    from idp.oidc import consent

    api = _api(make_client, GRADES, TIMETABLE)
    app, person = make_client(), make_person()
    consent.grant(db, person.account_id, app.client_id, "openid api.read",
                  {GRADES: api.client_id, TIMETABLE: api.client_id})
    tokens = {}
    for resource in (GRADES, TIMETABLE):
        params, verifier = _signed_in(client, app, person, resource)
        tokens[resource] = _redeem(client, app, params, verifier).json()
    give_up(api, [TIMETABLE])

    newcomer = _api(make_client, GRADES)
    client.app.state.resources.forget()
    refused = _refresh(client, app, tokens[GRADES]["refresh_token"])
    assert refused.json()["error"] == "invalid_target", refused.text
    assert "another app's since the authorization" in refused.json()["error_description"]
    seen = client.post("/oauth2/introspect", data={"token": tokens[GRADES]["access_token"]},
                       auth=(newcomer.client_id, newcomer.secret)).json()
    assert seen == {"active": False}
    assert not consent.covers(db, person.account_id, app.client_id, "api.read",
                              {GRADES: newcomer.client_id})
    assert consent.covers(db, person.account_id, app.client_id, "api.read",
                          {TIMETABLE: api.client_id})
    kept = _refresh(client, app, tokens[TIMETABLE]["refresh_token"])
    assert _claims(kept.json()["access_token"])["aud"] == TIMETABLE


def test_a_code_in_flight_for_two_apis_gives_the_newcomer_nothing(
        client: TestClient, make_client, make_person, give_up) -> None:
    """A code for GRADES and TIMETABLE issued before GRADES is given up and redeemed after
    for TIMETABLE: its refresh token names GRADES with the old API, so it gives no token
    for the API that registers GRADES next."""
    old = _api(make_client, GRADES, TIMETABLE)
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person, GRADES, TIMETABLE)
    give_up(old, [TIMETABLE])
    client.app.state.resources.forget()
    redeemed = _redeem(client, app, params, verifier, TIMETABLE)
    assert redeemed.status_code == 200, redeemed.text
    _api(make_client, GRADES)
    client.app.state.resources.forget()
    answer = _refresh(client, app, redeemed.json()["refresh_token"], GRADES)
    assert answer.json()["error"] == "invalid_target", answer.text


def test_a_consent_page_open_during_the_update_covers_nothing_after(
        client: TestClient, make_client, make_person, db, give_up) -> None:
    """A consent page for GRADES open while GRADES is given up, allowed after: the consent
    and the code name the old API, not the one that registers GRADES next."""
    from directory.apps import find_app
    from idp.oidc import consent

    old = _api(make_client, GRADES, TIMETABLE)
    app, person = make_client(first_party=False), make_person()
    verifier, challenge = flow.pkce_pair()
    query = [("response_type", "code"), ("client_id", app.client_id),
             ("redirect_uri", REDIRECT_URI), ("scope", "openid profile offline_access"),
             ("state", "s"), ("code_challenge", challenge), ("code_challenge_method", "S256"),
             ("resource", GRADES)]
    asked = client.get("/oauth2/authorize", params=query, follow_redirects=False)
    to_consent = flow.follow(client, flow.login(client, asked, person.login, person.password))
    page = client.get(to_consent.headers["location"])
    give_up(old, [TIMETABLE])
    client.app.state.resources.forget()
    allowed = flow.follow(client, client.post("/consent", data={
        "csrf_token": flow.csrf_of(page.text), "ia": flow.ia_of(page), "decision": "allow"},
        follow_redirects=False))
    newcomer = _api(make_client, GRADES)
    with db.session() as session:
        find_app(session, newcomer.client_id).name = "新来的服务"
    client.app.state.resources.forget()
    assert not consent.covers(db, person.account_id, app.client_id, "profile",
                              {GRADES: newcomer.client_id})
    params = flow.Redirect(allowed.headers["location"]).params
    assert _redeem(client, app, params, verifier).json()["error"] == "invalid_target"
    listed = client.get("/account/apps")  # the person's list names no API for the app
    assert listed.status_code == 200 and "新来的服务" not in listed.text


def test_a_worker_with_a_cached_registry_grants_the_old_api_only(
        client: TestClient, make_client, make_person, give_up) -> None:
    """A worker whose registry (cached 30 s) still has GRADES as the old API's signs a
    person in for it after the update: the grant names the old API, so the API that
    registers GRADES next gets no token from it."""
    old = _api(make_client, GRADES, TIMETABLE)
    app, person = make_client(), make_person()
    assert client.app.state.resources.owner(GRADES) == old.client_id  # the cache is loaded
    give_up(old, [TIMETABLE])
    params, verifier = _signed_in(client, app, person, GRADES)  # no forget(): as a worker
    token = _redeem(client, app, params, verifier).json()["refresh_token"]
    _api(make_client, GRADES)
    client.app.state.resources.forget()
    assert _refresh(client, app, token, GRADES).json()["error"] == "invalid_target"


def test_a_client_credentials_token_for_a_given_up_identifier_is_inactive(
        client: TestClient, make_client, give_up) -> None:
    old = _api(make_client, GRADES, TIMETABLE)
    app = make_client()
    token = _cc(client, app, GRADES).json()["access_token"]
    give_up(old, [TIMETABLE])
    newcomer = _api(make_client, GRADES)
    client.app.state.resources.forget()
    seen = client.post("/oauth2/introspect", data={"token": token},
                       auth=(newcomer.client_id, newcomer.secret)).json()
    assert seen == {"active": False}, seen


@pytest.mark.parametrize("owners", [None, 5, [None], ["api_x", "api_y"], [""]])
def test_a_grant_naming_apis_without_their_owners_is_refused(
        client: TestClient, make_client, make_person, db, owners) -> None:
    """A stored grant whose APIs come without the apps that held them (the version before
    kept none, or the row was tampered with) cannot tell its API from the next holder's:
    ``invalid_grant``, sign in again; never a 500, never used."""
    import json

    from sqlalchemy import select

    from idp.oidc.refresh_tokens import RefreshToken

    _api(make_client, GRADES)
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person, GRADES)
    refresh = _redeem(client, app, params, verifier).json()["refresh_token"]
    with db.session() as session:
        row = session.scalars(select(RefreshToken).where(
            RefreshToken.client_id == app.client_id)).one()
        grant = json.loads(row.grant_json)
        grant["resource_owners"] = owners
        row.grant_json = json.dumps(grant)
    refused = _refresh(client, app, refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_an_identifier_given_up_without_a_shared_store_warns(
        make_client, settings, database_url: str, monkeypatch, tmp_path, capsys) -> None:
    """Without ``IDP_REDIS_URL`` the CLI cannot reach the server's store: the update is made
    and says that introspection was not told."""
    import json

    from idp import cli_apps

    api = _api(make_client, GRADES, TIMETABLE)
    _cli_env(monkeypatch, settings, database_url)
    file = tmp_path / "api.json"
    file.write_text(json.dumps({**api.metadata, "resource_identifiers": [TIMETABLE]}))
    cli_apps.apps_update(client_id=api.client_id, metadata=file)
    printed = capsys.readouterr()
    assert "updated" in printed.out and "no IDP_REDIS_URL" in printed.err


def test_an_unreachable_store_changes_nothing(make_client, settings, database_url: str, db,
                                              monkeypatch, tmp_path, capsys) -> None:
    import json

    import typer

    from directory.apps import find_app, metadata_of
    from idp import cli_apps

    api = _api(make_client, GRADES, TIMETABLE)
    _cli_env(monkeypatch, settings, database_url, IDP_REDIS_URL="redis://127.0.0.1:1/0")
    file = tmp_path / "api.json"
    file.write_text(json.dumps({**api.metadata, "resource_identifiers": [TIMETABLE]}))
    with pytest.raises(typer.Exit):
        cli_apps.apps_update(client_id=api.client_id, metadata=file)
    assert "nothing was changed" in capsys.readouterr().err
    with db.sessions() as session:
        assert metadata_of(find_app(session, api.client_id)).resource_identifiers == (
            GRADES, TIMETABLE)


def test_introspection_of_a_refresh_token_agrees_with_the_token_endpoint(
        client: TestClient, make_client, make_person, give_up) -> None:
    """A refresh token whose only API changed hands gives no token any more: introspection
    says ``active: false`` too (RFC 7662 2.2)."""
    old = _api(make_client, GRADES, TIMETABLE)
    app, person = make_client(), make_person()
    params, verifier = _signed_in(client, app, person, GRADES)
    refresh = _redeem(client, app, params, verifier).json()["refresh_token"]
    seen = client.post("/oauth2/introspect", data={"token": refresh},
                       auth=(app.client_id, app.secret)).json()
    assert seen["active"] is True
    give_up(old, [TIMETABLE])
    _api(make_client, GRADES)
    client.app.state.resources.forget()
    seen = client.post("/oauth2/introspect", data={"token": refresh},
                       auth=(app.client_id, app.secret)).json()
    assert seen == {"active": False}


class _Unclosed:
    """The tests' store, handed to code that closes the store it made."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def close(self) -> None:
        pass


def test_a_consent_of_the_version_before_covers_no_api(db, make_client, make_person) -> None:
    """``consent.apis`` keeps the shape the version before reads; a consent it wrote (no
    ``api_owners``) covers no API: the person is asked again."""
    import json

    from sqlalchemy import select

    from directory.apps import Consent
    from idp.oidc import consent

    app, person = make_client(first_party=False), make_person()
    consent.grant(db, person.account_id, app.client_id, "openid api.read", {GRADES: "api_g"})
    with db.session() as session:
        row = session.scalars(select(Consent).where(Consent.client_id == app.client_id)).one()
        assert json.loads(row.apis) == {GRADES: "api.read openid"}  # as the version before
        row.api_owners = None  # reads and writes it
        assert consent.allowed_apis(row)[GRADES] == consent.AllowedApi(
            frozenset({"openid", "api.read"}), "")
    assert consent.covers(db, person.account_id, app.client_id, "api.read")
    assert not consent.covers(db, person.account_id, app.client_id, "api.read",
                              {GRADES: "api_g"})


def test_a_grant_names_its_apis_owners_or_is_refused(client: TestClient, make_client) -> None:
    """No new grant holds an unknown owner: one that would (the API gone between two reads
    of the registry, or a sign-in begun on a worker of the version before) is
    ``invalid_target``, never a grant the owner check waves through."""
    from idp.oidc import resources
    from idp.oidc.authorize import AuthorizationRequest
    from idp.oidc.errors import OAuthError

    api, app = _api(make_client, GRADES), make_client()
    registry = client.app.state.resources
    registry.forget()
    assert resources.owners(registry, [GRADES]) == (api.client_id,)
    with pytest.raises(OAuthError, match="not a registered API"):
        resources.owners(registry, [TIMETABLE])
    begun_before = AuthorizationRequest.from_json({
        "client_id": app.client_id, "redirect_uri": REDIRECT_URI, "scope": "openid",
        "state": None, "nonce": None, "code_challenge": None, "resources": [GRADES]})
    assert begun_before.apis() == {GRADES: ""}
    for owners in ((), ("",), ("app_someone_else",)):
        with pytest.raises(OAuthError, match="another app's since the authorization"):
            resources.audience(registry, [], (GRADES,), app.client_id, owners)
    assert resources.audience(registry, [], (GRADES,), app.client_id,
                              (api.client_id,)) == GRADES
