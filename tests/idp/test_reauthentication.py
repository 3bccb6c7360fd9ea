"""The same person signing in again (the account pages' re-authentication, /login?next=...,
or an app's prompt=login) stays signed in, in the same session."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.idp import flow
from tests.idp.test_session_bound_tokens import _refresh, _tokens


def test_reauth_without_pending_request_keeps_a_session_that_had_apps(
        client: TestClient, make_client, make_person) -> None:
    app = make_client()
    person = make_person()
    tokens = _tokens(client, app, person, scope="openid")
    page = client.get("/login?next=/")
    answer = client.post("/login", data={"csrf_token": flow.csrf_of(page.text),
                                         "login": person.login, "password": person.password,
                                         "next": "/"}, follow_redirects=False)
    assert answer.status_code == 303
    # still signed in: a prompt=none request gets a code, not login_required
    silent = flow.authorize(client, client_id=app.client_id, prompt="none")
    assert "code=" in silent.headers.get("location", ""), silent.headers.get("location")
    # and the session's refresh token lives while the session lives
    assert _refresh(client, app, tokens["refresh_token"]).status_code == 200


def test_reauth_without_pending_request_leaves_no_orphan_refresh_token(
        client: TestClient, make_client, make_person) -> None:
    """Whatever the outcome, a refresh token bound to the session must not outlive it: if
    the re-authentication drops the session, the sign-out that follows must still end it."""
    app = make_client()
    person = make_person()
    tokens = _tokens(client, app, person, scope="openid")
    page = client.get("/login?next=/")
    client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "login": person.login,
                                "password": person.password, "next": "/"},
                follow_redirects=False)
    signed_in = 'action="/logout"' in client.get("/").text
    # the session is gone (nobody can sign it out any more), yet its token still refreshes
    assert signed_in or _refresh(client, app, tokens["refresh_token"]).status_code == 400


def test_prompt_login_to_a_third_party_app_needing_consent_keeps_the_session(
        client: TestClient, make_client, make_person) -> None:
    first, third = make_client(), make_client(first_party=False)
    person = make_person()
    _tokens(client, first, person, scope="openid")
    page = flow.authorize(client, client_id=third.client_id, prompt="login")
    answer = flow.follow(client, flow.login(client, page, person.login, person.password))
    assert answer.headers["location"].startswith("/consent"), answer.headers.get("location")
    consent = client.get(answer.headers["location"])
    assert consent.status_code == 200
    ia = answer.headers["location"].split("ia=")[1]
    decided = flow.follow(client, client.post("/consent", data={
        "csrf_token": flow.csrf_of(consent.text), "ia": ia, "decision": "allow"},
        follow_redirects=False))
    assert "code=" in decided.headers.get("location", ""), decided.headers.get("location")
