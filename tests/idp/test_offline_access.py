"""OIDC Core 11: ``offline_access`` needs the person's consent, first-party apps included;
without it the value is ignored (the token response's ``scope`` says so, and the refresh
token lives with the SSO session)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

OFFLINE = "openid offline_access"


def _scope(client: TestClient, registered, person, **params: str) -> set[str]:
    code = flow.code_flow(client, registered.client_id, person, **params).params["code"]
    answer = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI})
    assert answer.status_code == 200, answer.text
    return set(answer.json()["scope"].split())


def test_a_first_party_app_gets_no_offline_access_without_consent(
        client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    assert _scope(client, registered, person, scope=OFFLINE) == {"openid"}
    assert _scope(client, registered, person, scope=OFFLINE, prompt="none") == {"openid"}


def test_consent_to_offline_access_is_asked_with_prompt_consent_and_remembered(
        client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    page = flow.authorize(client, client_id=registered.client_id, scope=OFFLINE,
                          prompt="consent")
    shown = client.get(flow.follow(client, flow.login(client, page, person.login,
                                                      person.password)).headers["location"])
    assert "offline_access" in shown.text  # the page names what is asked
    assert _scope(client, registered, person, scope=OFFLINE, prompt="consent") == {
        "openid", "offline_access"}
    # remembered: asked again without a page, even with prompt=none
    assert _scope(client, registered, person, scope=OFFLINE, prompt="none") == {
        "openid", "offline_access"}
    # remembered for this app only
    other = make_client()
    assert _scope(client, other, person, scope=OFFLINE, prompt="none") == {"openid"}


def test_a_third_party_apps_consent_page_covers_offline_access(
        client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(first_party=False), make_person()
    assert _scope(client, registered, person, scope=OFFLINE, prompt="consent") == {
        "openid", "offline_access"}
    assert _scope(client, registered, person, scope=OFFLINE, prompt="none") == {
        "openid", "offline_access"}


def test_offline_access_is_ignored_for_an_app_without_refresh_tokens(
        client: TestClient, make_client, make_person) -> None:
    registered = make_client(first_party=False, grant_types=["authorization_code"])
    person = make_person()
    page = flow.authorize(client, client_id=registered.client_id, scope=OFFLINE,
                          prompt="consent")
    shown = client.get(flow.follow(client, flow.login(client, page, person.login,
                                                      person.password)).headers["location"])
    assert "offline_access" not in shown.text  # not even asked
    assert _scope(client, registered, person, scope=OFFLINE, prompt="consent") == {"openid"}


def test_a_refresh_that_sends_the_asked_scope_again_still_works(
        client: TestClient, make_client, make_person) -> None:
    """Many libraries send their whole scope with a refresh: an offline_access that was
    ignored is ignored again, not refused as a widening."""
    registered, person = make_client(), make_person()
    code = flow.code_flow(client, registered.client_id, person, scope=OFFLINE).params["code"]
    auth = (registered.client_id, registered.secret)
    tokens = client.post("/oauth2/token", auth=auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}).json()
    again = client.post("/oauth2/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "scope": OFFLINE})
    assert again.status_code == 200, again.text
    assert again.json()["scope"] == "openid"
    wider = client.post("/oauth2/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": again.json()["refresh_token"],
        "scope": "openid profile"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_offline_access_alone_without_consent_is_invalid_scope(
        client: TestClient, make_client, make_person) -> None:
    registered, person = make_client(), make_person()
    answer = flow.code_flow(client, registered.client_id, person, scope="offline_access")
    assert answer.params["error"] == "invalid_scope"


def _refresh(client: TestClient, registered, token: str):
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                       data={"grant_type": "refresh_token", "refresh_token": token})


def _allow_only(client: TestClient, db, registered, scope: str) -> None:
    """The operators change the app's registered scope (``idp apps update``)."""
    import json

    from directory.apps import find_app

    with db.session() as session:
        app = find_app(session, registered.client_id)
        app.metadata_json = json.dumps({**json.loads(app.metadata_json), "scope": scope})
    client.app.state.clients.forget(registered.client_id)


def test_a_refresh_drops_a_scope_taken_from_the_app_since(
        client: TestClient, make_client, make_person, db) -> None:
    """RFC 6749 6 bounds a refresh by the original grant; the app's registration bounds it
    too: a scope the operators took from the app (its pupils' phone numbers, say) is not
    handed out again by a refresh token issued before, and the answer's scope says so."""
    registered, person = make_client(first_party=False), make_person()
    code = flow.code_flow(client, registered.client_id, person,
                          scope="openid phone offline_access", prompt="consent").params["code"]
    first = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                        data={"grant_type": "authorization_code", "code": code,
                              "redirect_uri": REDIRECT_URI}).json()
    assert set(first["scope"].split()) == {"openid", "phone", "offline_access"}
    _allow_only(client, db, registered, "openid profile offline_access")
    refreshed = _refresh(client, registered, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert set(refreshed.json()["scope"].split()) == {"openid", "offline_access"}
    claims = client.get("/oauth2/userinfo", headers={
        "authorization": f"Bearer {refreshed.json()['access_token']}"}).json()
    assert "phone_number" not in claims and claims["sub"]

    _allow_only(client, db, registered, "profile")  # nothing of the grant is left
    emptied = _refresh(client, registered, refreshed.json()["refresh_token"])
    assert emptied.status_code == 400 and emptied.json()["error"] == "invalid_grant"
    _allow_only(client, db, registered, "openid profile offline_access")  # the token stays
    assert _refresh(client, registered, refreshed.json()["refresh_token"]).status_code == 200


def test_a_refresh_after_offline_access_was_taken_lives_with_the_session(
        client: TestClient, make_client, make_person, db) -> None:
    """``offline_access`` taken from the app: the new refresh token keeps the end of the
    one it replaces (the SSO session's) instead of 30 days from now."""
    from sqlalchemy import select

    from idp.oidc.refresh_tokens import RefreshToken

    registered, person = make_client(first_party=False), make_person()
    code = flow.code_flow(client, registered.client_id, person,
                          scope="openid offline_access", prompt="consent").params["code"]
    first = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                        data={"grant_type": "authorization_code", "code": code,
                              "redirect_uri": REDIRECT_URI}).json()
    with db.session() as session:  # an offline token that would end before 30 days
        row = session.scalar(select(RefreshToken))
        session_end = row.created_at + timedelta(days=7)
        row.expires_at = session_end
    _allow_only(client, db, registered, "openid profile")
    refreshed = _refresh(client, registered, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "openid"
    with db.session() as session:
        newest = session.scalars(select(RefreshToken).order_by(RefreshToken.id.desc())).first()
        assert newest.expires_at == session_end  # not 30 days from the refresh
