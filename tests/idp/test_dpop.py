"""DPoP (RFC 9449): proofs at the token endpoint bind access tokens (and a public app's
refresh tokens) to the app's key; UserInfo then wants the DPoP scheme and a proof of that
key; dpop_jkt and a proof at the PAR endpoint bind the code."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt as pyjwt
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from core.gm import jose as gm_jose
from idp.oidc.dpop import token_hash
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

ISSUER = "http://127.0.0.1:8000"
TOKEN_URL = ISSUER + "/oauth2/token"
USERINFO_URL = ISSUER + "/oauth2/userinfo"


def _key(alg: str = "ES256"):
    return {"SM2": lambda: gm_jose.SM2Key.generate_key(private=True),
            "ES256": lambda: ECKey.generate_key("P-256", private=True),
            "RS256": lambda: RSAKey.generate_key(2048, private=True),
            "EdDSA": lambda: OKPKey.generate_key("Ed25519", private=True)}[alg]()


def _public(key) -> dict[str, Any]:
    return {k: v for k, v in key.as_dict(private=False).items() if k not in ("kid", "alg")}


def _thumbprint(key) -> str:
    if isinstance(key, gm_jose.SM2Key):
        return gm_jose.sm2_jwk_thumbprint(_public(key))
    return key.thumbprint()


def _proof(key, alg: str = "ES256", *, htm: str = "POST", htu: str = TOKEN_URL,
           access_token: str | None = None, header: dict | None = None, **claims) -> str:
    body = {"jti": secrets.token_urlsafe(12), "htm": htm, "htu": htu, "iat": int(time.time()),
            **({"ath": token_hash(access_token)} if access_token else {}), **claims}
    head = {"typ": "dpop+jwt", "alg": alg, "jwk": _public(key), **(header or {})}
    return jwt.encode(head, {k: v for k, v in body.items() if v is not None}, key,
                      algorithms=[alg])


def _cc(client: TestClient, registered, proof: str | None, **headers: str):
    extra = {"DPoP": proof} if proof else {}
    return client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(registered.client_id, registered.secret),
                       headers={**extra, **headers})


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA", "SM2"])
def test_client_credentials_bound_to_the_proofs_key(client: TestClient, make_client,
                                                    alg: str) -> None:
    registered, key = make_client(), _key(alg)
    answer = _cc(client, registered, _proof(key, alg))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "DPoP"
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": _thumbprint(key)}
    seen = client.post("/oauth2/introspect", data={"token": body["access_token"]},
                       auth=(registered.client_id, registered.secret)).json()
    assert seen["token_type"] == "DPoP" and seen["cnf"] == {"jkt": _thumbprint(key)}
    plain = _cc(client, registered, None).json()
    assert plain["token_type"] == "Bearer"
    assert "cnf" not in pyjwt.decode(plain["access_token"], options={"verify_signature": False})


def test_opaque_access_tokens_are_bound_too(client: TestClient, make_client) -> None:
    registered, key = make_client(access_token_format="opaque"), _key()
    token = _cc(client, registered, _proof(key)).json()["access_token"]
    seen = client.post("/oauth2/introspect", data={"token": token},
                       auth=(registered.client_id, registered.secret)).json()
    assert seen["active"] is True and seen["cnf"] == {"jkt": _thumbprint(key)}


def _private_jwk_header(key) -> dict:
    return {"jwk": {k: v for k, v in key.as_dict(private=True).items() if k != "kid"}}


def _now_plus(seconds: int) -> int:
    return int(time.time()) + seconds


# each case: (header changes, claim changes); None removes; the marks "private" and
# "other key" put the private key in the header or sign with another key
@pytest.mark.parametrize(("head", "body", "why"), [
    ({}, {"htm": "GET"}, "htm"),
    ({}, {"htu": ISSUER + "/oauth2/introspect"}, "htu"),
    ({}, {"htu": "https://other.example/oauth2/token"}, "htu host"),
    ({}, {"htu": "http://[::1/oauth2/token"}, "htu unreadable (was a 500)"),
    ({}, {"htu": "http://127.0.0.1\uff038000/oauth2/token"}, "htu NFKC (was a 500)"),
    ({}, {"htu": "http://127.0.0.1:x/oauth2/token"}, "htu port"),
    ({}, {"htu": ["x"]}, "htu a list"),
    ({}, {"iat": -600}, "too old"),
    ({}, {"iat": 600}, "in the future"),
    ({}, {"iat": None}, "no iat"),
    ({}, {"iat": "now"}, "iat no number"),
    ({}, {"jti": None}, "no jti"),
    ({}, {"jti": "x" * 300}, "a long jti"),
    ({"typ": "JWT"}, {}, "typ"),
    ({"typ": None}, {}, "no typ"),
    ({"jwk": None}, {}, "no jwk"),
    ({"jwk": "private"}, {}, "a private key in the header"),
    ({"jwk": "other key"}, {}, "signed with another key"),
    ({"jwk": "rsa 1024"}, {}, "a weak RSA key"),
])
@pytest.mark.filterwarnings("ignore:Key size should be:joserfc.errors.SecurityWarning")
def test_a_proof_that_does_not_hold_is_invalid_dpop_proof(client: TestClient, make_client,
                                                          head: dict, body: dict,
                                                          why: str) -> None:
    registered, key = make_client(), _key()
    header: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": _public(key)}
    claims: dict[str, Any] = {"jti": secrets.token_urlsafe(8), "htm": "POST", "htu": TOKEN_URL,
                              "iat": int(time.time())}
    signer = key
    for name, value in head.items():
        if value == "private":
            header["jwk"] = {k: v for k, v in key.as_dict(private=True).items() if k != "kid"}
        elif value == "other key":
            signer = _key()
        elif value == "rsa 1024":
            signer = RSAKey.generate_key(1024, private=True)
            header.update(alg="RS256", jwk=_public(signer))
        elif value is None:
            del header[name]
        else:
            header[name] = value
    for name, value in body.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = _now_plus(value) if name == "iat" and isinstance(value, int) else value
    proof = jwt.encode(header, claims, signer, algorithms=[header["alg"]])
    answer = _cc(client, registered, proof)
    assert answer.status_code == 400, why
    assert answer.json()["error"] == "invalid_dpop_proof", why


def test_proofs_that_are_no_jws(client: TestClient, make_client) -> None:
    registered = make_client()
    for proof in ("junk", "a.b.c", "a.b.c.d.e", "e30.e30.", "x" * 9000):
        answer = _cc(client, registered, proof)
        assert answer.json()["error"] == "invalid_dpop_proof", proof[:10]
    mac_key = OctKey.import_key(secrets.token_bytes(32))
    hs = jwt.encode({"typ": "dpop+jwt", "alg": "HS256", "jwk": mac_key.as_dict()},
                    {"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())},
                    mac_key, algorithms=["HS256"])
    assert _cc(client, registered, hs).json()["error"] == "invalid_dpop_proof"
    both = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(registered.client_id, registered.secret),
                       headers=[("DPoP", _proof(_key())), ("DPoP", _proof(_key()))])
    assert both.json()["error"] == "invalid_dpop_proof"


def test_a_proof_is_used_once(client: TestClient, make_client) -> None:
    registered, key = make_client(), _key()
    proof = _proof(key)
    assert _cc(client, registered, proof).status_code == 200
    again = _cc(client, registered, proof)
    assert again.status_code == 400 and "already used" in again.json()["error_description"]


def test_an_app_that_must_use_dpop(client: TestClient, make_client) -> None:
    registered = make_client(dpop_bound_access_tokens=True)
    refused = _cc(client, registered, None)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    assert _cc(client, registered, _proof(_key())).json()["token_type"] == "DPoP"
    with pytest.raises(ValueError, match="dpop_bound_access_tokens must be"):
        make_client(dpop_bound_access_tokens="yes")


def _public_app(make_client):
    return make_client(token_endpoint_auth_method="none",
                       grant_types=["authorization_code", "refresh_token"])


def _code(client: TestClient, registered, person, **params: str) -> tuple[str, str]:
    verifier, challenge = flow.pkce_pair()
    code = flow.code_flow(client, registered.client_id, person, code_challenge=challenge,
                          code_challenge_method="S256", scope="openid profile", **params)
    return code.params["code"], verifier


def _redeem(client: TestClient, registered, code: str, verifier: str, proof: str | None):
    return client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier, "client_id": registered.client_id},
        headers={"DPoP": proof} if proof else {})


def _refresh(client: TestClient, registered, token: str, proof: str | None):
    return client.post("/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": token,
        "client_id": registered.client_id}, headers={"DPoP": proof} if proof else {})


def test_a_public_apps_refresh_tokens_are_bound(client: TestClient, make_client,
                                                make_person) -> None:
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    tokens = _redeem(client, registered, code, verifier, _proof(key)).json()
    assert tokens["token_type"] == "DPoP"
    # without a proof, or with another key: refused, and the token is not spent
    assert _refresh(client, registered, tokens["refresh_token"], None).json()[
        "error"] == "invalid_grant"
    assert _refresh(client, registered, tokens["refresh_token"], _proof(_key())).json()[
        "error"] == "invalid_grant"
    renewed = _refresh(client, registered, tokens["refresh_token"], _proof(key))
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["token_type"] == "DPoP"
    claims = pyjwt.decode(renewed.json()["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": _thumbprint(key)}
    # the new refresh token is bound as well
    assert _refresh(client, registered, renewed.json()["refresh_token"], None).json()[
        "error"] == "invalid_grant"
    # the old, rotated token without the key: refused, and the family lives on (reuse is
    # judged only for the key's holder)
    assert _refresh(client, registered, tokens["refresh_token"], None).json()[
        "error"] == "invalid_grant"
    assert _refresh(client, registered, renewed.json()["refresh_token"],
                    _proof(key)).status_code == 200
    # with the key, the old token is a reuse: the family goes
    reused = _refresh(client, registered, tokens["refresh_token"], _proof(key)).json()
    assert "whole family is revoked" in reused["error_description"]


def test_a_confidential_apps_refresh_tokens_are_not_bound(client: TestClient, make_client,
                                                          make_person) -> None:
    registered, person = make_client(), make_person()
    code, verifier = _code(client, registered, person)
    tokens = client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier}, headers={"DPoP": _proof(_key())}).json()
    assert tokens["token_type"] == "DPoP"
    renewed = client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    assert renewed["token_type"] == "Bearer"  # a new key, or none: the app's credentials


def test_userinfo_wants_the_dpop_scheme_and_a_proof_of_the_key(client: TestClient, make_client,
                                                               make_person) -> None:
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    token = _redeem(client, registered, code, verifier, _proof(key)).json()["access_token"]

    def call(scheme: str, proof: str | None, method: str = "GET"):
        headers = {"Authorization": f"{scheme} {token}", **({"DPoP": proof} if proof else {})}
        return client.request(method, "/oauth2/userinfo", headers=headers)

    good = call("DPoP", _proof(key, htm="GET", htu=USERINFO_URL, access_token=token))
    assert good.status_code == 200 and good.json()["sub"] == person.sub
    posted = call("DPoP", _proof(key, htm="POST", htu=USERINFO_URL, access_token=token), "POST")
    assert posted.status_code == 200
    for scheme, proof, why in [
        ("Bearer", None, "a bound token as a bearer token"),
        ("DPoP", None, "no proof"),
        ("DPoP", _proof(key, htm="GET", htu=USERINFO_URL), "no ath"),
        ("DPoP", _proof(key, htm="GET", htu=USERINFO_URL, access_token="other"), "wrong ath"),
        ("DPoP", _proof(_key(), htm="GET", htu=USERINFO_URL, access_token=token), "other key"),
        ("DPoP", _proof(key, htm="POST", htu=USERINFO_URL, access_token=token), "htm"),
        ("DPoP", _proof(key, htm="GET", htu=TOKEN_URL, access_token=token), "htu"),
    ]:
        refused = call(scheme, proof)
        assert refused.status_code == 401, why
        if why == "other key":  # RFC 9449 7.1: the key binding fails
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert refused.headers["www-authenticate"].startswith("DPoP error="), why
        assert 'algs="SM2 RS256 ES256 EdDSA Ed25519"' in refused.headers["www-authenticate"]
    in_body = client.post("/oauth2/userinfo", data={"access_token": token},
                          headers={"DPoP": _proof(key, htm="POST", htu=USERINFO_URL,
                                                  access_token=token)})
    assert in_body.status_code == 401  # a bound token only in the Authorization header


def test_an_unbound_token_is_no_dpop_token(client: TestClient, make_client,
                                           make_person) -> None:
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    token = _redeem(client, registered, code, verifier, None).json()["access_token"]
    refused = client.get("/oauth2/userinfo", headers={
        "Authorization": f"DPoP {token}",
        "DPoP": _proof(key, htm="GET", htu=USERINFO_URL, access_token=token)})
    assert refused.status_code == 401 and "invalid_token" in refused.headers["www-authenticate"]
    assert client.get("/oauth2/userinfo", headers={
        "Authorization": f"Bearer {token}"}).status_code == 200


def test_dpop_jkt_binds_the_code(client: TestClient, make_client, make_person) -> None:
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person, dpop_jkt=_thumbprint(key))
    assert _redeem(client, registered, code, verifier, _proof(_key())).json()[
        "error"] == "invalid_grant"
    code, verifier = _code(client, registered, person, dpop_jkt=_thumbprint(key))
    assert _redeem(client, registered, code, verifier, None).json()["error"] == "invalid_grant"
    code, verifier = _code(client, registered, person, dpop_jkt=_thumbprint(key))
    assert _redeem(client, registered, code, verifier, _proof(key)).status_code == 200
    for wrong in ("short", _thumbprint(key) + "\n"):
        bad = flow.authorize(client, client_id=registered.client_id, dpop_jkt=wrong,
                             code_challenge=flow.pkce_pair()[1], code_challenge_method="S256")
        assert "error=invalid_request" in bad.headers["location"], repr(wrong)


def test_a_proof_at_the_par_endpoint_binds_the_code(client: TestClient, make_client,
                                                    make_person) -> None:
    registered, person, key = make_client(), make_person(), _key()
    verifier, challenge = flow.pkce_pair()
    request = {"response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
               "code_challenge": challenge, "code_challenge_method": "S256"}
    par_url = ISSUER + "/oauth2/par"
    auth = (registered.client_id, registered.secret)
    mismatch = client.post("/oauth2/par", auth=auth, data={**request,
                           "dpop_jkt": _thumbprint(_key())},
                           headers={"DPoP": _proof(key, htu=par_url)})
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_dpop_proof"
    pushed = client.post("/oauth2/par", auth=auth, data=request,
                         headers={"DPoP": _proof(key, htu=par_url)})
    assert pushed.status_code == 201, pushed.text
    code = flow.code_flow(client, registered.client_id, person,
                          request_uri=pushed.json()["request_uri"]).params["code"]
    redeem = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "code_verifier": verifier}
    other = client.post("/oauth2/token", auth=auth, data=redeem,
                        headers={"DPoP": _proof(_key())})
    assert other.json()["error"] == "invalid_grant"
    assert "dpop_jkt" in other.json()["error_description"]
    pushed = client.post("/oauth2/par", auth=auth, data={**request, "state": "s2"},
                         headers={"DPoP": _proof(key, htu=par_url)})
    code = flow.code_flow(client, registered.client_id, person,
                          request_uri=pushed.json()["request_uri"]).params["code"]
    good = client.post("/oauth2/token", auth=auth, data={**redeem, "code": code},
                       headers={"DPoP": _proof(key)})
    assert good.status_code == 200 and good.json()["token_type"] == "DPoP"


def test_discovery_and_preflight(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["dpop_signing_alg_values_supported"] == [
        "SM2", "RS256", "ES256", "EdDSA", "Ed25519"]
    preflight = client.options("/oauth2/token", headers={
        "Origin": "https://spa.example.cn", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "dpop, content-type"})
    assert "DPoP" in preflight.headers["access-control-allow-headers"]


def test_an_opaque_bound_token_at_userinfo(client: TestClient, make_client,
                                           make_person) -> None:
    registered = make_client(token_endpoint_auth_method="none", access_token_format="opaque",
                             grant_types=["authorization_code", "refresh_token"])
    person, key = make_person(), _key("SM2")
    code, verifier = _code(client, registered, person)
    token = _redeem(client, registered, code, verifier, _proof(key, "SM2")).json()[
        "access_token"]
    assert client.get("/oauth2/userinfo", headers={
        "Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/oauth2/userinfo", headers={
        "Authorization": f"DPoP {token}",
        "DPoP": _proof(key, "SM2", htm="GET", htu=USERINFO_URL, access_token=token),
    }).status_code == 200


def test_a_grant_without_a_key_is_stored_as_before() -> None:
    """A rolling deploy or a rollback: a worker of the version before reads the grants
    this one writes, unless they are bound (then it fails closed)."""
    from idp.oidc.tokens import Grant

    assert "jkt" not in Grant(client_id="a", scope="openid").to_json()
    bound = Grant(client_id="a", scope="openid", jkt="k" * 43)
    assert Grant.from_json(bound.to_json()).jkt == "k" * 43


REVOKE_URL = ISSUER + "/oauth2/revoke"


def _revoke(client: TestClient, registered, token: str, proof: str | None):
    return client.post("/oauth2/revoke", data={"token": token,
                                               "client_id": registered.client_id},
                       headers={"DPoP": proof} if proof else {})


def test_bound_tokens_are_revoked_only_with_the_key(client: TestClient, make_client,
                                                    make_person) -> None:
    """Whoever holds a copy of a bound token, or an old rotated refresh token, cannot sign
    the person out of the app."""
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    first = _redeem(client, registered, code, verifier, _proof(key)).json()
    renewed = _refresh(client, registered, first["refresh_token"], _proof(key)).json()
    for token in (first["refresh_token"], renewed["refresh_token"], renewed["access_token"]):
        # no proof, another key's, or one made for the token endpoint
        for proof in (None, _proof(_key(), htu=REVOKE_URL), _proof(key)):
            refused = _revoke(client, registered, token, proof)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"] == "invalid_dpop_proof"
    assert _refresh(client, registered, renewed["refresh_token"], _proof(key)).status_code == 200
    code, verifier = _code(client, registered, person)
    tokens = _redeem(client, registered, code, verifier, _proof(key)).json()
    assert _revoke(client, registered, tokens["access_token"],
                   _proof(key, htu=REVOKE_URL)).status_code == 200
    assert _revoke(client, registered, tokens["refresh_token"],
                   _proof(key, htu=REVOKE_URL)).status_code == 200
    assert _refresh(client, registered, tokens["refresh_token"], _proof(key)).json()[
        "error"] == "invalid_grant"
    userinfo = client.get("/oauth2/userinfo", headers={
        "Authorization": f"DPoP {tokens['access_token']}",
        "DPoP": _proof(key, htm="GET", htu=USERINFO_URL, access_token=tokens["access_token"])})
    assert userinfo.status_code == 401


def test_a_bound_codes_reuse_counts_only_from_its_key(client: TestClient, make_client,
                                                      make_person) -> None:
    registered, person, key = _public_app(make_client), make_person(), _key()
    other_app = _public_app(make_client)
    code, verifier = _code(client, registered, person, dpop_jkt=_thumbprint(key))
    tokens = _redeem(client, registered, code, verifier, _proof(key)).json()
    # a copy of the used code, without the key or from another app: refused, nothing revoked
    for app, proof in ((registered, None), (registered, _proof(_key())), (other_app, None)):
        assert _redeem(client, app, code, verifier, proof).json()["error"] == "invalid_grant"
    renewed = _refresh(client, registered, tokens["refresh_token"], _proof(key))
    assert renewed.status_code == 200
    # the app itself, with its key, redeeming it again: a reuse, the tokens go
    assert _redeem(client, registered, code, verifier, _proof(key)).json()[
        "error"] == "invalid_grant"
    assert _refresh(client, registered, renewed.json()["refresh_token"], _proof(key)).json()[
        "error"] == "invalid_grant"


def test_a_bound_codes_copy_cannot_spoil_a_redemption_under_way(client: TestClient,
                                                                   make_client,
                                                                   make_person) -> None:
    """While the app's own redemption is still issuing its tokens (the code taken, the
    mark ``pending``), a copy of the code without the key is refused and leaves the mark:
    the app's redemption then goes through. With the key, it is a reuse, as before."""
    from idp.oidc import codes
    from idp.oidc.tokens import token_key

    registered, person, key = _public_app(make_client), make_person(), _key()
    store = client.app.state.store
    for with_key, after in ((False, codes.PENDING), (True, codes.REUSED)):
        code, verifier = _code(client, registered, person, dpop_jkt=_thumbprint(key))
        used = "code-used:" + token_key(code)
        assert store.take_and_mark("code:" + token_key(code), used, codes.PENDING, ttl=60)
        proofs = [_proof(key)] if with_key else [None, _proof(_key())]
        for proof in proofs:
            assert _redeem(client, registered, code, verifier, proof).json()[
                "error"] == "invalid_grant"
        assert store.get(used) == after


def test_a_head_requests_proof_names_head(client: TestClient, make_client,
                                          make_person) -> None:
    """RFC 9449 4.3: htm is the method the client sent (the middleware answers a HEAD as a
    GET without its body)."""
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    token = _redeem(client, registered, code, verifier, _proof(key)).json()["access_token"]

    def head(method: str):
        return client.head("/oauth2/userinfo", headers={
            "Authorization": f"DPoP {token}",
            "DPoP": _proof(key, htm=method, htu=USERINFO_URL, access_token=token)})

    assert head("HEAD").status_code == 200
    assert head("GET").status_code == 401


def test_a_request_objects_dpop_jkt_binds_the_code(client: TestClient, make_client,
                                                   make_person) -> None:
    from tests.idp.test_request_objects import _object

    signer, key, person = _key(), _key(), make_person()
    registered = make_client(jwks={"keys": [{**_public(signer), "kid": "k1", "alg": "ES256"}]})
    verifier, challenge = flow.pkce_pair()
    signed = _object(signer, "ES256", registered.client_id, challenge,
                     dpop_jkt=_thumbprint(key))
    code = flow.code_flow(client, registered.client_id, person, request=signed,
                          dpop_jkt=_thumbprint(_key())).params["code"]  # the URL's: ignored
    redeem = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "code_verifier": verifier}
    answer = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                         data=redeem, headers={"DPoP": _proof(key)})
    assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP"


@pytest.fixture
def nonces_required(app):
    app.state.settings = app.state.settings.model_copy(update={"dpop_nonce": "required"})
    return app


def test_required_nonces(client: TestClient, make_client, make_person,
                         nonces_required) -> None:
    """RFC 9449 8, 9: a proof without the provider's nonce gets use_dpop_nonce and a nonce
    to use (400 at the token endpoint, 401 at UserInfo); with it, the request goes through
    and the answer carries the next nonce."""
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    asked = _redeem(client, registered, code, verifier, _proof(key))
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    nonce = asked.headers["DPoP-Nonce"]
    assert _redeem(client, registered, code, verifier, _proof(
        key, nonce="1." + "0" * 32)).json()["error"] == "use_dpop_nonce"  # not ours
    tokens = _redeem(client, registered, code, verifier, _proof(key, nonce=nonce))
    assert tokens.status_code == 200, tokens.text  # the code was not spent by the retries
    assert tokens.headers["DPoP-Nonce"]
    # UserInfo: tests/idp/test_dpop_nonce_consent.py
    # without a proof, nonces are not asked for: a bearer token of another app still works
    other = make_client()
    assert _cc(client, other, None).status_code == 200


def test_a_nonce_serves_two_windows_at_most(client: TestClient, make_client,
                                            nonces_required, monkeypatch) -> None:
    from idp.oidc import dpop

    registered, key = make_client(), _key()
    nonce = _cc(client, registered, _proof(key)).headers["DPoP-Nonce"]
    now = time.time()
    monkeypatch.setattr(dpop.time, "time", lambda: now + dpop.NONCE_SECONDS)
    assert _cc(client, registered, _proof(key, nonce=nonce)).status_code == 200
    monkeypatch.setattr(dpop.time, "time", lambda: now + 2 * dpop.NONCE_SECONDS + 1)
    stale = _cc(client, registered, _proof(key, nonce=nonce))  # its iat: the same clock
    assert stale.json()["error"] == "use_dpop_nonce"
    assert stale.headers["DPoP-Nonce"] != nonce


def test_a_nonce_is_ignored_when_not_required(client: TestClient, make_client) -> None:
    """With nonces off a proof's nonce is not read: a client that kept one from a time they
    were required keeps working."""
    registered, key = make_client(), _key()
    assert "DPoP-Nonce" not in _cc(client, registered, _proof(key)).headers
    assert _cc(client, registered, _proof(key, nonce="made-up")).status_code == 200


def test_the_nonce_header_is_exposed_to_pages(client: TestClient, make_client) -> None:
    registered = make_client(token_endpoint_auth_method="none",
                             grant_types=["authorization_code"],
                             redirect_uris=["https://spa.example.edu.cn/cb"])
    answer = client.post("/oauth2/token", data={"grant_type": "authorization_code",
                                                 "client_id": registered.client_id},
                         headers={"Origin": "https://spa.example.edu.cn"})
    assert "DPoP-Nonce" in answer.headers["access-control-expose-headers"]
