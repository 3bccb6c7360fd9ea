"""Pushed authorization requests (RFC 9126): the client pushes, the browser brings the
``request_uri`` once; errors are JSON at the PAR endpoint, pages at the authorization
endpoint; an app may be required to push."""

from __future__ import annotations

import json

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
    # the browser brings client_id and request_uri; whatever else it adds is ignored
    redirect = flow.code_flow(client, registered.client_id, person, state="evil",
                              scope="openid email", prompt="none", nonce="other",
                              redirect_uri="https://evil.example/cb",
                              code_challenge=flow.pkce_pair()[1],
                              request_uri=body["request_uri"])
    assert redirect.location.startswith(REDIRECT_URI + "?")
    assert redirect.params["state"] == "st-par"  # prompt=none would have refused: no session
    tokens = client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": redirect.params["code"],
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "openid profile"  # the pushed scope, not the URL's
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
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, 400, "invalid_request_object"),  # alg none
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


def test_the_sign_in_page_of_a_pushed_request_survives_a_reload(client: TestClient,
                                                                 make_client,
                                                                 make_person) -> None:
    """The request_uri is used up at once, so the sign-in page is /login?ia=...: reloading
    it or switching its language keeps the request. A HEAD (a link checker) uses nothing."""
    registered, person = make_client(), make_person()
    request_uri = _push(client, registered).json()["request_uri"]
    url = {"client_id": registered.client_id, "request_uri": request_uri}
    assert client.head("/oauth2/authorize", params=url).status_code == 200
    first = client.get("/oauth2/authorize", params=url, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?ia=")
    page = first.headers["location"]
    for again in (page, page + "&lang=en", page):
        assert client.get(again).status_code == 200
    redirect = flow.follow(client, flow.login(client, client.get(page), person.login,
                                              person.password))
    assert redirect.headers["location"].startswith(REDIRECT_URI + "?code=")


def test_what_is_kept_is_the_authorization_request_only(client: TestClient, make_client,
                                                        store) -> None:
    """client_secret_post: the secret in the form is never kept; nor are names the
    authorization endpoint does not read."""
    registered = make_client(token_endpoint_auth_method="client_secret_post")
    pushed = client.post(PAR, data={**_request(), "client_id": registered.client_id,
                                    "client_secret": registered.secret, "junk": "x" * 1000})
    assert pushed.status_code == 201, pushed.text
    handle = pushed.json()["request_uri"].removeprefix(pushed_requests.URN)
    kept = json.loads(store.get(f"par:{handle}"))
    assert "client_secret" not in kept and "junk" not in kept
    assert kept["client_id"] == registered.client_id and kept["state"] == "st-par"


def test_a_bad_id_token_hint_is_refused_when_pushed(client: TestClient, make_client) -> None:
    answer = _push(client, make_client(), id_token_hint="eyJhbGciOiJub25lIn0.e30.")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def test_a_single_page_app_may_push(client: TestClient, make_client) -> None:
    """CORS as at the token endpoint: the preflight answers any origin; the answer is
    shared with a public client's redirect-URI origins only."""
    spa = make_client(token_endpoint_auth_method="none",
                      redirect_uris=["https://spa.example.cn/callback"])
    origin = {"origin": "https://spa.example.cn"}
    preflight = client.options(PAR, headers={**origin,
                                             "access-control-request-method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://spa.example.cn"
    pushed = client.post(PAR, headers=origin, data={
        **_request(redirect_uri="https://spa.example.cn/callback"), "client_id": spa.client_id})
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["access-control-allow-origin"] == "https://spa.example.cn"
    confidential = make_client()
    hidden = client.post(PAR, headers=origin, auth=(confidential.client_id,
                                                    confidential.secret), data=_request())
    assert hidden.status_code == 201 and "access-control-allow-origin" not in hidden.headers
