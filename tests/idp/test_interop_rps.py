"""Real relying-party libraries against a live provider (uvicorn on 127.0.0.1).

Peers: npm openid-client 6 and oauth4webapi 3 (tests/interop/rp_*.mjs, through the
real login form with tests/interop/browser_login.mjs), authlib's httpx OAuth2Client
with joserfc, and for SM2 ID tokens npm sm-crypto and the openssl command line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.idp.conftest import REDIRECT_URI
from tests.idp.live import LiveRP, live_rp, live_server, login_through_form  # noqa: F401
from tests.interop import node

pytestmark = pytest.mark.interop

OPENID_CLIENT = "rp_openid_client.mjs"
OAUTH4WEBAPI = "rp_oauth4webapi.mjs"


def peer(script: str, rp: LiveRP, scenario: str, **extra: Any) -> dict[str, Any]:
    return node.run_json(script, stdin=rp.peer_config(scenario=scenario, **extra), timeout=90)


def half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def assert_id_token(id_token: dict[str, Any], rp: LiveRP, alg: str, nonce: str) -> None:
    claims = id_token["claims"]
    assert id_token["header"]["alg"] == alg and id_token["header"]["kid"]
    assert claims["iss"] == rp.server.url and claims["aud"] == rp.client.client_id
    assert claims["sub"] == rp.person.sub and claims["nonce"] == nonce
    assert claims["amr"] == ["pwd"] and claims["acr"] == "urn:edu:acr:sfa" and claims["sid"]
    assert abs(claims["auth_time"] - time.time()) < 120
    assert id_token["at_hash_ok"] is True


def assert_userinfo(userinfo: dict[str, Any], rp: LiveRP) -> None:
    assert userinfo["sub"] == rp.person.sub and userinfo["name"] == "赵同学"
    assert userinfo["school"] == {"code": "T-SCHOOL", "name": "测试学校"}
    assert userinfo["grade"] == "一年级" and userinfo["class"] == "1班"
    assert userinfo["edu_roles"] == ["student"]


# -- openid-client ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_openid_client_confidential_flow(live_rp, alg: str) -> None:  # noqa: F811
    rp = live_rp(id_token_signed_response_alg=alg)
    out = peer(OPENID_CLIENT, rp, "full")
    assert out["discovery"]["issuer"] == rp.server.url
    assert out["pages"] == ["/login"]  # first-party: no consent page
    params = out["callback_params"]
    assert params["iss"] == rp.server.url and params["code"] and params["state"]
    assert out["token_type"] == "bearer"
    # OIDC Core 11: offline_access needs the person's consent, which a first-party app's
    # sign-in does not ask for: ignored, and the refresh token lives with the session
    assert set(out["scope"].split()) == {"openid", "profile", "edu"}
    assert_id_token(out["id_token"], rp, alg, out["nonce"])
    assert_userinfo(out["userinfo"], rp)

    refresh = out["refresh"]
    assert refresh["new_access_token"] and refresh["new_refresh_token"]
    assert refresh["userinfo_sub"] == rp.person.sub
    if refresh["id_token"] is not None:  # OIDC Core 12.2: same iss, sub, aud, auth_time
        again, first = refresh["id_token"]["claims"], out["id_token"]["claims"]
        assert refresh["id_token"]["header"]["alg"] == alg
        assert {k: again[k] for k in ("iss", "sub", "aud", "auth_time")} == {
            k: first[k] for k in ("iss", "sub", "aud", "auth_time")}

    cc = out["client_credentials"]
    assert cc["token_type"] == "bearer" and cc["scope"] == "api.read"
    assert not cc["has_id_token"] and not cc["has_refresh_token"]
    assert cc["introspection"]["active"] is True
    assert cc["introspection"]["client_id"] == rp.client.client_id
    assert cc["userinfo"]["ok"] is False  # no user behind a client_credentials token

    intro = out["introspection"]
    assert intro["access_token"]["active"] is True
    assert intro["access_token"]["sub"] == rp.person.sub
    assert intro["access_token"]["client_id"] == rp.client.client_id
    assert intro["refresh_token"]["active"] is True
    assert intro["retired_refresh_token"] == {"active": False}

    assert out["after_access_revocation"]["userinfo"]["ok"] is False
    assert out["after_access_revocation"]["introspection"] == {"active": False}
    refused = out["after_refresh_revocation"]["refresh"]
    assert refused["ok"] is False and refused["error"] == "invalid_grant"


def test_openid_client_public_pkce_client(live_rp) -> None:  # noqa: F811
    rp = live_rp(token_endpoint_auth_method="none", id_token_signed_response_alg="RS256",
                 grant_types=["authorization_code", "refresh_token"])
    assert rp.client.secret is None  # openid-client authenticates with client.None()
    out = peer(OPENID_CLIENT, rp, "public")
    assert "client_credentials" not in out and "introspection" not in out
    assert_id_token(out["id_token"], rp, "RS256", out["nonce"])
    assert_userinfo(out["userinfo"], rp)
    assert out["refresh"]["new_refresh_token"]
    assert out["after_access_revocation"]["userinfo"]["ok"] is False
    assert out["after_refresh_revocation"]["refresh"]["error"] == "invalid_grant"


def test_openid_client_code_reuse_is_invalid_grant(live_rp) -> None:  # noqa: F811
    rp = live_rp(id_token_signed_response_alg="RS256")
    out = peer(OPENID_CLIENT, rp, "reuse")
    assert out["first_sub"] == rp.person.sub
    assert out["second"]["ok"] is False
    assert out["second"]["error"] == "invalid_grant" and out["second"]["status"] == 400
    # and the tokens of the first redemption are revoked (RFC 6749 4.1.2)
    assert out["userinfo_after_reuse"]["ok"] is False
    assert out["refresh_after_reuse"]["error"] == "invalid_grant"



def test_openid_client_step_up_with_acr_values(live_rp, db, store) -> None:  # noqa: F811
    """A password session, then acr_values=urn:edu:acr:mfa: the provider asks for the
    authenticator code in the same browser, and openid-client verifies the new ID token."""
    from core.db import utcnow
    from mfa import totp

    rp = live_rp(id_token_signed_response_alg="ES256")
    with db.session() as session:
        enrolment = totp.begin_enrolment(session, rp.server.settings, rp.person.account_id,
                                         "手机", label=rp.person.login)
        totp.pending(session, rp.person.account_id, enrolment.uid).confirmed_at = utcnow()
    out = peer(OPENID_CLIENT, rp, "step_up", totp_secret=enrolment.secret_base32)
    first, second = out["first"]["claims"], out["second"]["claims"]
    assert out["first"]["pages"] == ["/login"] and out["second"]["pages"] == ["/mfa"]
    assert first["acr"] == "urn:edu:acr:sfa" and first["amr"] == ["pwd"]
    assert second["acr"] == "urn:edu:acr:mfa" and second["amr"] == ["pwd", "otp", "mfa"]
    assert second["sub"] == first["sub"] == rp.person.sub
    assert second["sid"] == first["sid"] and second["auth_time"] >= first["auth_time"]


def test_openid_client_with_pairwise_subjects(live_rp) -> None:  # noqa: F811
    """A pairwise app: openid-client checks that UserInfo's sub is the ID token's (its
    fetchUserInfo refuses a mismatch), after a refresh too."""
    rp = live_rp(id_token_signed_response_alg="ES256", subject_type="pairwise")
    out = peer(OPENID_CLIENT, rp, "full")
    sub = out["id_token"]["claims"]["sub"]
    assert sub.startswith("pw-") and sub != rp.person.sub
    assert out["userinfo"]["sub"] == sub and out["refresh"]["userinfo_sub"] == sub
    assert out["introspection"]["access_token"]["sub"] == sub


def test_openid_client_rp_initiated_logout(live_rp) -> None:  # noqa: F811
    """openid-client's end-session URL signs the person out and comes back with state."""
    back = "https://app.example.cn/signed-out"
    rp = live_rp(id_token_signed_response_alg="ES256", post_logout_redirect_uris=[back])
    out = peer(OPENID_CLIENT, rp, "logout", post_logout_redirect_uri=back)
    assert out["end_session_endpoint"] == rp.server.url + "/oauth2/logout"
    assert "id_token_hint=" in out["end_session_url"]
    assert out["status"] == 303 and out["location"] == f"{back}?state={out['state']}"
    assert out["prompt_none"]["error"] == "login_required"


def test_openid_client_pushed_authorization_request(live_rp) -> None:  # noqa: F811
    """openid-client's buildAuthorizationUrlWithPAR: the URL the browser gets holds only
    client_id and request_uri; the sign-in and the code work as usual."""
    rp = live_rp(id_token_signed_response_alg="RS256", first_party=True,
                 require_pushed_authorization_requests=True)
    out = peer(OPENID_CLIENT, rp, "par")
    assert out["authorization_url_params"] == ["client_id", "request_uri"]
    assert out["pages"] == ["/login"]
    assert_id_token(out["id_token"], rp, "RS256", out["nonce"])


def test_openid_client_request_object_and_signed_userinfo(live_rp) -> None:  # noqa: F811
    """openid-client's buildAuthorizationUrlWithJAR (the URL: client_id and request only)
    for an app that must sign its requests, and fetchUserInfo of a signed UserInfo answer,
    its signature checked by openid-client."""
    key, public = _client_key("ES256")
    rp = live_rp(id_token_signed_response_alg="RS256", jwks={"keys": [public]},
                 require_signed_request_object=True, userinfo_signed_response_alg="ES256")
    out = peer(OPENID_CLIENT, rp, "jar", userinfo_alg="ES256",
               private_jwk={**key.as_dict(private=True), "kid": "rp-1", "alg": "ES256"})
    assert out["authorization_url_params"] == ["client_id", "request"]
    assert out["pages"] == ["/login"]
    assert_id_token(out["id_token"], rp, "RS256", out["nonce"])
    assert_userinfo(out["userinfo"], rp)
    assert out["userinfo"]["aud"] == rp.client.client_id


def test_openid_client_refuses_an_unexpected_alg(live_rp) -> None:  # noqa: F811
    """The peer really checks the ID token: told to expect RS256, it refuses ES256."""
    rp = live_rp(id_token_signed_response_alg="ES256")
    with pytest.raises(AssertionError, match='unexpected JWT "alg" header parameter'):
        node.run_json(OPENID_CLIENT, stdin=rp.peer_config(scenario="full", alg="RS256"),
                      timeout=90)

# -- oauth4webapi -----------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "first_party"), [("ES256", False), ("RS256", True)])
def test_oauth4webapi_flow(live_rp, alg: str, first_party: bool) -> None:  # noqa: F811
    rp = live_rp(id_token_signed_response_alg=alg, first_party=first_party)
    out = peer(OAUTH4WEBAPI, rp, "full")
    assert out["discovery"] == {"issuer": rp.server.url, "iss_parameter_supported": True}
    # a third-party app asks for consent; the helper allowed it on the real consent page
    assert out["pages"] == (["/login"] if first_party else ["/login", "/consent"])
    assert out["token_type"] == "bearer"
    assert_id_token(out["id_token"], rp, alg, out["nonce"])
    assert_userinfo(out["userinfo"], rp)
    assert out["refresh"]["new_refresh_token"]
    assert out["refresh"]["userinfo_sub"] == rp.person.sub
    if out["refresh"]["id_token"] is not None:
        assert out["refresh"]["id_token"]["claims"]["sub"] == rp.person.sub
    cc = out["client_credentials"]
    assert cc["token_type"] == "bearer" and cc["scope"] == "api.read"
    assert cc["introspection"]["active"] is True
    assert cc["introspection"]["sub"] == rp.client.client_id
    refused = out["refresh_after_revocation"]
    assert refused["ok"] is False and refused["error"] == "invalid_grant"


def test_oauth4webapi_rejects_tampered_iss(live_rp) -> None:  # noqa: F811
    rp = live_rp(id_token_signed_response_alg="ES256")
    out = peer(OAUTH4WEBAPI, rp, "tamper")
    assert out["iss_in_callback"] == rp.server.url
    for variant, message in [("wrong_iss", 'unexpected "iss"'),
                             ("trailing_slash_iss", 'unexpected "iss"'),
                             ("missing_iss", '"iss" (issuer) missing'),
                             ("wrong_state", '"state"')]:
        result = out[variant]
        assert result["ok"] is False, variant
        assert result["code"] == "OAUTH_INVALID_RESPONSE" and message in result["message"]
    assert out["genuine_sub"] == rp.person.sub


def test_oauth4webapi_pushed_authorization_request(live_rp) -> None:  # noqa: F811
    """oauth4webapi pushes the request (RFC 9126) and signs in with the request_uri alone;
    the request_uri cannot be used twice."""
    rp = live_rp(id_token_signed_response_alg="ES256", first_party=True,
                 require_pushed_authorization_requests=True)
    out = peer(OAUTH4WEBAPI, rp, "par")
    assert out["endpoint"] == rp.server.url + "/oauth2/par"
    assert out["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert out["expires_in"] == 60 and out["pages"] == ["/login"]
    assert_id_token(out["id_token"], rp, "ES256", out["nonce"])
    assert out["reused_status"] == 400 and out["reused_location"] is None


@pytest.mark.parametrize("alg", ["SM2", "ES256", "RS256", "EdDSA"])
def test_oauth4webapi_signed_userinfo(live_rp, alg: str) -> None:  # noqa: F811
    """oauth4webapi with ``userinfo_signed_response_alg`` takes our JWT UserInfo response
    (its alg, iss, aud and sub); the signature is checked by oauth4webapi itself for the
    WebCrypto algorithms and by sm-crypto and the openssl command line for SM2."""
    rp = live_rp(id_token_signed_response_alg="ES256", userinfo_signed_response_alg=alg)
    out = peer(OAUTH4WEBAPI, rp, "signed_userinfo", userinfo_alg=alg)
    assert out["content_type"] == "application/jwt" and out["header"]["alg"] == alg
    assert alg in out["supported"]
    claims = out["claims"]
    assert claims["iss"] == rp.server.url and claims["aud"] == rp.client.client_id
    assert_userinfo(claims, rp)
    if alg != "SM2":
        assert out["signature_checked"] is True
        return
    if not (shutil.which("openssl") and shutil.which("jq") and shutil.which("bash")):
        pytest.skip("the openssl recipe needs bash, openssl and jq")
    kid = out["header"]["kid"]
    published = httpx.get(rp.server.url + "/oauth2/jwks/all", timeout=10).json()["keys"]
    jwk = next(k for k in published if k["kid"] == kid)
    assert sm_crypto_verifies(out["jwt"], jwk)
    valid, output = openssl_verifies(out["jwt"], jwk)
    assert valid, output
    head, payload, signature = out["jwt"].split(".")
    forged = json.loads(unb64(payload)) | {"sub": "someone-else"}
    forged_b64 = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert not sm_crypto_verifies(f"{head}.{forged_b64}.{signature}", jwk)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_oauth4webapi_request_objects(live_rp, alg: str) -> None:  # noqa: F811
    """oauth4webapi's issueRequestObject (RFC 9101) signs the request with the app's key:
    by value, and pushed (RFC 9126 3), for an app that must sign its requests."""
    key, public = _client_key(alg)
    rp = live_rp(id_token_signed_response_alg="ES256", jwks={"keys": [public]},
                 require_signed_request_object=True)
    out = peer(OAUTH4WEBAPI, rp, "request_object",
               private_jwk={**key.as_dict(private=True), "kid": "rp-1", "alg": alg})
    assert alg in out["supported"]
    for how in ("by_value", "pushed"):
        assert out["pages"][how] == ["/login"], how
        assert_id_token(out["id_tokens"][how], rp, "ES256", out["nonce"][how])


@pytest.mark.parametrize(("alg", "nonce"), [("ES256", "off"), ("EdDSA", "off"),
                                             ("ES256", "required")])
def test_oauth4webapi_dpop(live_rp, alg: str, nonce: str) -> None:  # noqa: F811
    """oauth4webapi's own DPoP proofs (RFC 9449) for a public app: the code, a refresh and
    UserInfo with the key; the refresh token and the access token without it are refused.
    With nonces required, oauth4webapi takes the provider's DPoP-Nonce and retries once
    (at the token endpoint; later calls already hold a fresh nonce)."""
    rp = live_rp(id_token_signed_response_alg="ES256", token_endpoint_auth_method="none",
                 grant_types=["authorization_code", "refresh_token"])
    state = rp.server.app.state
    state.settings = state.settings.model_copy(update={"dpop_nonce": nonce})
    out = peer(OAUTH4WEBAPI, rp, "dpop", dpop_alg=alg)
    assert out["nonce_retries"] == (1 if nonce == "required" else 0)
    assert out["token_type"] == "dpop" and out["refreshed_token_type"] == "dpop"
    assert alg in out["supported"]
    assert_userinfo(out["userinfo"], rp)
    assert out["refreshed_userinfo_sub"] == rp.person.sub
    claims = json.loads(unb64(out["access_token"].split(".")[1]))
    assert set(claims["cnf"]) == {"jkt"}
    assert out["stolen_refresh"]["ok"] is False
    assert out["stolen_refresh"]["error"] == "invalid_grant"
    assert out["stolen_access_status"] == 401


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_oauth4webapi_resource_indicators(live_rp, make_client, alg: str) -> None:  # noqa: F811
    """RFC 8707 with oauth4webapi: the code flow and client_credentials name an API; the
    peer's own resource-server check (validateJwtAccessToken: typ, iss, aud, exp and the
    signature) takes the tokens for that API, refuses them for another API and, for the
    issuer, the client_credentials token; UserInfo refuses the API's token."""
    api, other = "https://grades.example.edu.cn/api", "urn:edu:timetable"
    for identifier in (api, other):
        make_client(protected_resource=True, resource_identifiers=[identifier],
                    grant_types=["client_credentials"], redirect_uris=[])
    rp = live_rp(id_token_signed_response_alg="ES256", access_token_signed_response_alg=alg)
    out = peer(OAUTH4WEBAPI, rp, "resource", resource=api, other_resource=other)
    for flow in ("code", "client_credentials"):
        accepted = out[flow]["at_api"]
        assert accepted["ok"] is True, accepted
        assert accepted["value"]["aud"] == api
        assert accepted["value"]["client_id"] == rp.client.client_id
    assert out["code"]["at_api"]["value"]["sub"] == rp.person.sub
    for refused in (out["code"]["at_other"], out["client_credentials"]["at_issuer"]):
        assert refused["ok"] is False and 'unexpected JWT "aud"' in refused["message"]
    assert out["code"]["id_token_aud"] == rp.client.client_id
    assert out["userinfo_status"] == 401
    assert "another resource" in out["userinfo_challenge"]


def _client_key(alg: str):
    """A client's private key (joserfc) and its public JWK to register (kid "rp-1")."""
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    key = {"ES256": lambda: ECKey.generate_key("P-256", private=True),
           "RS256": lambda: RSAKey.generate_key(2048, private=True),
           "EdDSA": lambda: OKPKey.generate_key("Ed25519", private=True)}[alg]()
    return key, {**key.as_dict(private=False), "kid": "rp-1", "alg": alg, "use": "sig"}


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_oauth4webapi_private_key_jwt(live_rp, alg: str) -> None:  # noqa: F811
    """oauth4webapi signs its own client assertions (``aud`` = the issuer) for
    client_credentials and introspection."""
    key, public = _client_key(alg)
    rp = live_rp(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public]})
    out = peer(OAUTH4WEBAPI, rp, "private_key_jwt",
               private_jwk={**key.as_dict(private=True), "kid": "rp-1", "alg": alg})
    assert out["token_type"] == "bearer" and out["scope"] == "api.read"
    assert out["introspection"]["active"] is True
    assert out["introspection"]["client_id"] == rp.client.client_id


# -- authlib (a Python RP library) + joserfc --------------------------------------------


def discover(url: str) -> dict[str, Any]:
    return httpx.get(url + "/.well-known/openid-configuration", timeout=10).json()


def authlib_code_flow(rp: LiveRP, scope: str = "openid profile edu"):
    """Authorization code + PKCE with authlib's OAuth2Client; the browser part through
    the real login form. Returns (client, token, nonce, metadata)."""
    from authlib.common.security import generate_token
    from authlib.integrations.httpx_client import OAuth2Client

    meta = discover(rp.server.url)
    session = OAuth2Client(rp.client.client_id, rp.client.secret, scope=scope,
                           redirect_uri=REDIRECT_URI, code_challenge_method="S256",
                           token_endpoint_auth_method="client_secret_basic",
                           revocation_endpoint_auth_method="client_secret_basic", timeout=10)
    verifier, nonce = generate_token(64), generate_token(20)
    uri, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                  code_verifier=verifier, nonce=nonce)
    callback = login_through_form(uri, rp.person.login, rp.person.password)
    params = dict(httpx.URL(callback).params)
    assert params["iss"] == rp.server.url  # RFC 9207: authlib's client does not check it
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback,
                                state=state, code_verifier=verifier)
    return session, token, nonce, meta


def test_authlib_client_and_joserfc(live_rp) -> None:  # noqa: F811
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.jwk import KeySet

    rp = live_rp(id_token_signed_response_alg="RS256")
    session, token, nonce, meta = authlib_code_flow(rp)
    keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"], timeout=10).json())
    assert {k.get("crv") for k in keys.keys} <= {None, "P-256", "Ed25519"}  # no SM2 here
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": rp.server.url},
                                     aud={"essential": True, "value": rp.client.client_id},
                                     sub={"essential": True, "value": rp.person.sub},
                                     nonce={"essential": True, "value": nonce},
                                     exp={"essential": True}, iat={"essential": True})
    registry.validate(decoded.claims)
    # authlib's own OIDC checks: essential claims, nonce, at_hash, auth_time
    CodeIDToken(decoded.claims, decoded.header,
                params={"nonce": nonce, "access_token": token["access_token"]}).validate()
    assert decoded.claims["at_hash"] == half_hash(token["access_token"])

    userinfo = session.get(meta["userinfo_endpoint"]).json()
    assert_userinfo(userinfo, rp)
    old_refresh = token["refresh_token"]
    refreshed = session.refresh_token(meta["token_endpoint"])
    assert refreshed["refresh_token"] != old_refresh
    assert session.get(meta["userinfo_endpoint"]).json()["sub"] == rp.person.sub
    introspected = session.introspect_token(meta["introspection_endpoint"],
                                            token=refreshed["access_token"]).json()
    assert introspected["active"] is True and introspected["sub"] == rp.person.sub
    assert session.revoke_token(meta["revocation_endpoint"],
                                token=refreshed["access_token"]).status_code == 200
    assert session.get(meta["userinfo_endpoint"]).status_code == 401

    cc = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials",
                             scope="api.read")
    assert cc["scope"] == "api.read" and "id_token" not in cc and "refresh_token" not in cc


# -- SM2 ID tokens: npm sm-crypto and the openssl command line ---------------------------


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sm_crypto_verifies(token: str, jwk: dict[str, Any]) -> bool:
    head, payload, signature = token.split(".")
    public = "04" + unb64(jwk["x"]).hex() + unb64(jwk["y"]).hex()
    reply = node.run_json("sm2_crypto.mjs", stdin={
        "op": "verify", "msg_hex": f"{head}.{payload}".encode().hex(),
        "signature": unb64(signature).hex(), "public": public})
    return reply["valid"]


def openssl_verifies(token: str, jwk: dict[str, Any]) -> tuple[bool, str]:
    result = subprocess.run(
        ["bash", str(node.INTEROP_DIR / "recipes" / "verify_openssl.sh"), token,
         json.dumps(jwk)], capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0, result.stdout


def sm3_half_hash(value: str) -> str:
    digest = hashlib.new("sm3", value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_sm2_id_token_verifies_in_sm_crypto_and_openssl(live_rp) -> None:  # noqa: F811
    if not (shutil.which("openssl") and shutil.which("jq") and shutil.which("bash")):
        pytest.skip("the openssl recipe needs bash, openssl and jq")
    rp = live_rp(id_token_signed_response_alg="SM2")
    _session, token, nonce, meta = authlib_code_flow(rp)
    id_token = token["id_token"]
    header = json.loads(unb64(id_token.split(".")[0]))
    assert header["alg"] == "SM2"
    standard = httpx.get(meta["jwks_uri"], timeout=10).json()["keys"]
    assert all(k["kid"] != header["kid"] for k in standard)  # SM2 keys: sm2_jwks_uri only
    published = httpx.get(meta["sm2_jwks_uri"], timeout=10).json()["keys"]
    jwk = next(k for k in published if k["kid"] == header["kid"])
    assert (jwk["kty"], jwk["crv"]) == ("EC", "SM2")

    assert sm_crypto_verifies(id_token, jwk)
    valid, output = openssl_verifies(id_token, jwk)
    assert valid, output
    claims = json.loads(output.split("\n", 1)[1])  # the recipe prints the payload
    assert claims["iss"] == rp.server.url and claims["aud"] == rp.client.client_id
    assert claims["sub"] == rp.person.sub and claims["nonce"] == nonce
    assert claims["at_hash"] == sm3_half_hash(token["access_token"])
    assert claims["exp"] > time.time()

    # a tampered payload fails in both peers
    head, payload, signature = id_token.split(".")
    forged = json.loads(unb64(payload)) | {"sub": "someone-else"}
    forged_b64 = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    tampered = f"{head}.{forged_b64}.{signature}"
    assert not sm_crypto_verifies(tampered, jwk)
    assert not openssl_verifies(tampered, jwk)[0]


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_authlib_private_key_jwt(live_rp, alg: str) -> None:  # noqa: F811
    """authlib's ``PrivateKeyJWT`` (``aud`` = the token endpoint URL) for client_credentials,
    introspection and revocation; with ``claims={"aud": issuer}`` the assertion names the
    issuer alone, as ``IDP_CLIENT_ASSERTION_AUDIENCE=issuer`` will ask. authlib writes the
    ``jti`` it makes into the ``claims`` dict it was given and so would send it again: a
    replay, refused (``_fresh``)."""
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    key, public = _client_key(alg)
    rp = live_rp(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [public]})
    meta = discover(rp.server.url)
    for extra in ({}, {"aud": rp.server.url}):
        claims = {"exp": int(time.time()) + 300, **extra}
        auth = PrivateKeyJWT(meta["token_endpoint"], claims=claims, alg=alg,
                             headers={"kid": "rp-1"})
        session = OAuth2Client(rp.client.client_id, key, token_endpoint_auth_method=auth,
                               revocation_endpoint_auth_method=auth, timeout=10)
        session.register_client_auth_method(auth)

        def _fresh(answer, claims=claims):
            replayed = claims.pop("jti")  # authlib's: the next assertion needs its own
            return answer, replayed

        token, _ = _fresh(session.fetch_token(meta["token_endpoint"],
                                              grant_type="client_credentials",
                                              scope="api.read"))
        assert token["scope"] == "api.read"
        introspected, _ = _fresh(session.introspect_token(meta["introspection_endpoint"],
                                                          token=token["access_token"]))
        assert introspected.json()["active"] is True
        assert introspected.json()["client_id"] == rp.client.client_id
        revoked, used = _fresh(session.revoke_token(meta["revocation_endpoint"],
                                                    token=token["access_token"]))
        assert revoked.status_code == 200
        claims["jti"] = used  # what authlib would have sent next: refused as a replay
        again = session.introspect_token(meta["introspection_endpoint"],
                                         token=token["access_token"]).json()
        assert again == {"error": "invalid_client",
                         "error_description": "client assertion was already used"}
