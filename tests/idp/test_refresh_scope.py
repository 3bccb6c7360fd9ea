"""A scope value the authorization endpoint ignored does not fail the app's refresh."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.idp.test_session_bound_tokens import _tokens

ASKED = "openid profile https://graph.example.com/read"  # a value this provider does not know


def test_refresh_with_the_scope_first_asked_is_not_invalid_scope(
        client: TestClient, make_client, make_person) -> None:
    app = make_client()
    person = make_person()
    tokens = _tokens(client, app, person, scope=ASKED)  # accepted: the unknown value ignored
    assert tokens["scope"].split() == ["openid", "profile"]
    # many RP libraries send their configured scope again on refresh
    answer = client.post("/oauth2/token", auth=(app.client_id, app.secret), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "scope": ASKED})
    assert answer.status_code == 200, answer.text
