"""Edges a differential review against node oidc-provider and the RFCs found: an empty
fragment in a registered URI, 401s without a challenge, a DPoP-bound token's errors under
the Bearer scheme, and PKCE values with a trailing newline."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_dpop import USERINFO_URL, _key, _proof


@pytest.mark.parametrize("member", ["redirect_uris", "post_logout_redirect_uris"])
def test_a_registered_uri_has_no_fragment_not_even_an_empty_one(make_client,
                                                                member: str) -> None:
    """RFC 6749 3.1.2: ``…/callback#`` would carry the code in the fragment."""
    with pytest.raises(ValueError, match="fragment"):
        make_client(**{member: [REDIRECT_URI + "#"]})


@pytest.mark.parametrize("authorization", [{"Authorization": "Bearer abc"}, {}])
def test_invalid_client_at_the_token_endpoint_carries_a_challenge(client, make_client,
                                                                  authorization) -> None:
    """RFC 6749 5.2 and RFC 9110 15.5.2: every 401 names a scheme to authenticate with."""
    make_client()
    answer = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                         headers=authorization)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"] == 'Basic realm="token"'


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke",
                                  "/oauth2/par"])
def test_a_wrong_posted_secret_gets_a_challenge_too(client, make_client, path: str) -> None:
    app = make_client(token_endpoint_auth_method="client_secret_post")
    answer = client.post(path, data={
        "grant_type": "client_credentials", "token": "x", "response_type": "code",
        "redirect_uri": REDIRECT_URI, "scope": "openid", "client_id": app.client_id,
        "client_secret": "wrong"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"].startswith("Basic ")


def test_a_dpop_bound_tokens_errors_use_the_dpop_scheme(client, make_client,
                                                        make_person) -> None:
    """RFC 9449 7.1: a token without ``openid`` used with its proof at UserInfo is
    ``insufficient_scope`` under the DPoP scheme, with the algorithms."""
    app, person, key = make_client(), make_person(), _key()
    code = flow.code_flow(client, app.client_id, person, scope="profile").params["code"]
    token = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(app.client_id, app.secret), headers={"DPoP": _proof(key)}).json()
    assert token["token_type"] == "DPoP"
    answer = client.get("/oauth2/userinfo", headers={
        "Authorization": "DPoP " + token["access_token"],
        "DPoP": _proof(key, htm="GET", htu=USERINFO_URL, access_token=token["access_token"])})
    assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    assert answer.headers["www-authenticate"].startswith('DPoP error="insufficient_scope"')
    assert 'algs="' in answer.headers["www-authenticate"]


def test_a_code_challenge_with_a_trailing_newline_is_invalid_request(client,
                                                                     make_client) -> None:
    """RFC 7636 4.2: 43 unreserved characters, nothing after them."""
    app = make_client()
    answer = flow.authorize(client, client_id=app.client_id, code_challenge="a" * 43 + "\n",
                            code_challenge_method="S256")
    assert answer.status_code in (302, 303), answer.status_code
    assert flow.Redirect(answer.headers["location"]).params["error"] == "invalid_request"


def test_a_code_verifier_with_a_trailing_newline_is_refused(client, make_client,
                                                            make_person) -> None:
    app, person = make_client(), make_person()
    verifier = "v" * 43 + "\n"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).rstrip(b"=").decode()
    code = flow.code_flow(client, app.client_id, person, code_challenge=challenge,
                          code_challenge_method="S256").params["code"]
    answer = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier}, auth=(app.client_id, app.secret))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


# -- HEAD is safe (RFC 9110 9.2.1): a GET that acts does nothing on HEAD ---------------------


def _tokens_of(client, registered, person) -> dict:
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                       data={"grant_type": "authorization_code", "code": code,
                             "redirect_uri": REDIRECT_URI}).json()


def test_head_at_the_authorization_endpoint_mints_no_code(client, make_client,
                                                          make_person) -> None:
    registered = make_client()
    _tokens_of(client, registered, make_person())
    query = {"response_type": "code", "client_id": registered.client_id, "scope": "openid",
             "redirect_uri": REDIRECT_URI, "prompt": "none", "state": "s"}
    head = client.head("/oauth2/authorize", params=query, follow_redirects=False)
    assert head.status_code == 200 and head.content == b"" and "location" not in head.headers
    assert head.headers["cache-control"] == "no-store"
    got = client.get("/oauth2/authorize", params=query, follow_redirects=False)
    assert "code" in flow.Redirect(got.headers["location"]).params  # the GET still works


def test_head_at_the_end_session_endpoint_signs_nobody_out(client, make_client,
                                                           make_person) -> None:
    registered = make_client()
    id_token = _tokens_of(client, registered, make_person())["id_token"]
    head = client.head("/oauth2/logout", params={"id_token_hint": id_token},
                       follow_redirects=False)
    assert head.status_code == 200 and "set-cookie" not in head.headers
    silent = flow.authorize(client, client_id=registered.client_id, prompt="none")
    assert "code" in flow.Redirect(silent.headers["location"]).params  # still signed in


@pytest.mark.parametrize("path", ["/oauth2/authorize/resume?ia=x", "/login/qr",
                                  "/login/qr/scan?t=x", "/mfa"])
def test_head_at_other_gets_that_act_does_nothing(client, path: str) -> None:
    head = client.head(path, follow_redirects=False)
    assert head.status_code == 200 and head.content == b"" and "set-cookie" not in head.headers


# -- what the authorization endpoint reads -------------------------------------------------


def _query(registered, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": registered.client_id, "scope": "openid",
            "redirect_uri": REDIRECT_URI, **extra}


def test_a_repeated_state_is_not_echoed(client, make_client) -> None:
    """RFC 6749 4.1.2.1 echoes "the exact value received": a repeated state has none."""
    registered = make_client()
    url = "/oauth2/authorize?" + "&".join(
        f"{k}={v}" for k, v in _query(registered).items()) + "&state=a&state=b"
    answer = client.get(url, follow_redirects=False)
    params = flow.Redirect(answer.headers["location"]).params
    assert params["error"] == "invalid_request" and "state" not in params


def test_bytes_that_are_not_utf8_make_the_request_malformed(client, make_client) -> None:
    registered = make_client()
    url = "/oauth2/authorize?" + "&".join(
        f"{k}={v}" for k, v in _query(registered, prompt="none").items()) + "&state=%FF%FE"
    answer = client.get(url, follow_redirects=False)
    assert answer.status_code == 400 and "location" not in answer.headers
    posted = client.post("/oauth2/authorize", content=b"state=%E9&" + "&".join(
        f"{k}={v}" for k, v in _query(registered).items()).encode(),
        headers={"content-type": "application/x-www-form-urlencoded; charset=ISO-8859-1"},
        follow_redirects=False)
    assert posted.status_code == 400 and "location" not in posted.headers


def test_an_authorization_post_must_be_urlencoded(client, make_client) -> None:
    """OIDC Core 3.1.2.1: POST uses Form Serialization."""
    registered = make_client()
    multipart = client.post("/oauth2/authorize", files={"x": ("x", b"1")},
                            data=_query(registered, state="s"), follow_redirects=False)
    assert multipart.status_code == 400 and "location" not in multipart.headers
    form = client.post("/oauth2/authorize", data=_query(registered, state="s"),
                       follow_redirects=False)
    assert form.status_code in (200, 303)  # the sign-in page or its redirect


def test_the_form_media_type_is_matched_exactly(client, make_client) -> None:
    registered = make_client()
    body = "grant_type=client_credentials"
    for media_type, ok in (("application/x-www-form-urlencodedX", False),
                           ("application/x-www-form-urlencoded-evil", False),
                           ("Application/X-WWW-Form-Urlencoded; charset=UTF-8", True)):
        answer = client.post("/oauth2/token", content=body, auth=(
            registered.client_id, registered.secret), headers={"content-type": media_type})
        assert (answer.status_code == 200) == ok, (media_type, answer.text)
        if not ok:
            assert answer.json()["error"] == "invalid_request"


# -- Allow names what a resource supports (RFC 9110 15.5.6, 9.3.7) -------------------------


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/oauth2/authorize", "GET, HEAD, POST"),
    ("PUT", "/oauth2/userinfo", "GET, HEAD, POST, OPTIONS"),
    ("GET", "/oauth2/token", "POST, OPTIONS"),
    ("DELETE", "/.well-known/openid-configuration", "GET, HEAD"),
    ("OPTIONS", "/oauth2/jwks", "GET, HEAD"),
    ("PATCH", "/oauth2/logout", "GET, HEAD, POST"),
])
def test_a_405_names_every_method_the_resource_takes(client, method, path, allowed) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405 and answer.headers["allow"] == allowed


@pytest.mark.parametrize(("path", "methods"), [("/oauth2/token", "POST"),
                                               ("/oauth2/userinfo", "GET, HEAD, POST")])
def test_options_names_the_endpoints_own_methods(client, path, methods) -> None:
    assert client.options(path).headers["allow"] == methods + ", OPTIONS"
    preflight = client.options(path, headers={"Origin": "https://spa.example.cn",
                                              "Access-Control-Request-Method": "POST"})
    assert preflight.headers["access-control-allow-methods"] == methods


def test_raw_bytes_that_are_not_utf8_make_the_request_malformed(client, make_client) -> None:
    """Not only %-escapes: a raw byte beyond ASCII was read as Latin-1 and echoed as
    mojibake."""
    registered = make_client()
    query = "&".join(f"{k}={v}" for k, v in _query(registered, prompt="none").items())
    posted = client.post("/oauth2/authorize", content=query.encode() + b"&state=\xff",
                         headers={"content-type": "application/x-www-form-urlencoded"},
                         follow_redirects=False)
    assert posted.status_code == 400 and "location" not in posted.headers
    fine = client.post("/oauth2/authorize", content=query.encode() + "&state=中".encode(),
                       headers={"content-type": "application/x-www-form-urlencoded"},
                       follow_redirects=False)
    assert flow.Redirect(fine.headers["location"]).params["state"] == "中"


def test_an_unreadable_sign_out_request_still_signs_out(client, make_client,
                                                        make_person) -> None:
    """The end-session endpoint treats what it cannot read as untrusted (a confirmation
    page), never as an error page that leaves the person signed in."""
    flow.code_flow(client, make_client().client_id, make_person())
    page = client.get("/oauth2/logout?state=caf%E9")
    assert page.status_code == 200 and "无法读取" in page.text  # the confirmation page
    empty = client.post("/oauth2/logout", files={"x": ("x", b"1")})
    assert empty.status_code == 200


def test_an_empty_access_token_in_the_body_beside_the_header_is_omitted(
        client, make_client, make_person) -> None:
    """RFC 6749 3.2: "Parameters sent without a value MUST be treated as if they were
    omitted": a form library that always sends the field is not sending two tokens."""
    app, person = make_client(), make_person()
    token = _tokens_of(client, app, person)["access_token"]
    answer = client.post("/oauth2/userinfo", content=b"access_token=", headers={
        "Authorization": "Bearer " + token,
        "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    twice = client.post("/oauth2/userinfo", data={"access_token": token},
                        headers={"Authorization": "Bearer " + token})
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"
