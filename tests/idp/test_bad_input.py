"""Hostile input that once reached a 500: each answers with its protocol's error.

JSON nested deeper than Python's recursion limit (``[[[[...``) raises ``RecursionError``,
not ``ValueError``; ``str.isdigit`` accepts digits ``int`` refuses (``²``); a JWT's claims
may be any JSON value, not only an object.
"""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from tests.idp import flow

DEEP = "[" * 3000
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


DEEP_JWT = f"{_b64(DEEP)}.{_b64('{}')}.c2ln"
ES256_HEADER = _b64('{"alg":"ES256"}')


@pytest.mark.parametrize("params", [
    {"max_age": "²"}, {"max_age": "٣"}, {"claims": DEEP}, {"id_token_hint": DEEP_JWT},
    {"claims": '{"id_token": ' + '{"a": ' * 600 + "1" + "}" * 601},
    {"claims": '{"userinfo": {"name": ' + "[" * 20 + "]" * 20 + "}}"},
], ids=["superscript-max-age", "arabic-indic-max-age", "deep-claims", "deep-id-token-hint",
        "claims-600-deep", "claims-20-deep"])
def test_authorization_request_answers_invalid_request(client: TestClient, make_client,
                                                       params: dict[str, str]) -> None:
    response = flow.authorize(client, client_id=make_client().client_id, **params)
    assert response.status_code in (302, 303)
    redirect = flow.Redirect(response.headers["location"])
    assert redirect.params["error"] == "invalid_request" and redirect.params["state"] == "st-1"


def test_deeply_nested_tokens_are_just_invalid(client: TestClient, make_client) -> None:
    registered = make_client()
    auth = (registered.client_id, registered.secret)
    userinfo = client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {DEEP_JWT}"})
    assert userinfo.status_code == 401 and userinfo.json()["error"] == "invalid_token"
    introspected = client.post("/oauth2/introspect", data={"token": DEEP_JWT}, auth=auth)
    assert introspected.json() == {"active": False}
    revoked = client.post("/oauth2/revoke", data={"token": DEEP_JWT}, auth=auth)
    assert revoked.status_code == 200


@pytest.mark.parametrize("payload", ["[1]", '"s"', "5", "null", DEEP, '{"sub": ["x"]}'])
def test_client_assertion_that_is_no_claims_object(client: TestClient, payload: str) -> None:
    response = client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": f"{ES256_HEADER}.{_b64(payload)}.c2ln"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/login", "/login/sms", "/oauth2/token", "/scim/v2/Users"])
def test_a_huge_body_is_refused_before_it_is_read(client: TestClient, path: str) -> None:
    """2 MiB at most anywhere: over it, 413 from the Content-Length or as a chunked body
    passes the limit, never buffered by a handler (and never a 500)."""
    from core.web.middleware import MAX_REQUEST_BODY

    huge = b"a=" + b"x" * MAX_REQUEST_BODY
    declared = client.post(path, content=huge,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert declared.status_code == 413

    def chunks():
        for _ in range(MAX_REQUEST_BODY // 65536 + 2):
            yield b"x" * 65536

    declared_only = client.post(path, content=b"a=b", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": str(MAX_REQUEST_BODY + 1)})  # refused from the header alone
    assert declared_only.status_code == 413

    chunked = client.post(path, content=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 413
