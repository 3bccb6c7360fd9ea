"""DPoP nonces (RFC 9449 8, 9) at every endpoint that takes a proof, and remembered
consent to APIs (RFC 8707): the cases a review found wrong, and those it checked and
found right."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import jwt as pyjwt
import pytest
from fastapi.testclient import TestClient

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_dpop import (
    ISSUER,
    REVOKE_URL,
    USERINFO_URL,
    _cc,
    _code,
    _key,
    _proof,
    _public_app,
    _redeem,
    _refresh,
    _revoke,
)

PAR_URL = ISSUER + "/oauth2/par"
GRADES = "https://grades.example.edu.cn/api"


@pytest.fixture
def nonces_required(app):
    app.state.settings = app.state.settings.model_copy(update={"dpop_nonce": "required"})
    return app


@pytest.fixture
def lenient_client(app):
    """A TestClient that shows a server error as the 500 a client would see."""
    with TestClient(app, base_url=ISSUER, raise_server_exceptions=False) as test_client:
        yield test_client


def _bound_tokens_then_nonces(client: TestClient, make_client, make_person, app):
    """A public app's DPoP-bound tokens, and from then on nonces required: (the app, its
    key, the token response)."""
    registered, person, key = _public_app(make_client), make_person(), _key()
    code, verifier = _code(client, registered, person)
    tokens = _redeem(client, registered, code, verifier, _proof(key)).json()
    app.state.settings = app.state.settings.model_copy(update={"dpop_nonce": "required"})
    return registered, key, tokens


# -- a nonce that is no nonce of ours -------------------------------------------------

@pytest.mark.parametrize("required", [False, True])
def test_a_non_ascii_nonce_is_use_dpop_nonce_not_a_500(
        lenient_client: TestClient, make_client, app, required: bool) -> None:
    """A nonce that is no nonce of ours (non-ASCII: hmac.compare_digest of two str would
    raise) is use_dpop_nonce when nonces are required, and ignored when they are off."""
    if required:
        app.state.settings = app.state.settings.model_copy(update={"dpop_nonce": "required"})
    registered = make_client()
    answer = _cc(lenient_client, registered, _proof(_key(), nonce="é"))
    if not required:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 400, answer.status_code
    assert answer.json()["error"] == "use_dpop_nonce"


def test_a_non_ascii_nonce_at_userinfo_par_and_revocation(
        lenient_client: TestClient, make_client, make_person, app) -> None:
    client = lenient_client
    registered, key, tokens = _bound_tokens_then_nonces(client, make_client, make_person, app)
    token = tokens["access_token"]
    userinfo = client.get("/oauth2/userinfo", headers={
        "Authorization": f"DPoP {token}",
        "DPoP": _proof(key, htm="GET", htu=USERINFO_URL, access_token=token, nonce="ü")})
    revoked = _revoke(client, registered, tokens["refresh_token"],
                      _proof(key, htu=REVOKE_URL, nonce="ü"))
    confidential = make_client()
    pushed = client.post("/oauth2/par", auth=(confidential.client_id, confidential.secret),
                         data={"response_type": "code", "redirect_uri": REDIRECT_URI,
                               "scope": "openid", "code_challenge": "x" * 43,
                               "code_challenge_method": "S256"},
                         headers={"DPoP": _proof(key, htu=PAR_URL, nonce="ü")})
    assert (userinfo.status_code, revoked.status_code, pushed.status_code) == (401, 400, 400)


# -- checked and right: the nonce flows at PAR, revocation, refresh, HEAD -----------------

def test_par_with_a_proof_asks_for_the_nonce(client: TestClient, make_client,
                                              nonces_required) -> None:
    registered, key = make_client(), _key()
    request = {"response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
               "code_challenge": "x" * 43, "code_challenge_method": "S256"}
    auth = (registered.client_id, registered.secret)
    asked = client.post("/oauth2/par", auth=auth, data=request,
                        headers={"DPoP": _proof(key, htu=PAR_URL)})
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    nonce = asked.headers["DPoP-Nonce"]
    pushed = client.post("/oauth2/par", auth=auth, data=request,
                         headers={"DPoP": _proof(key, htu=PAR_URL, nonce=nonce)})
    assert pushed.status_code == 201 and pushed.headers["DPoP-Nonce"]


def test_revocation_of_a_bound_token_asks_for_the_nonce(client: TestClient, make_client,
                                                         make_person, app) -> None:
    registered, key, tokens = _bound_tokens_then_nonces(client, make_client, make_person, app)
    asked = _revoke(client, registered, tokens["refresh_token"], _proof(key, htu=REVOKE_URL))
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    nonce = asked.headers["DPoP-Nonce"]
    # the refused try spent nothing: the refresh token still works
    refreshed = _refresh(client, registered, tokens["refresh_token"], _proof(key, nonce=nonce))
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()["refresh_token"]
    done = _revoke(client, registered, new, _proof(key, htu=REVOKE_URL, nonce=nonce))
    assert done.status_code == 200 and done.headers["DPoP-Nonce"]


def test_a_refused_nonce_spends_no_refresh_token(client: TestClient, make_client,
                                                 make_person, app) -> None:
    registered, key, tokens = _bound_tokens_then_nonces(client, make_client, make_person, app)
    asked = _refresh(client, registered, tokens["refresh_token"], _proof(key))
    assert asked.json()["error"] == "use_dpop_nonce"
    again = _refresh(client, registered, tokens["refresh_token"],
                     _proof(key, nonce=asked.headers["DPoP-Nonce"]))
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_userinfo_asks_for_the_nonce(client: TestClient, make_client, make_person, app,
                                     method: str) -> None:
    """RFC 9449 9: 401 with a DPoP challenge and a nonce; with it, the answer (a HEAD's
    without a body) and the next nonce."""
    _, key, tokens = _bound_tokens_then_nonces(client, make_client, make_person, app)
    token = tokens["access_token"]

    def call(nonce: str | None = None):
        return client.request(method, "/oauth2/userinfo", headers={
            "Authorization": f"DPoP {token}",
            "DPoP": _proof(key, htm=method, htu=USERINFO_URL, access_token=token,
                           nonce=nonce)})

    asked = call()
    assert asked.status_code == 401 and asked.headers["DPoP-Nonce"]
    assert 'DPoP error="use_dpop_nonce"' in asked.headers["WWW-Authenticate"]
    ok = call(asked.headers["DPoP-Nonce"])
    assert ok.status_code == 200 and ok.headers["DPoP-Nonce"]
    assert (ok.content == b"") if method == "HEAD" else ok.json()["sub"]


def test_a_bad_proof_wins_over_a_missing_nonce(client: TestClient, make_client,
                                               nonces_required) -> None:
    """Signature, htm/htu/iat are checked before the nonce, and a refused nonce keeps no
    jti. (Any answer to a request with a proof carries a nonce: anyone may have one.)"""
    registered, key = make_client(), _key()
    wrong = _cc(client, registered, _proof(key, htu=ISSUER + "/elsewhere"))
    assert wrong.json()["error"] == "invalid_dpop_proof"
    proof = _proof(key)
    asked = _cc(client, registered, proof)
    assert asked.json()["error"] == "use_dpop_nonce"
    # the same proof again: still the nonce (its jti was not kept), not "already used"
    assert _cc(client, registered, proof).json()["error"] == "use_dpop_nonce"


def test_the_nonce_is_nqchar_and_unforgeable(client: TestClient, make_client, app,
                                             nonces_required, monkeypatch) -> None:
    import re

    from idp.oidc import dpop

    registered = make_client()
    nonce = _cc(client, registered, _proof(_key())).headers["DPoP-Nonce"]
    assert re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", nonce)
    window = int(time.time() // dpop.NONCE_SECONDS)
    # another master key: another nonce
    other = app.state.settings.model_copy(update={"master_key": "ab" * 32})
    assert dpop._nonce(other, window) != dpop._nonce(app.state.settings, window)
    forged = _cc(client, registered, _proof(_key(), nonce=dpop._nonce(other, window)))
    assert forged.json()["error"] == "use_dpop_nonce"
    # two windows ahead: refused (one ahead: a worker whose clock runs ahead, accepted)
    ahead = dpop._nonce(app.state.settings, window + 2)
    assert _cc(client, registered, _proof(_key(), nonce=ahead)).json()[
        "error"] == "use_dpop_nonce"


# -- a use_dpop_nonce answer spends no private_key_jwt assertion ------------------------

def test_use_dpop_nonce_spends_no_client_assertion(client: TestClient, make_client,
                                                            nonces_required) -> None:
    """The proof (and its nonce) is checked before the client is authenticated (its
    assertion's jti kept): the refused request retried as it was, with a new proof,
    goes through."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    signer = ECKey.generate_key("P-256", private=True)
    registered = make_client(token_endpoint_auth_method="private_key_jwt", jwks={
        "keys": [{**signer.as_dict(private=False), "kid": "a1", "alg": "ES256"}]})
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "a1"}, {
        "iss": registered.client_id, "sub": registered.client_id, "aud": ISSUER,
        "jti": "assertion-1", "iat": now, "exp": now + 60}, signer, algorithms=["ES256"])
    body = {"grant_type": "client_credentials", "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    key = _key()
    asked = client.post("/oauth2/token", data=body, headers={"DPoP": _proof(key)})
    assert asked.json()["error"] == "use_dpop_nonce", asked.text
    retry = client.post("/oauth2/token", data=body, headers={
        "DPoP": _proof(key, nonce=asked.headers["DPoP-Nonce"])})
    assert retry.status_code == 200, retry.text


# -- every answer to a request with a proof carries the next nonce ------------------------

def test_an_error_answer_to_a_good_proof_carries_a_nonce(
        client: TestClient, make_client, make_person, nonces_required) -> None:
    registered, key = _public_app(make_client), _key()
    nonce = _redeem(client, registered, "nope", "x" * 43, _proof(key)).headers["DPoP-Nonce"]
    refused = _redeem(client, registered, "nope", "x" * 43, _proof(key, nonce=nonce))
    assert refused.json()["error"] == "invalid_grant"
    assert "DPoP-Nonce" in refused.headers


# -- consent (e0c28d9) ---------------------------------------------------------------------

def _form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"content": urlencode(pairs),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


@pytest.fixture
def grades(make_client, db):
    from directory.apps import find_app

    api = make_client(protected_resource=True, resource_identifiers=[GRADES],
                      grant_types=["client_credentials"], redirect_uris=[])
    with db.session() as session:
        find_app(session, api.client_id).name = '<script>alert("成绩")</script>'
    return api


def _query(app, scope: str, *resources: str, **extra: str) -> list[tuple[str, str]]:
    return [("response_type", "code"), ("client_id", app.client_id),
            ("redirect_uri", REDIRECT_URI), ("scope", scope), ("state", "s"),
            *(("resource", r) for r in resources), *extra.items()]


def _consent(client: TestClient, person, query) -> str:
    """Sign in if asked and allow on the consent page; the consent page's HTML."""
    asked = client.get("/oauth2/authorize", params=query, follow_redirects=False)
    if flow.is_login_page(asked):
        asked = flow.login(client, asked, person.login, person.password)
    to_consent = flow.follow(client, asked)
    assert to_consent.headers["location"].startswith("/consent"), to_consent.headers
    page = client.get(to_consent.headers["location"])
    allowed = flow.follow(client, client.post("/consent", data={
        "csrf_token": flow.csrf_of(page.text), "ia": flow.ia_of(page), "decision": "allow"},
        follow_redirects=False))
    assert "code" in flow.Redirect(allowed.headers["location"]).params
    return page.text


def _silently(client: TestClient, query) -> dict[str, str]:
    answer = client.get("/oauth2/authorize", params=[*query, ("prompt", "none")],
                        follow_redirects=False)
    assert answer.status_code in (302, 303), (answer.status_code, answer.text[:300])
    return flow.Redirect(answer.headers["location"]).params


def test_consent_page_escapes_the_api_name(client: TestClient, make_client, make_person,
                                           grades) -> None:
    app, person = make_client(first_party=False), make_person()
    page = _consent(client, person, _query(app, "openid", GRADES))
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_consent_for_an_api_by_par_and_request_object_is_asked(
        client: TestClient, make_client, make_person, grades) -> None:
    """The remembered consent (scopes only) does not cover an API named in a pushed request
    or a request object."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", private=True)
    app = make_client(first_party=False,
                      jwks={"keys": [{**key.as_dict(private=False), "kid": "k1"}]})
    person = make_person()
    _consent(client, person, _query(app, "openid"))
    pushed = client.post("/oauth2/par", auth=(app.client_id, app.secret), **_form([
        *_query(app, "openid", GRADES), ("code_challenge", "x" * 43),
        ("code_challenge_method", "S256"), ("prompt", "none")]))
    assert pushed.status_code == 201
    answer = client.get("/oauth2/authorize", params={
        "client_id": app.client_id, "request_uri": pushed.json()["request_uri"]},
        follow_redirects=False)
    assert flow.Redirect(answer.headers["location"]).params["error"] == "consent_required"
    now = int(time.time())
    signed = jwt.encode({"alg": "ES256", "kid": "k1", "typ": "oauth-authz-req+jwt"}, {
        "iss": app.client_id, "aud": ISSUER, "client_id": app.client_id, "exp": now + 300,
        "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
        "prompt": "none", "resource": GRADES, "state": "s"}, key, algorithms=["ES256"])
    answer = client.get("/oauth2/authorize", params={
        "client_id": app.client_id, "request": signed, "response_type": "code",
        "scope": "openid"}, follow_redirects=False)
    assert flow.Redirect(answer.headers["location"]).params["error"] == "consent_required"


# scope values and API identifiers are kept apart in the consent

def test_a_consented_api_is_no_consented_scope(client: TestClient, make_client,
                                                       make_person, grades) -> None:
    """An app whose registered scopes include a URI-shaped value (scope values are any
    NQCHAR, "https://..." included): the person allowed the API GRADES (shown by its
    name); the app then gets the *scope value* GRADES silently, which the person never saw
    as a permission ("Use the permission ... on your behalf")."""
    app = make_client(first_party=False, scope=f"openid profile {GRADES}")
    person = make_person()
    _consent(client, person, _query(app, "openid", GRADES))
    assert _silently(client, _query(app, f"openid {GRADES}"))["error"] == "consent_required"


def test_a_consented_scope_is_no_consented_api(client: TestClient, make_client,
                                                       make_person, grades) -> None:
    """The other way: a scope value equal to the API's identifier, allowed as a scope
    (shown as "Use the permission “https://...”", not as the API's name), covers
    tokens for that API without its consent page."""
    app = make_client(first_party=False, scope=f"openid profile {GRADES}")
    person = make_person()
    _consent(client, person, _query(app, f"openid {GRADES}"))
    assert _silently(client, _query(app, "openid", GRADES))["error"] == "consent_required"


def test_consent_loses_which_scopes_go_with_which_api(
        client: TestClient, make_client, make_person, grades) -> None:
    """The page says the listed scopes are used "with these services". Consent 1: api.read
    with GRADES; consent 2: api.write for the app alone. The union then covers api.write
    with GRADES, shown on neither page: a token with aud=GRADES and scope api.write is
    issued without asking."""
    app, person = make_client(first_party=False), make_person()
    _consent(client, person, _query(app, "openid api.read", GRADES))
    _consent(client, person, _query(app, "openid api.write"))
    verifier, challenge = flow.pkce_pair()
    params = _silently(client, _query(app, "openid api.write", GRADES, code_challenge=challenge,
                                      code_challenge_method="S256"))
    if "code" in params:
        tokens = client.post("/oauth2/token", auth=(app.client_id, app.secret), data={
            "grant_type": "authorization_code", "code": params["code"],
            "redirect_uri": REDIRECT_URI, "code_verifier": verifier}).json()
        claims = pyjwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert not (claims["aud"] == GRADES and "api.write" in claims["scope"].split()), claims
    else:
        assert params["error"] == "consent_required"
