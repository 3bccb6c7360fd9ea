"""private_key_jwt client authentication (RFC 7523) with SM2, ES256, RS256 and EdDSA keys."""

from __future__ import annotations

import json
import secrets
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from core.gm import jose as gm_jose

ISSUER = "http://127.0.0.1:8000"
TOKEN_URL = ISSUER + "/oauth2/token"


def _key(alg: str):
    return {"SM2": lambda: gm_jose.SM2Key.generate_key(private=True),
            "ES256": lambda: ECKey.generate_key("P-256", private=True),
            "RS256": lambda: RSAKey.generate_key(2048, private=True),
            "EdDSA": lambda: OKPKey.generate_key("Ed25519", private=True)}[alg]()


def _assertion(key, alg: str, client_id: str, typ: str | None = None, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "iat": now,
              "exp": now + 60, "jti": secrets.token_hex(8), **overrides}
    header = {"alg": alg, "kid": "k1", **({"typ": typ} if typ else {})}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key,
                      algorithms=[alg])


def _client(make_client, key, alg: str):
    public = {**key.as_dict(private=False), "kid": "k1", "alg": alg, "use": "sig"}
    return make_client(token_endpoint_auth_method="private_key_jwt",
                       jwks={"keys": [public]}), public


def _token(client: TestClient, client_id: str, assertion: str):
    return client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})


@pytest.mark.parametrize("alg", ["SM2", "ES256", "RS256", "EdDSA"])
def test_private_key_jwt_accepted_once(client: TestClient, make_client, alg: str) -> None:
    key = _key(alg)
    registered, _public = _client(make_client, key, alg)
    assertion = _assertion(key, alg, registered.client_id)
    first = _token(client, registered.client_id, assertion)
    assert first.status_code == 200, first.text
    replay = _token(client, registered.client_id, assertion)
    assert replay.status_code == 401 and "already used" in replay.json()["error_description"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": "https://elsewhere.example.com/token"}, "aud"),
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"exp": int(time.time()) + 3600}, "too long"),
        ({"jti": None}, "jti"),
        ({"iss": "someone-else"}, "iss and sub"),
        ({"aud": "http://127.0.0.1:8000/oauth2/introspect"}, "aud"),  # not the one called
        ({"nbf": "now"}, "nbf"),
        ({"aud": [ISSUER, "https://elsewhere.example.com"]}, "aud"),  # one audience only
        ({"aud": [ISSUER, TOKEN_URL]}, "aud"),
        ({"aud": []}, "aud"),
        ({"aud": {"iss": ISSUER}}, "aud"),
    ],
)
def test_bad_assertions_refused(client: TestClient, make_client, overrides, message) -> None:
    key = _key("ES256")
    registered, _ = _client(make_client, key, "ES256")
    response = _token(client, registered.client_id,
                      _assertion(key, "ES256", registered.client_id, **overrides))
    assert response.status_code == 401
    assert message in response.json()["error_description"]


@pytest.mark.parametrize("aud", [ISSUER, [ISSUER], TOKEN_URL])
def test_the_issuer_or_the_endpoint_by_default(client: TestClient, make_client, aud) -> None:
    key = _key("ES256")
    registered, _ = _client(make_client, key, "ES256")
    answer = _token(client, registered.client_id,
                    _assertion(key, "ES256", registered.client_id, aud=aud))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("typ", ["client-authentication+jwt",
                                 "application/Client-Authentication+JWT"])
def test_an_assertion_typed_as_rfc7523bis_must_name_the_issuer_alone(
        client: TestClient, make_client, typ: str) -> None:
    """draft-ietf-oauth-rfc7523bis 4: ``typ: client-authentication+jwt`` says the client
    follows the update, so its ``aud`` is the issuer alone, never an endpoint."""
    key = _key("SM2")
    registered, _ = _client(make_client, key, "SM2")
    endpoint = _token(client, registered.client_id,
                      _assertion(key, "SM2", registered.client_id, typ=typ))
    assert endpoint.status_code == 401
    assert endpoint.json()["error_description"] == "aud must be the issuer"
    issuer = _token(client, registered.client_id,
                    _assertion(key, "SM2", registered.client_id, typ=typ, aud=ISSUER))
    assert issuer.status_code == 200, issuer.text


def test_the_issuer_alone_when_configured(app, make_client, monkeypatch) -> None:
    """``IDP_CLIENT_ASSERTION_AUDIENCE=issuer``: the update's rule for every assertion."""
    monkeypatch.setattr(app.state, "settings", app.state.settings.model_copy(
        update={"client_assertion_audience": "issuer"}))
    client = TestClient(app)
    key = _key("ES256")
    registered, _ = _client(make_client, key, "ES256")
    endpoint = _token(client, registered.client_id,
                      _assertion(key, "ES256", registered.client_id))
    assert endpoint.status_code == 401
    assert endpoint.json()["error_description"] == "aud must be the issuer"
    issuer = _token(client, registered.client_id,
                    _assertion(key, "ES256", registered.client_id, aud=ISSUER))
    assert issuer.status_code == 200, issuer.text


@pytest.mark.parametrize("registered", [None, "EdDSA", "Ed25519"])
def test_ed25519_is_eddsa_by_its_fully_specified_name(client: TestClient, make_client,
                                                      registered) -> None:
    """RFC 9864: ``Ed25519`` names EdDSA over Ed25519; a key registered as ``EdDSA``
    verifies assertions signed under either name (oauth4webapi 3 signs ``Ed25519``)."""
    key = _key("EdDSA")
    public = {**key.as_dict(private=False), "kid": "k1", "alg": "EdDSA", "use": "sig"}
    metadata = {"token_endpoint_auth_signing_alg": registered} if registered else {}
    made = make_client(token_endpoint_auth_method="private_key_jwt",
                       jwks={"keys": [public]}, **metadata)
    for alg in ("Ed25519", "EdDSA"):
        answer = _token(client, made.client_id, _assertion(key, alg, made.client_id))
        assert answer.status_code == 200, (alg, answer.text)
    es256 = _key("ES256")
    other = make_client(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [
        {**es256.as_dict(private=False), "kid": "k1", "alg": "ES256", "use": "sig"}]})
    assert _token(client, other.client_id,  # the name is no way around the key's type
                  _assertion(key, "Ed25519", other.client_id)).status_code == 401


def test_assertion_signed_by_another_key_refused(client: TestClient, make_client) -> None:
    registered, _ = _client(make_client, _key("SM2"), "SM2")
    forged = _assertion(_key("SM2"), "SM2", registered.client_id)
    assert _token(client, registered.client_id, forged).status_code == 401


def test_alg_none_and_confusion_refused(client: TestClient, make_client) -> None:
    key = _key("ES256")
    registered, public = _client(make_client, key, "ES256")
    import base64

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": registered.client_id, "sub": registered.client_id, "aud": TOKEN_URL,
              "exp": int(time.time()) + 60, "jti": "x1"}
    unsigned = f"{b64({'alg': 'none'})}.{b64(claims)}."
    assert _token(client, registered.client_id, unsigned).status_code == 401
    import hmac

    signing_input = f"{b64({'alg': 'HS256'})}.{b64(claims)}"
    mac = hmac.new(json.dumps(public).encode(), signing_input.encode(), "sha256").digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert _token(client, registered.client_id, forged).status_code == 401


def test_secret_methods_cannot_be_mixed(client: TestClient, make_client) -> None:
    registered = make_client()
    response = client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_secret": registered.secret,
        "client_id": registered.client_id}, auth=(registered.client_id, registered.secret))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_the_registered_signing_alg_is_the_only_one(client: TestClient, make_client) -> None:
    """OIDC Dynamic Client Registration 2: with ``token_endpoint_auth_signing_alg``
    registered, assertions signed with any other algorithm MUST be rejected."""
    es_key, rs_key = _key("ES256"), _key("RS256")
    keys = [{**es_key.as_dict(private=False), "kid": "k1", "alg": "ES256", "use": "sig"},
            {**rs_key.as_dict(private=False), "kid": "k2", "alg": "RS256", "use": "sig"}]
    registered = make_client(token_endpoint_auth_method="private_key_jwt",
                             token_endpoint_auth_signing_alg="ES256", jwks={"keys": keys})
    now = int(time.time())
    claims = {"iss": registered.client_id, "sub": registered.client_id, "aud": TOKEN_URL,
              "iat": now, "exp": now + 60}
    other = jwt.encode({"alg": "RS256", "kid": "k2"}, {**claims, "jti": "a"}, rs_key,
                       algorithms=["RS256"])
    refused = _token(client, registered.client_id, other)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert _token(client, registered.client_id,
                  _assertion(es_key, "ES256", registered.client_id)).status_code == 200


@pytest.mark.parametrize(("metadata", "message"), [
    ({"token_endpoint_auth_signing_alg": "HS256"}, "token_endpoint_auth_signing_alg"),
    ({"userinfo_signed_response_alg": "HS256"}, "userinfo_signed_response_alg must be one of"),
    ({"userinfo_signed_response_alg": ["SM2"]}, "userinfo_signed_response_alg must be a string"),
    ({"userinfo_encrypted_response_alg": "RSA-OAEP"}, "not supported: userinfo_encrypted"),
    ({"id_token_encrypted_response_alg": "RSA-OAEP"}, "not supported"),
    ({"subject_type": "pairwise", "redirect_uris": ["https://a.example.cn/cb",
                                                     "https://b.example.cn/cb"]}, "one host"),
    ({"subject_type": "ppid"}, "subject_type"),
    ({"response_types": ["code", "id_token"]}, "response_types"),
    # accepted, these broke every grant of the app with a 500 (no PS256 key to sign with)
    ({"access_token_signed_response_alg": "PS256"}, "access_token_signed_response_alg"),
    ({"access_token_format": "paseto"}, "access_token_format"),
    ({"protected_resource": "yes"}, "protected_resource"),
    # accepted, these broke sign-in with a 500 or silently dropped the second factor
    ({"default_acr_values": 5}, "default_acr_values"),
    ({"default_acr_values": "urn:edu:acr:mfa"}, "default_acr_values"),
    ({"default_acr_values": [["urn:edu:acr:mfa"]]}, "default_acr_values"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": "x"}}, "jwks"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "EC"}]}},
     "jwks"),
    ({"client_secret": "s3cr3t"}, "client_secret"),  # would sit in the metadata in clear
    # RFC 7591 2: jwks and jwks_uri never together; jwks_uri is not fetched here at all
    ({"jwks_uri": "https://a.example.cn/jwks"}, "not supported: jwks_uri"),
    ({"introspection_signed_response_alg": "RS256"}, "not supported"),  # RFC 9701
    ({"default_max_age": -1}, "default_max_age"),
    ({"default_max_age": "3600"}, "default_max_age"),
    ({"default_max_age": True}, "default_max_age"),
    ({"status": "approved", "client_id": "fake"}, "set by the registry"),
])
def test_unsupported_registration_metadata_is_refused(make_client, metadata: dict,
                                                      message: str) -> None:
    """Stored and ignored, the app would believe it had signed UserInfo or encrypted ID
    tokens; pairwise subjects need one sector."""
    with pytest.raises(ValueError, match=message):
        make_client(**metadata)


def _rsa_1024() -> dict:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return RSAKey.import_key(rsa.generate_private_key(65537, 1024)).as_dict(private=True)


@pytest.mark.filterwarnings("ignore:Key size should be")
@pytest.mark.parametrize("private", [
    lambda: {**_rsa_1024(), "kid": "k1"},  # private members: a secret in the metadata
    lambda: ECKey.generate_key("P-256", private=True).as_dict(private=True),
    lambda: {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
])
def test_client_keys_must_be_public(make_client, private) -> None:
    """RFC 7591 2: ``jwks`` holds the client's *public* keys."""
    with pytest.raises(ValueError, match="private or symmetric"):
        make_client(token_endpoint_auth_method="private_key_jwt",
                    jwks={"keys": [private()]})


@pytest.mark.filterwarnings("ignore:Key size should be")
def test_a_short_rsa_key_is_refused_at_registration_and_if_stored(
        client: TestClient, make_client, db) -> None:
    """RFC 7518 3.3: "A key of size 2048 bits or larger MUST be used" with RS256. A key
    stored before registration checked it authenticates nothing either."""
    from sqlalchemy import select

    from directory.apps import App

    weak = RSAKey.import_key(_rsa_1024())
    public = {**weak.as_dict(private=False), "kid": "k1", "alg": "RS256", "use": "sig"}
    with pytest.raises(ValueError, match="at least 2048 bits"):
        make_client(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public]})
    strong = _key("RS256")
    registered, _public = _client(make_client, strong, "RS256")
    with db.session() as session:  # as an older version let it be stored
        app = session.scalar(select(App).where(App.client_id == registered.client_id))
        metadata = json.loads(app.metadata_json)
        metadata["jwks"] = {"keys": [public]}
        app.metadata_json = json.dumps(metadata)
    client.app.state.clients.forget(registered.client_id)
    refused = _token(client, registered.client_id,
                     _assertion(weak, "RS256", registered.client_id))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_unsupported_features_turned_off_are_fine(make_client) -> None:
    make_client(tls_client_certificate_bound_access_tokens=False, request_uris=[])


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
def test_an_assertion_may_name_the_endpoint_it_is_sent_to(client: TestClient, make_client,
                                                         path: str) -> None:
    """RFC 7523 3: ``aud`` identifies the authorization server; authlib puts the URL it
    posts to, so introspection and revocation take their own URL (and the issuer) too."""
    key = _key("ES256")
    registered, _ = _client(make_client, key, "ES256")
    for aud in ("http://127.0.0.1:8000" + path, "http://127.0.0.1:8000", TOKEN_URL):
        response = client.post(path, data={
            "token": "x", "client_assertion": _assertion(key, "ES256", registered.client_id,
                                                         aud=aud),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
        assert response.status_code == 200, (aud, response.text)


def test_nbf_is_checked_with_a_clock_skew(client: TestClient, make_client) -> None:
    """Times made here, not when the module is collected (a long run would age them)."""
    key = _key("ES256")
    registered, _ = _client(make_client, key, "ES256")
    now = int(time.time())
    skewed = _assertion(key, "ES256", registered.client_id, nbf=now + 30, exp=now + 90)
    assert _token(client, registered.client_id, skewed).status_code == 200
    early = _token(client, registered.client_id, _assertion(
        key, "ES256", registered.client_id, nbf=now + 300, exp=now + 400))
    assert early.status_code == 401 and "nbf" in early.json()["error_description"]


@pytest.mark.parametrize("alg", ["HS256", "none", "Ed448"])
def test_registration_names_only_the_assertion_algorithms(make_client, alg: str) -> None:
    key = _key("ES256")
    with pytest.raises(ValueError, match="token_endpoint_auth_signing_alg must be one of "
                                         "SM2, RS256, ES256, EdDSA, Ed25519"):
        make_client(token_endpoint_auth_method="private_key_jwt",
                    token_endpoint_auth_signing_alg=alg,
                    jwks={"keys": [{**key.as_dict(private=False), "kid": "k1"}]})
