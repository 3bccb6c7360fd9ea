from __future__ import annotations

import json

import jwt as pyjwt
import pytest
from fastapi.testclient import TestClient

from core.gm import jose as gm_jose


def test_client_credentials_sm2_jwt(client: TestClient, make_client) -> None:
    registered = make_client(access_token_signed_response_alg="SM2")
    response = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                  "scope": "api.read"},
                           auth=(registered.client_id, registered.secret))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "api.read"
    assert response.headers["cache-control"] == "no-store"
    header = pyjwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "SM2"
    jwks = client.get("/oauth2/jwks/all").json()
    claims = json.loads(gm_jose.verify_jws(body["access_token"], gm_jose.import_key_set(jwks)))
    assert claims["client_id"] == registered.client_id == claims["sub"]
    assert claims["iss"] == "http://127.0.0.1:8000" and claims["scope"] == "api.read"
    metrics = client.get("/metrics").text  # the plain Starlette route is labelled too
    assert 'route="/oauth2/token",status="200"' in metrics


def test_client_credentials_rs256_verifies_with_pyjwt(client: TestClient, make_client) -> None:
    registered = make_client(access_token_signed_response_alg="RS256")
    body = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                              "client_id": registered.client_id,
                                              "client_secret": registered.secret},
                       ).json()
    # client_secret_post is not this client's method
    assert body["error"] == "invalid_client"
    body = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(registered.client_id, registered.secret)).json()
    jwks = pyjwt.PyJWKSet.from_dict(client.get("/oauth2/jwks").json())
    kid = pyjwt.get_unverified_header(body["access_token"])["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = pyjwt.decode(body["access_token"], key.key, algorithms=["RS256"],
                          audience="http://127.0.0.1:8000")
    assert claims["scope"] == "api.read api.write"


@pytest.mark.parametrize(
    ("data", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, ("nobody", "x"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "password"}, "good", 400, "unsupported_grant_type"),
        ({}, "good", 400, "invalid_request"),
        ({"scope": "api.read"}, "good", 400, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "openid"}, "good", 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "admin"}, "good", 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "api.read\tapi.write"}, "good", 400,
         "invalid_scope"),  # RFC 6749 3.3: values separated by spaces only
        # RFC 6749 3.2.1: a client_id in the body must be the client Basic authenticated
        ({"grant_type": "client_credentials", "client_id": "demo-sm2"}, "good", 400,
         "invalid_request"),
    ],
)
def test_token_errors(client: TestClient, make_client, data, auth, status, error) -> None:
    registered = make_client()
    if auth == "good":
        auth = (registered.client_id, registered.secret)
    response = client.post("/oauth2/token", data=data, auth=auth)
    assert response.status_code == status
    assert response.json()["error"] == error
    if status == 401 and auth:
        assert response.headers["www-authenticate"].startswith("Basic")


def test_wrong_secret_and_bad_bodies(client: TestClient, make_client) -> None:
    registered = make_client()
    wrong = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                        auth=(registered.client_id, registered.secret + "x"))
    assert wrong.status_code == 401
    as_json = client.post("/oauth2/token", json={"grant_type": "client_credentials"},
                          auth=(registered.client_id, registered.secret))
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    repeated = client.post("/oauth2/token", content="grant_type=a&grant_type=b",
                           headers={"Content-Type": "application/x-www-form-urlencoded"},
                           auth=(registered.client_id, registered.secret))
    assert repeated.json()["error"] == "invalid_request"
    garbage = client.post("/oauth2/token", content=b"\xff\xfe=\x00",
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   "Authorization": "Basic !!!"})
    assert garbage.status_code in (400, 401) and "error" in garbage.json()


def test_opaque_access_token(client: TestClient, make_client) -> None:
    registered = make_client(access_token_format="opaque")
    body = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(registered.client_id, registered.secret)).json()
    assert body["access_token"].count(".") == 0 and len(body["access_token"]) >= 43


def test_discovery(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["issuer"] == "http://127.0.0.1:8000"
    assert "SM2" in document["id_token_signing_alg_values_supported"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["request_parameter_supported"] is True  # signed request objects
    # RFC 8414 2: private_key_jwt at an endpoint needs its signing algorithms listed
    for endpoint in ("token", "introspection", "revocation"):
        assert "private_key_jwt" in document[f"{endpoint}_endpoint_auth_methods_supported"]
        assert document[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == [
            "SM2", "RS256", "ES256", "EdDSA", "Ed25519"]  # RFC 9864's name for EdDSA too
