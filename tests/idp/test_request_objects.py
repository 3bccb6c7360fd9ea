"""Request objects (RFC 9101, OIDC Core 6.1): signed by the app's registered key, by value
at the authorization endpoint or pushed; only the object's parameters count; one that
cannot be verified is an error page (never a redirect) or, pushed, invalid_request_object."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jws, jwt
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


# times as seconds from now ("+" / "-"): the test may run minutes after collection
@pytest.mark.parametrize(("overrides", "why"), [
    ({"iss": "someone-else"}, "iss"),
    ({"aud": "https://other.example"}, "aud"),
    ({"aud": None}, "no aud"),
    ({"aud": [ISSUER, "https://other.example"]}, "two audiences"),
    ({"exp": "-10"}, "expired"),
    ({"exp": None}, "no exp"),
    ({"exp": "+7200"}, "lives too long"),
    ({"nbf": "+600"}, "not yet"),
    ({"client_id": "someone-else"}, "client_id"),
    ({"max_age": [1]}, "a list"),
    ({"request_uri": "https://x"}, "nested"),
])
def test_an_object_that_cannot_be_used_is_a_page(client: TestClient, make_client,
                                                 overrides, why: str) -> None:
    key = _key("ES256")
    registered = _app(make_client, key, "ES256")
    now = int(time.time())
    overrides = {k: now + int(v) if isinstance(v, str) and v[0] in "+-" else v
                 for k, v in overrides.items()}
    signed = _object(key, "ES256", registered.client_id, flow.pkce_pair()[1], **overrides)
    page = flow.authorize(client, client_id=registered.client_id, request=signed, lang="en")
    assert page.status_code == 400 and "location" not in page.headers, why
    assert "signed sign-in request could not be checked" in page.text
    assert flow.authorize(client, client_id=registered.client_id, request=_object(
        key, "ES256", registered.client_id, flow.pkce_pair()[1])).status_code == 200


@pytest.mark.parametrize(("payload", "why"), [
    (b'"state": "\\ud800"', "a lone surrogate in state"),
    (b'"login_hint": "\\udfff"', "a lone surrogate in login_hint"),
    (b'"nonce": "a\\u0000b"', "NUL"),
])
def test_claims_are_strict_json(client: TestClient, make_client, payload: bytes,
                                why: str) -> None:
    """joserfc reads lone surrogates and NaN; they would reach a page or a token (500)."""
    key = _key("ES256")
    registered = _app(make_client, key, "ES256")
    now = int(time.time())
    claims = json.dumps({"iss": registered.client_id, "aud": ISSUER, "exp": now + 60,
                         "response_type": "code", "redirect_uri": REDIRECT_URI,
                         "scope": "openid", "code_challenge": flow.pkce_pair()[1],
                         "code_challenge_method": "S256"}).encode()
    for raw in (claims[:-1] + b", " + payload + b"}",
                claims.replace(str(now + 60).encode(), b"NaN")):
        token = jws.serialize_compact({"alg": "ES256", "kid": "k1"}, raw, key)
        page = flow.authorize(client, client_id=registered.client_id, request=token)
        assert page.status_code == 400 and "location" not in page.headers, why
        pushed = client.post("/oauth2/par", auth=(registered.client_id, registered.secret),
                             data={"request": token})
        assert pushed.json()["error"] == "invalid_request_object", why


def test_typed_objects_and_assertions_do_not_mix(client: TestClient, make_client) -> None:
    """RFC 9101 10.8: a JWT of another type is no request object, and a request object is
    no client assertion (it travels in the browser)."""
    key = _key("ES256")
    public = {**key.as_dict(private=False), "kid": "k1", "alg": "ES256"}
    registered = make_client(token_endpoint_auth_method="private_key_jwt",
                             jwks={"keys": [public]})
    challenge = flow.pkce_pair()[1]
    now = int(time.time())
    claims = {"iss": registered.client_id, "sub": registered.client_id, "aud": ISSUER,
              "exp": now + 60, "jti": "j-1", "response_type": "code",
              "redirect_uri": REDIRECT_URI, "scope": "openid", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    for typ in ("at+jwt", "client-authentication+jwt", "logout+jwt"):
        token = jwt.encode({"alg": "ES256", "kid": "k1", "typ": typ}, claims, key,
                           algorithms=["ES256"])
        page = flow.authorize(client, client_id=registered.client_id, request=token)
        assert page.status_code == 400 and "location" not in page.headers, typ
    for header, body in (({"typ": "oauth-authz-req+jwt"}, {"jti": "j-2"}),
                         ({}, {"jti": "j-3"})):  # untyped, but with authorization parameters
        token = jwt.encode({"alg": "ES256", "kid": "k1", **header}, claims | body, key,
                           algorithms=["ES256"])
        assert flow.authorize(client, client_id=registered.client_id,
                              request=token).status_code == 200  # a good request object
        refused = client.post("/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": registered.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": token})
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_a_request_with_a_request_uri_beside_it_is_a_page(client: TestClient,
                                                          make_client) -> None:
    key = _key("ES256")
    registered = _app(make_client, key, "ES256")
    signed = _object(key, "ES256", registered.client_id, flow.pkce_pair()[1])
    page = flow.authorize(client, client_id=registered.client_id, request=signed,
                          request_uri="https://evil.example/ro")
    assert page.status_code == 400 and "location" not in page.headers


def test_the_objects_parameters_as_the_endpoint_reads_them() -> None:
    """max_age as a number and claims as an object become the text of plain parameters;
    what the endpoint does not read is left out."""
    from directory.apps import ClientMetadata
    from idp.oidc.authorize import PARAMETERS
    from idp.oidc.request_objects import unpack

    key = _key("ES256")
    app = ClientMetadata(client_id="app-1", name="x", status="approved", first_party=True,
                         client_secret_mac=None, jwks={"keys": [
                             {**key.as_dict(private=False), "kid": "k1", "alg": "ES256"}]})
    wanted = {"id_token": {"acr": {"essential": True, "values": ["urn:edu:acr:mfa"]}}}
    token = _object(key, "ES256", "app-1", "c" * 43, max_age=600, claims=wanted, extra="x",
                    ui_locales="en zh-CN")
    params = unpack(token, app, ISSUER, "app-1", PARAMETERS)
    assert params["max_age"] == "600" and json.loads(params["claims"]) == wanted
    assert params["ui_locales"] == "en zh-CN" and params["client_id"] == "app-1"
    assert "extra" not in params and "iss" not in params and "exp" not in params


def test_signatures_that_do_not_count(client: TestClient, make_client) -> None:
    key = _key("ES256")
    registered = _app(make_client, key, "ES256")
    challenge = flow.pkce_pair()[1]
    other_key = _object(_key("ES256"), "ES256", registered.client_id, challenge)
    complete = jwt.decode(_object(key, "ES256", registered.client_id, challenge), key).claims
    unsigned = ".".join(_b64(part) for part in ({"alg": "none"}, complete)) + "."
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
