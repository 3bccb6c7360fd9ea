"""Refresh tokens without ``offline_access`` live with the SSO session they were issued
in (OIDC Core 11): a sign-out, an idle timeout or the session's maximum age ends them;
signing in again as the same person keeps that session."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient

from idp import sessions
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI


def _payload(jwt: str) -> dict:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _tokens(client: TestClient, registered, person, **params: str) -> dict:
    code = flow.code_flow(client, registered.client_id, person, **params).params["code"]
    answer = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _refresh(client: TestClient, registered, refresh_token: str):
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "refresh_token", "refresh_token": refresh_token})


def _userinfo(client: TestClient, access_token: str) -> int:
    return client.get("/oauth2/userinfo",
                      headers={"authorization": f"Bearer {access_token}"}).status_code


def _sign_out(client: TestClient) -> None:
    client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})


def test_a_sign_out_ends_the_sessions_refresh_tokens_but_not_offline_ones(
        client: TestClient, make_client, make_person) -> None:
    online, offline = make_client(), make_client()
    person = make_person()
    bound = _tokens(client, online, person, scope="openid profile")
    kept = _tokens(client, offline, person, scope="openid profile offline_access",
                   prompt="consent")  # OIDC Core 11: offline access needs consent
    rotated = _refresh(client, online, bound["refresh_token"]).json()  # its heir is bound too
    assert _userinfo(client, rotated["access_token"]) == 200
    _sign_out(client)
    gone = _refresh(client, online, rotated["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    assert _userinfo(client, rotated["access_token"]) == 401  # issued with it: deny-listed
    assert _refresh(client, offline, kept["refresh_token"]).status_code == 200


def test_another_persons_sign_in_ends_the_previous_persons_tokens(
        client: TestClient, make_client, make_person) -> None:
    registered = make_client()
    first, second = make_person(), make_person("s20268888", "pw-second-88")
    tokens = _tokens(client, registered, first, scope="openid")
    _tokens(client, registered, second, scope="openid", prompt="login")
    assert _refresh(client, registered, tokens["refresh_token"]).json()["error"] == \
        "invalid_grant"


def test_signing_in_again_as_the_same_person_keeps_the_session(
        client: TestClient, make_client, make_person) -> None:
    """An app's max_age=0 makes the person sign in again: a re-authentication, not a
    sign-out of the session's other apps."""
    portal, library = make_client(), make_client()
    person = make_person()
    library_tokens = _tokens(client, library, person, scope="openid")
    cookie = client.cookies.get(sessions.COOKIE)
    again = _tokens(client, portal, person, scope="openid", max_age="0")
    assert flow.is_login_page(flow.authorize(client, client_id=portal.client_id, max_age="0"))
    before, after = _payload(library_tokens["id_token"]), _payload(again["id_token"])
    assert after["sid"] == before["sid"] and after["auth_time"] >= before["auth_time"]
    assert client.cookies.get(sessions.COOKIE) != cookie  # a new cookie token all the same
    assert _refresh(client, library, library_tokens["refresh_token"]).status_code == 200
    _sign_out(client)  # both apps were recorded in the one session
    assert _refresh(client, portal, again["refresh_token"]).status_code == 400


@pytest.mark.parametrize("grant_types", [["authorization_code", "refresh_token"],
                                         ["authorization_code"]])
def test_a_code_redeemed_after_the_sign_out_is_refused(
        client: TestClient, make_client, make_person, grant_types) -> None:
    """The app got its code just before the person signed out: the sign-out revoked the
    session's tokens and told its apps, so the code brings none that would outlive it (an
    access token would stay live for its hour, a refresh token for days)."""
    registered = make_client(grant_types=grant_types)
    code = flow.code_flow(client, registered.client_id, make_person(),
                          scope="openid").params["code"]
    _sign_out(client)
    answer = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI})
    assert answer.status_code == 400 and answer.json() == {
        "error": "invalid_grant", "error_description": "the sign-in this grant came from has ended"}
    offline = make_client()  # an offline_access grant outlives sign-outs
    person = make_person("s20267777", "pw-offline-77")
    code = flow.code_flow(client, offline.client_id, person, scope="openid offline_access",
                          prompt="consent").params["code"]
    _sign_out(client)
    kept = client.post("/oauth2/token", auth=(offline.client_id, offline.secret),
                       data={"grant_type": "authorization_code", "code": code,
                             "redirect_uri": REDIRECT_URI}).json()
    assert _refresh(client, offline, kept["refresh_token"]).status_code == 200


def test_a_token_from_a_sessions_last_day_ends_with_the_session(
        client: TestClient, make_client, make_person, app) -> None:
    """A code minted on a session's sixth day brings a refresh token that expires when the
    session must (seven days after the sign-in), not seven days after the code; an
    offline_access one is not bound."""
    registered = make_client()
    person = make_person()
    _tokens(client, registered, person)
    store = app.state.store
    token, session = sessions.load(store, _with_cookie(client))
    session.created -= 6 * 24 * 3600  # signed in six days ago
    sessions.save(store, token, session)
    late = _tokens(client, registered, person, prompt="none")
    _tokens(client, registered, person, prompt="consent", scope="openid offline_access")
    offline = _tokens(client, registered, person, prompt="none",  # the consent remembered
                      scope="openid offline_access")
    ends = session.created + sessions.MAX_SECONDS
    for tokens, latest in ((late, ends), (offline, ends + 365 * 24 * 3600)):
        answer = client.post("/oauth2/introspect", auth=(registered.client_id,
                                                         registered.secret),
                             data={"token": tokens["refresh_token"]}).json()
        assert answer["active"] and (answer["exp"] <= ends + 2) == (latest == ends)
    rotated = _refresh(client, registered, late["refresh_token"]).json()
    again = client.post("/oauth2/introspect", auth=(registered.client_id, registered.secret),
                        data={"token": rotated["refresh_token"]}).json()
    assert abs(again["exp"] - ends) <= 2  # its heir too


def _introspected(client: TestClient, registered, token: str) -> bool:
    return client.post("/oauth2/introspect", auth=(registered.client_id, registered.secret),
                       data={"token": token}).json()["active"]


def test_a_session_that_idles_out_ends_its_refresh_tokens(
        client: TestClient, make_client, make_person, monkeypatch) -> None:
    """Nobody signed out, but the person stopped using the browser's session until it
    timed out (here after 3 s, by the store's own expiry): they are no longer signed in,
    so a refresh token that lives with the session is refused and shown inactive; an
    offline_access one goes on."""
    monkeypatch.setattr(sessions, "IDLE_SECONDS", 3)
    registered, person = make_client(), make_person()
    began = time.monotonic()
    bound = _tokens(client, registered, person, scope="openid")
    kept = _tokens(client, registered, person, scope="openid offline_access",
                   prompt="consent")
    assert time.monotonic() - began < 3, "too slow to test a 3 s idle timeout"
    assert _introspected(client, registered, bound["refresh_token"])
    time.sleep(3.2)
    assert not _introspected(client, registered, bound["refresh_token"])
    gone = _refresh(client, registered, bound["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error_description"] == \
        "the sign-in this grant came from has ended"
    assert _refresh(client, registered, kept["refresh_token"]).status_code == 200


def test_a_session_saved_before_its_live_key_keeps_its_refresh_tokens(
        client: TestClient, make_client, make_person, app) -> None:
    """A session an earlier version saved has no ``sso-live`` key: it is found among the
    account's sessions and given one, so an upgrade signs nobody out of their apps."""
    registered = make_client()
    tokens = _tokens(client, registered, make_person(), scope="openid")
    live = sessions._live_key(_payload(tokens["id_token"])["sid"])
    app.state.store.delete(live)
    assert _refresh(client, registered, tokens["refresh_token"]).status_code == 200
    assert app.state.store.get(live) is not None
    assert 0 < app.state.store.ttl(live) <= sessions.IDLE_SECONDS


def test_a_sign_out_outweighs_a_live_key_written_back(
        client: TestClient, make_client, make_person, app) -> None:
    """A code minted just before a sign-out, whose session's sso-live key a page load
    racing the sign-out wrote back: the sign-out's sso-ended still refuses the code."""
    registered, person = make_client(), make_person()
    sid = _payload(_tokens(client, registered, person, scope="openid")["id_token"])["sid"]
    code = flow.code_flow(client, registered.client_id, person, scope="openid").params["code"]
    store = app.state.store
    [key] = store.members(sessions._index(person.account_id))
    sessions._end_stored(app.state, key)  # signed out, and a racing touch then wrote
    store.set(sessions._live_key(sid), b"1", ttl=60)  # the live key back
    answer = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def _with_cookie(client: TestClient):
    from starlette.requests import Request

    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"cookie", cookie.encode())]})
