"""Pushed authorization requests (RFC 9126): the client pushes, the browser brings the
``request_uri`` once; errors are JSON at the PAR endpoint, pages at the authorization
endpoint; an app may be required to push."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from idp.oidc import pushed_requests
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

PAR = "/oauth2/par"


def _request(**params: str) -> dict[str, str]:
    _, challenge = flow.pkce_pair()
    return {"response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid profile",
            "state": "st-par", "nonce": "n-par", "code_challenge": challenge,
            "code_challenge_method": "S256", **params}


def _push(client: TestClient, registered, **params: str):
    return client.post(PAR, auth=(registered.client_id, registered.secret),
                       data=_request(**params))


def test_a_pushed_request_signs_in_once(client: TestClient, make_client,
                                        make_person) -> None:
    registered, person = make_client(), make_person()
    verifier, challenge = flow.pkce_pair()
    pushed = _push(client, registered, code_challenge=challenge)
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["cache-control"] == "no-store"
    body = pushed.json()
    assert body["expires_in"] == pushed_requests.LIFETIME
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    # the browser brings client_id and request_uri only; what it adds is ignored
    redirect = flow.code_flow(client, registered.client_id, person, response_type="",
                              redirect_uri="", scope="", state="", nonce="",
                              request_uri=body["request_uri"])
    assert redirect.location.startswith(REDIRECT_URI)
    assert redirect.params["state"] == "st-par"
    tokens = client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": redirect.params["code"],
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    again = client.get("/oauth2/authorize", follow_redirects=False, params={
        "client_id": registered.client_id, "request_uri": body["request_uri"], "lang": "en"})
    assert again.status_code == 400 and "location" not in again.headers  # used: a page


def test_a_request_uri_of_another_client_or_unknown_is_refused(client: TestClient,
                                                               make_client) -> None:
    first, second = make_client(), make_client()
    request_uri = _push(client, first).json()["request_uri"]
    for client_id, uri in ((second.client_id, request_uri),
                           (first.client_id, pushed_requests.URN + "nothing-here"),
                           (first.client_id, pushed_requests.URN)):
        answer = client.get("/oauth2/authorize", params={"client_id": client_id,
                                                         "request_uri": uri},
                            follow_redirects=False)
        assert answer.status_code == 400 and "location" not in answer.headers
    other = client.get("/oauth2/authorize", follow_redirects=False, params={
        "client_id": first.client_id, "redirect_uri": REDIRECT_URI, "response_type": "code",
        "scope": "openid", "request_uri": "https://app.example.edu.cn/request.jwt"})
    assert "error=request_uri_not_supported" in other.headers["location"]


@pytest.mark.parametrize(("changes", "status", "error"), [
    ({"redirect_uri": "https://evil.example/cb"}, 400, "invalid_request"),
    ({"redirect_uri": ""}, 400, "invalid_request"),
    ({"code_challenge_method": "plain"}, 400, "invalid_request"),
    ({"scope": "nope"}, 400, "invalid_scope"),
    ({"response_type": "token"}, 400, "unsupported_response_type"),
    ({"request_uri": pushed_requests.URN + "x"}, 400, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, 400, "request_not_supported"),
    ({"max_age": "soon"}, 400, "invalid_request"),
])
def test_a_bad_pushed_request_is_a_json_error(client: TestClient, make_client, changes,
                                              status: int, error: str) -> None:
    answer = _push(client, make_client(), **changes)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error and "location" not in answer.headers


def test_pushing_needs_client_authentication(client: TestClient, make_client) -> None:
    registered = make_client()
    anonymous = client.post(PAR, data={**_request(), "client_id": registered.client_id})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    wrong = client.post(PAR, auth=(registered.client_id, "not-the-secret"), data=_request())
    assert wrong.status_code == 401
    assert client.get(PAR).status_code == 405
    public = make_client(token_endpoint_auth_method="none")  # names itself, proves by PKCE
    assert client.post(PAR, data={**_request(), "client_id": public.client_id}
                       ).status_code == 201
    service = make_client(grant_types=["client_credentials"], redirect_uris=[])
    refused = client.post(PAR, auth=(service.client_id, service.secret), data=_request())
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"


def test_an_app_may_be_required_to_push(client: TestClient, make_client,
                                        make_person) -> None:
    registered = make_client(require_pushed_authorization_requests=True)
    direct = flow.authorize(client, client_id=registered.client_id,
                            code_challenge=flow.pkce_pair()[1], code_challenge_method="S256")
    assert direct.status_code in (302, 303)
    assert "error=invalid_request" in direct.headers["location"]
    request_uri = _push(client, registered).json()["request_uri"]
    redirect = flow.code_flow(client, registered.client_id, make_person(),
                              response_type="", redirect_uri="", scope="", state="",
                              nonce="", request_uri=request_uri)
    assert "code" in redirect.params


def test_discovery_names_the_endpoint(client: TestClient) -> None:
    meta = client.get("/.well-known/openid-configuration").json()
    assert meta["pushed_authorization_request_endpoint"].endswith(PAR)
    assert meta["require_pushed_authorization_requests"] is False
    assert meta["request_uri_parameter_supported"] is False  # request objects by reference
