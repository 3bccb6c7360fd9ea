"""Request objects (RFC 9101, OIDC Core 6.1): signed by the app's registered key, by value
at the authorization endpoint or pushed; only the object's parameters count; one that
cannot be verified is an error page (never a redirect) or, pushed, invalid_request_object."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from core.gm import jose as gm_jose
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

ISSUER = "http://127.0.0.1:8000"


def _key(alg: str):
    return {"SM2": lambda: gm_jose.SM2Key.generate_key(private=True),
            "ES256": lambda: ECKey.generate_key("P-256", private=True),
            "RS256": lambda: RSAKey.generate_key(2048, private=True),
            "EdDSA": lambda: OKPKey.generate_key("Ed25519", private=True)}[alg]()


def _app(make_client, key, alg: str, **metadata):
    public = {**key.as_dict(private=False), "kid": "k1", "alg": alg, "use": "sig"}
    return make_client(jwks={"keys": [public]}, **metadata)


def _object(key, alg: str, app: str, challenge: str, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": app, "aud": ISSUER, "client_id": app, "iat": now,
              "exp": now + 300, "response_type": "code", "redirect_uri": REDIRECT_URI,
              "scope": "openid profile", "state": "st-signed", "nonce": "n-signed",
              "code_challenge": challenge, "code_challenge_method": "S256", **overrides}
    return jwt.encode({"alg": alg, "kid": "k1", "typ": "oauth-authz-req+jwt"},
                      {k: v for k, v in claims.items() if v is not None}, key, algorithms=[alg])


def _b64(member: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(member).encode()).rstrip(b"=").decode()


def _redeem(client: TestClient, registered, code: str, verifier: str):
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier})


@pytest.mark.parametrize("alg", ["SM2", "ES256", "RS256", "EdDSA"])
def test_a_signed_request_signs_in_with_its_own_parameters(client: TestClient, make_client,
                                                           make_person, alg: str) -> None:
    key = _key(alg)
    registered, person = _app(make_client, key, alg), make_person()
    verifier, challenge = flow.pkce_pair()
    signed = _object(key, alg, registered.client_id, challenge, max_age=600,
                     claims={"id_token": {"acr": {"essential": False}}})
    # the query's other parameters are ignored (RFC 9101 6.3)
    redirect = flow.code_flow(client, registered.client_id, person, request=signed,
                              state="evil", scope="openid email", prompt="none",
                              redirect_uri="https://evil.example/cb")
    assert redirect.location.startswith(REDIRECT_URI + "?")
    assert redirect.params["state"] == "st-signed"
    tokens = _redeem(client, registered, redirect.params["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "openid profile"


@pytest.mark.parametrize(("overrides", "why"), [
    ({"iss": "someone-else"}, "iss"),
    ({"aud": "https://other.example"}, "aud"),
    ({"aud": None}, "no aud"),
    ({"exp": int(time.time()) - 10}, "expired"),
    ({"exp": None}, "no exp"),
    ({"exp": int(time.time()) + 7200}, "lives too long"),
    ({"nbf": int(time.time()) + 600}, "not yet"),
    ({"client_id": "someone-else"}, "client_id"),
    ({"max_age": [1]}, "a list"),
    ({"request_uri": "https://x"}, "nested"),
])
def test_an_object_that_cannot_be_used_is_a_page(client: TestClient, make_client,
                                                 overrides, why: str) -> None:
    key = _key("ES256")
    registered = _app(make_client, key, "ES256")
    signed = _object(key, "ES256", registered.client_id, flow.pkce_pair()[1], **overrides)
    page = flow.authorize(client, client_id=registered.client_id, request=signed, lang="en")
    assert page.status_code == 400 and "location" not in page.headers, why
    assert "signed sign-in request could not be checked" in page.text


def test_signatures_that_do_not_count(client: TestClient, make_client) -> None:
    key = _key("ES256")
    registered = _app(make_client, key, "ES256")
    challenge = flow.pkce_pair()[1]
    other_key = _object(_key("ES256"), "ES256", registered.client_id, challenge)
    unsigned = ".".join(_b64(part) for part in (
        {"alg": "none"}, {"iss": registered.client_id, "aud": ISSUER,
                          "exp": int(time.time()) + 60})) + "."
    head, payload, signature = _object(key, "ES256", registered.client_id, challenge).split(".")
    encrypted = "a.b.c.d.e"
    for token in (other_key, unsigned, f"{head}.{payload}x.{signature}", encrypted, "junk"):
        page = flow.authorize(client, client_id=registered.client_id, request=token)
        assert page.status_code == 400 and "location" not in page.headers, token[:20]
    # an app without keys cannot sign requests; an unknown client_id is the usual page
    keyless = make_client()
    page = flow.authorize(client, client_id=keyless.client_id, request=other_key)
    assert page.status_code == 400 and "location" not in page.headers
    assert flow.authorize(client, client_id="nobody", request=other_key).status_code == 400


def test_a_registered_alg_is_the_only_one(client: TestClient, make_client) -> None:
    es_key, sm2_key = _key("ES256"), _key("SM2")
    public = [{**k.as_dict(private=False), "kid": kid, "alg": alg}
              for k, kid, alg in ((es_key, "k1", "ES256"), (sm2_key, "k2", "SM2"))]
    registered = make_client(jwks={"keys": public}, request_object_signing_alg="SM2")
    challenge = flow.pkce_pair()[1]
    es = _object(es_key, "ES256", registered.client_id, challenge)
    assert flow.authorize(client, client_id=registered.client_id, request=es).status_code == 400
    now = int(time.time())
    sm2 = jwt.encode({"alg": "SM2", "kid": "k2"}, {
        "iss": registered.client_id, "aud": [ISSUER], "exp": now + 60,
        "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
        "code_challenge": challenge, "code_challenge_method": "S256"}, sm2_key,
        algorithms=["SM2"])
    page = flow.authorize(client, client_id=registered.client_id, request=sm2)
    assert page.status_code == 200 and "csrf_token" in page.text  # the sign-in page


def test_an_app_that_must_sign(client: TestClient, make_client, make_person) -> None:
    key = _key("ES256")
    registered = _app(make_client, key, "ES256", require_signed_request_object=True)
    plain = flow.authorize(client, client_id=registered.client_id,
                           code_challenge=flow.pkce_pair()[1], code_challenge_method="S256")
    assert plain.status_code == 303
    assert "error=invalid_request" in plain.headers["location"]
    # pushed without an object: refused at the PAR endpoint
    pushed = client.post("/oauth2/par", auth=(registered.client_id, registered.secret), data={
        "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
        "code_challenge": flow.pkce_pair()[1], "code_challenge_method": "S256"})
    assert pushed.status_code == 400 and pushed.json()["error"] == "invalid_request"
    signed = _object(key, "ES256", registered.client_id, flow.pkce_pair()[1])
    page = flow.authorize(client, client_id=registered.client_id, request=signed)
    assert page.status_code == 200 and "csrf_token" in page.text


def test_a_pushed_request_object(client: TestClient, make_client, make_person) -> None:
    """RFC 9126 3: the object is verified when pushed; the browser brings the request_uri,
    and an app that must sign its requests is satisfied by it."""
    key = _key("SM2")
    registered = _app(make_client, key, "SM2", require_signed_request_object=True)
    person = make_person()
    verifier, challenge = flow.pkce_pair()
    signed = _object(key, "SM2", registered.client_id, challenge)
    pushed = client.post("/oauth2/par", auth=(registered.client_id, registered.secret),
                         data={"request": signed, "state": "unsigned"})
    assert pushed.status_code == 201, pushed.text
    redirect = flow.code_flow(client, registered.client_id, person,
                              request_uri=pushed.json()["request_uri"])
    assert redirect.params["state"] == "st-signed"
    assert _redeem(client, registered, redirect.params["code"], verifier).status_code == 200
    forged = _object(_key("SM2"), "SM2", registered.client_id, challenge)
    refused = client.post("/oauth2/par", auth=(registered.client_id, registered.secret),
                          data={"request": forged})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request_object"


@pytest.mark.parametrize(("metadata", "message"), [
    ({"request_object_signing_alg": "HS256"}, "request_object_signing_alg must be one of"),
    ({"request_object_signing_alg": "SM2"}, "need the client's public keys"),
    ({"require_signed_request_object": True}, "need the client's public keys"),
    ({"require_signed_request_object": "yes"}, "require_signed_request_object must be"),
])
def test_registration_checks(make_client, metadata, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_client(**metadata)


def test_discovery_says_request_objects_are_taken(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["request_parameter_supported"] is True
    assert document["request_uri_parameter_supported"] is False
    assert document["request_object_signing_alg_values_supported"] == [
        "SM2", "RS256", "ES256", "EdDSA", "Ed25519"]
