"""CORS: a single-page app (a public client) reads the protocol endpoints' answers; no
other origin does, and cookies are never shared."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from idp.oidc.cors import web_origins
from tests.idp import flow

SPA = "https://spa.example.cn"
SPA_CALLBACK = SPA + "/callback"
EVIL = "https://evil.example"


def _spa_tokens(client: TestClient, make_client, make_person):
    spa = make_client(token_endpoint_auth_method="none", redirect_uris=[SPA_CALLBACK],
                      grant_types=["authorization_code", "refresh_token"])
    verifier, challenge = flow.pkce_pair()
    code = flow.code_flow(client, spa.client_id, make_person(), redirect_uri=SPA_CALLBACK,
                          code_challenge=challenge,
                          code_challenge_method="S256").params["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_CALLBACK,
            "client_id": spa.client_id, "code_verifier": verifier}
    return spa, data


def _shared_with(response) -> str | None:
    assert "access-control-allow-credentials" not in response.headers
    return response.headers.get("access-control-allow-origin")


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server",
                                  "/oauth2/jwks", "/oauth2/jwks/all"])
def test_public_metadata_is_shared_with_any_origin(client: TestClient, path: str) -> None:
    assert _shared_with(client.get(path, headers={"Origin": EVIL})) == "*"
    # without Origin too: a shared cache may hand this very answer to a page later
    assert _shared_with(client.get(path)) == "*"


def test_the_spa_reads_its_token_userinfo_and_revocation_answers(
        client: TestClient, make_client, make_person) -> None:
    spa, data = _spa_tokens(client, make_client, make_person)
    tokens = client.post("/oauth2/token", data=data, headers={"Origin": SPA})
    assert tokens.status_code == 200 and _shared_with(tokens) == SPA
    assert "Origin" in tokens.headers.get_list("vary")
    bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    assert _shared_with(client.get("/oauth2/userinfo", headers={**bearer, "Origin": SPA})) == SPA
    assert _shared_with(client.get("/oauth2/userinfo", headers={**bearer, "Origin": EVIL})) is None
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"],
               "client_id": spa.client_id}
    assert _shared_with(client.post("/oauth2/token", data=refresh,
                                    headers={"Origin": EVIL})) is None
    revoked = client.post("/oauth2/revoke", headers={"Origin": SPA}, data={
        "token": tokens.json()["refresh_token"], "client_id": spa.client_id})
    assert revoked.status_code == 200 and _shared_with(revoked) == SPA


def test_a_confidential_clients_answers_are_never_shared(client: TestClient,
                                                         make_client) -> None:
    app = make_client(redirect_uris=[SPA_CALLBACK])
    answer = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=(app.client_id, app.secret), headers={"Origin": SPA})
    assert answer.status_code == 200 and _shared_with(answer) is None


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/revoke", "/oauth2/userinfo"])
def test_preflights_list_methods_and_headers(client: TestClient, path: str) -> None:
    response = client.options(path, headers={
        "Origin": SPA, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert response.status_code == 204 and _shared_with(response) == SPA
    assert "Authorization" in response.headers["access-control-allow-headers"]
    assert client.options(path).status_code == 204  # not a preflight: just Allow


def test_web_origins_are_what_browsers_send() -> None:
    assert web_origins(("https://A.example.cn:443/cb", "http://127.0.0.1:3000/cb",
                        "https://x.example.cn:8443/cb", "com.example.app:/cb",
                        "https://[::1]:9000/cb", "https://bad.example:port/cb")) == {
        "https://a.example.cn", "http://127.0.0.1:3000", "https://x.example.cn:8443",
        "https://[::1]:9000"}


def test_errors_before_the_client_is_known_are_readable(client: TestClient) -> None:
    """A page must see invalid_token (to refresh) or invalid_client, not a network error."""
    userinfo = client.get("/oauth2/userinfo", headers={"Authorization": "Bearer nope",
                                                       "Origin": EVIL})
    assert userinfo.status_code == 401 and _shared_with(userinfo) == "*"
    assert "WWW-Authenticate" in userinfo.headers["access-control-expose-headers"]
    token = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                "client_id": "nobody"}, headers={"Origin": EVIL})
    assert token.status_code == 401 and _shared_with(token) == "*"


def test_a_confidential_clients_errors_after_authentication_are_not_shared(
        client: TestClient, make_client) -> None:
    app = make_client()
    answer = client.post("/oauth2/token", data={"grant_type": "password"},
                         auth=(app.client_id, app.secret), headers={"Origin": SPA})
    assert answer.status_code == 400 and _shared_with(answer) is None


def test_idn_hosts_match_the_punycode_browsers_send() -> None:
    assert web_origins(("https://学校.example.cn/cb",)) == {"https://xn--48s290a.example.cn"}
