"""Random requests to every route of the service, signed in and not: never a 5xx.

For each route and method (path parameters filled with odd values): requests that start
from a valid one where the route has one (the authorization request, a client_credentials
grant, introspection of a real token, a sign-in...) and change it: parameters dropped, and
parameters drawn from the names the endpoints read (OAuth, OIDC, the sign-in pages, SCIM,
the admin API) with hostile values (empty, NUL, CR LF, huge, JSON that is almost right,
unicode, the real client id, tokens and password), sent in the query, as a form, as JSON or
as raw bytes, odd content types and headers, with or without the client's credentials and
the page's CSRF token. The TestClient re-raises any exception the app lets escape, so a
crash fails the test with its traceback, and any 5xx answer fails it too.

``IDP_FUZZ_EXAMPLES`` (default 8) sets how many requests each route gets, sixteen times as
many for a route with a valid base request; the generator is seeded by the route, so a run
sends the same requests every time (``IDP_FUZZ_SEED`` changes them). Run it now and then
with ``IDP_FUZZ_EXAMPLES=100`` and a few seeds for a deeper search.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import string

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

EXAMPLES = int(os.environ.get("IDP_FUZZ_EXAMPLES", "8"))
SEED = os.environ.get("IDP_FUZZ_SEED", "")
SKIPPED = ("/demo", "/metrics", "/static")
NAMES = [
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "prompt",
    "max_age", "login_hint", "id_token_hint", "ui_locales", "claims_locales", "display",
    "acr_values", "claims", "response_mode", "request", "request_uri", "code_challenge",
    "code_challenge_method", "grant_type", "code", "code_verifier", "refresh_token",
    "client_secret", "client_assertion", "client_assertion_type", "token", "token_type_hint",
    "access_token", "login", "password", "csrf_token", "ia", "post_logout_redirect_uri",
    "logout_hint", "lang", "next", "otp", "phone", "ticket", "decision", "credential", "name",
    "current_password", "new_password", "confirm", "sid", "resource", "filter", "startIndex",
    "count", "attributes", "excludedAttributes", "sortBy", "uid", "remember", "factor",
    "recovery_code", "schemas", "Operations",
]
ODD = [
    "", " ", "\x00", "\r\n", "null", "-1", "0", "99999999999999999999", "1e309", "NaN", "%",
    "%zz", "../../etc/passwd", "<script>alert(1)</script>", "'\"", "{}", "[]", '{"a":',
    '{"userinfo":{"sub":{"value":1}}}', '{"id_token":{"acr":{"essential":true,"values":5}}}',
    "openid", "openid profile edu offline_access", "code", "none", "login consent", "S256",
    "plain", "authorization_code", "refresh_token", "client_credentials", "\u202e", "\ufffd",
    "é" * 3000, "a" * 20000, "http://evil.example/", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "a.b.c", "a.b.c.d.e", "*", "zh-CN", "en", "true", "²",
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
]
# without client_id and redirect_uri: a request that names no known client or redirect URI
# goes no further (dropping the valid ones tests their absence; test_bad_input the odd ones)
AUTHORIZE_NAMES = [
    "response_type", "scope", "state", "nonce", "prompt",
    "max_age", "login_hint", "id_token_hint", "ui_locales", "claims_locales", "display",
    "acr_values", "claims", "response_mode", "request", "request_uri", "code_challenge",
    "code_challenge_method", "registration", "resource", "dpop_jkt"]
TOKEN_NAMES = [
    "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
    "client_secret", "client_assertion", "client_assertion_type", "resource",
    "audience", "token", "token_type_hint", "access_token"]
# the names each protocol route reads: drawn from these, a request reaches its deeper checks
NAMES_OF = {"/oauth2/authorize": AUTHORIZE_NAMES, "/oauth2/par": AUTHORIZE_NAMES,
            "/oauth2/token": TOKEN_NAMES,
            "/oauth2/introspect": TOKEN_NAMES, "/oauth2/revoke": TOKEN_NAMES,
            "/oauth2/userinfo": TOKEN_NAMES,
            "/oauth2/logout": ["id_token_hint", "client_id", "post_logout_redirect_uri",
                               "state", "ui_locales", "logout_hint"]}
PATH_VALUES = ["x", "%2e%2e", "0", "中", "a" * 300, "1.2.3.4", "::1", "-", "%00"]


CONTENT_TYPES = [
    "application/json", "application/scim+json", "text/plain", "multipart/form-data",
    "multipart/form-data; boundary=x", "application/x-www-form-urlencoded; charset=gbk"]
AUTHORIZATIONS = [
    "basic", "Basic", "Basic !!!", "Bearer", "Bearer x y", "Bearer " + "a" * 5000,
    "Basic bm9jb2xvbg==", "Basic JXp6OiV6eg==", "Basic //4=", "DPoP abc"]
def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# DPoP proofs (RFC 9449) that are no proofs: odd headers, keys and claims, never signed
DPOP_PROOFS = ["", "x", "a.b.c", "e30.e30.e30", "eyJ9.e30.AA", "a" * 9000] + [
    _b64(head) + "." + _b64(body) + ".AAAA" for head, body in [
        ('{"typ":"dpop+jwt","alg":"ES256","jwk":[]}', "{}"),
        ('{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":1,"y":[]}}',
         '{"jti":1,"htm":[],"htu":{},"iat":"x"}'),
        ('{"typ":"dpop+jwt","alg":"SM2","jwk":{"kty":"EC","crv":"SM2","x":"AA","y":"AA"}}',
         '{"iat":1e400}'),
        ('{"typ":"dpop+jwt","alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}',
         '{"iat":NaN}'),
        ('{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"\\ud800"}}',
         '{"htu":"\\ud800"}'),
        ('{"typ":"dpop+jwt","alg":"none","jwk":{"kty":"oct","k":"AA"}}', "[]"),
    ]]
OTHER_HEADERS = {
    "accept-language": ["", "*", "zh-CN,zh;q=0.9", "xx;q=abc", "en;q=2"],
    "dpop": DPOP_PROOFS,
    "if-match": ['W/"1"', "*", "garbage"],
    "origin": ["null", "http://evil.example"],
}


def _routes(app) -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.router.routes:
        inner = getattr(route, "original_router", None)
        for each in (inner.routes if inner is not None else [route]):
            methods = getattr(each, "methods", None) or set()
            path = getattr(each, "path", "")
            if path.startswith(SKIPPED):
                continue
            found.update((method, path) for method in methods - {"HEAD"})
    return sorted(found)


def _bases(real: dict[str, str], fresh: dict[str, str]) -> dict[str, dict[str, str]]:
    """A valid request per protocol route, for the drawn parameters to change: without it
    random names almost never get past the first check (an unknown client) to the deeper
    ones (``max_age``, ``claims``, PKCE, a token's grant). ``fresh``: tokens minted for
    this route (an earlier route may have revoked or signed out the others)."""
    authorization = {
        "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid profile edu",
        "state": "s", "nonce": "n", "code_challenge": flow.pkce_pair()[1],
        "code_challenge_method": "S256"}
    return {
        "/oauth2/authorize": {"client_id": real["client_id"], **authorization},
        "/oauth2/par": authorization,  # the client authenticates with Basic
        "/oauth2/token": {"grant_type": "client_credentials", "scope": "api.read"},
        "/oauth2/introspect": {"token": fresh["access_token"]},
        "/oauth2/revoke": {"token": fresh["access_token"], "token_type_hint": "access_token"},
        "/oauth2/userinfo": {},  # the token goes in the header (``BEARER``)
        "/oauth2/logout": {"id_token_hint": real["id_token"], "client_id": real["client_id"],
                           "post_logout_redirect_uri": REDIRECT_URI, "state": "s"},
        "/login": {"login": real["login"], "password": real["password"]},
    }


BEARER = {"/oauth2/userinfo"}  # routes whose valid request carries an access token header


@pytest.fixture
def world(client: TestClient, make_client, make_person):
    """A registered app; a person signed in to it in ``client``, with the tokens it got;
    the page's CSRF token; and ``mint``, which gives fresh tokens of the same app for
    another person in another browser, from an offline refresh token: nothing the fuzzing
    does in ``client`` (signing out, revoking, failing passwords) can stop it."""
    registered = make_client(post_logout_redirect_uris=[REDIRECT_URI])
    person, other = make_person(), make_person("s20269990", name="孙同学")
    real = {"client_id": registered.client_id, "redirect_uri": REDIRECT_URI,
            "login": person.login, "password": person.password,
            **_exchange(client, registered, person)}
    minted = _exchange(TestClient(client.app), registered, other)

    def mint() -> dict[str, str]:
        answer = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                             data={"grant_type": "refresh_token",
                                   "refresh_token": minted["refresh_token"]})
        assert answer.status_code == 200, answer.text
        minted.update(answer.json())
        return {"access_token": minted["access_token"]}

    return registered, real, mint, flow.csrf_of(client.get("/").text)


def _exchange(browser: TestClient, registered, person) -> dict[str, str]:
    code = flow.code_flow(browser, registered.client_id, person,
                          scope="openid profile offline_access").params["code"]
    tokens = browser.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": REDIRECT_URI}).json()
    return {k: tokens[k] for k in ("access_token", "refresh_token", "id_token")}


class Fuzzer:
    """Random requests for one route, from a generator seeded by the route."""

    def __init__(self, route: tuple[str, str], real: dict[str, str],
                 base: dict[str, str]) -> None:
        self.rnd = random.Random(f"{SEED}{route}")
        self.real, self.base = real, base
        self.names = NAMES_OF.get(route[1], NAMES)

    def value(self) -> str:
        if self.rnd.random() < 0.7:
            return self.rnd.choice(ODD + list(self.real.values()))
        alphabet = string.printable + "中文é\u00ff\U0001f600"
        return "".join(self.rnd.choice(alphabet) for _ in range(self.rnd.randint(0, 40)))

    def pairs(self) -> list[tuple[str, str]]:
        """The base request, each parameter kept 9 times in 10, changed by 0-6 drawn ones
        (a drawn name replaces a valid value; sometimes the first is sent twice)."""
        kept = {k: v for k, v in self.base.items() if self.rnd.random() < 0.9}
        drawn = [(self.rnd.choice(self.names), self.value())
                 for _ in range(self.rnd.randint(0, 6))]
        pairs = list((kept | dict(drawn)).items())
        return pairs + (drawn[:1] if drawn and self.rnd.random() < 0.2 else [])

    def headers(self) -> dict[str, str]:
        headers = {name: self.rnd.choice(values) for name, values in OTHER_HEADERS.items()
                   if self.rnd.random() < 0.15}
        if self.rnd.random() < 0.15:
            headers["authorization"] = self.rnd.choice(AUTHORIZATIONS)
        return headers

    def request(self, method: str, registered, csrf: str, bearer: str | None) -> dict:
        """``client.request`` keyword arguments for one request; ``bearer``: the route's
        valid request carries this access token."""
        pairs, headers, kind = self.pairs(), self.headers(), self.rnd.choice(
            ["form"] * 6 + ["json", "json", "raw", "none"])
        if self.rnd.random() < 0.5:
            pairs.append(("csrf_token", csrf))
        if bearer and self.rnd.random() < 0.9:
            headers["authorization"] = f"Bearer {bearer}"
        elif not bearer and self.rnd.random() < 0.75:
            secret = f"{registered.client_id}:{registered.secret}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(secret).decode()
        if method in ("GET", "DELETE", "OPTIONS"):  # no body: the parameters in the query
            kind, query, pairs = ("raw" if kind == "raw" else "none"), pairs, []
        else:
            query = [(self.rnd.choice(self.names), self.value())
                     for _ in range(self.rnd.randint(0, 2))]
        content = {"form": lambda: str(httpx.QueryParams(pairs)).encode(),
                   "json": lambda: json.dumps(dict(pairs)).encode(),
                   "raw": lambda: self.rnd.randbytes(self.rnd.randint(0, 200)),
                   "none": lambda: None}[kind]()
        if kind in ("form", "json"):
            headers["content-type"] = ("application/x-www-form-urlencoded" if kind == "form"
                                       else "application/json")
        if self.rnd.random() < 0.1:
            headers["content-type"] = self.rnd.choice(CONTENT_TYPES)
        return {"params": query, "content": content, "headers": headers}


def test_no_request_gets_a_server_error(client: TestClient, world) -> None:
    """Every answer is below 500; and each route with a valid request answers some of its
    requests below 400, so the fuzzing reaches past the first check."""
    registered, real, mint, csrf = world
    for method, template in _routes(client.app):
        fresh = mint() if template in BEARER or template in TOKENS_READ else {}
        base = _bases(real, fresh or {"access_token": ""}).get(template, {})
        fuzzer = Fuzzer((method, template), real, base)
        statuses = set()
        for _ in range(EXAMPLES * (16 if base or fresh else 1)):
            path = re.sub(r"\{[^}]+\}", fuzzer.rnd.choice(PATH_VALUES), template)
            sent = fuzzer.request(method, registered, csrf, fresh.get("access_token")
                                  if template in BEARER else None)
            answer = client.request(method, path, follow_redirects=False, **sent)
            assert answer.status_code < 500, (method, path, sent, answer.text[:300])
            statuses.add(answer.status_code)
        assert not (base or fresh) or min(statuses) < 400, (method, template, statuses)


TOKENS_READ = {"/oauth2/introspect", "/oauth2/revoke"}  # their valid request names a token
