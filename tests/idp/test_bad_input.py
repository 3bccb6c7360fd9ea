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
from tests.idp.live import live_server  # noqa: F401 - fixture

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


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
def test_basic_credentials_that_are_not_ascii(client: TestClient, path: str) -> None:
    response = client.post(path, data={"grant_type": "client_credentials", "token": "x"},
                           headers={"Authorization": "Basic é".encode()})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_a_csrf_token_that_is_not_ascii(client: TestClient) -> None:
    client.get("/login")  # the browser's CSRF cookie
    response = client.post("/login", data={"csrf_token": "é", "login": "x"})
    assert response.status_code == 403 and "表单已过期" in response.text
    header = client.post("/login/qr/ticket", headers={"X-CSRF-Token": "é".encode()}, json={})
    assert header.status_code == 403


def test_the_right_password_with_an_expired_request_signs_nobody_in(
        client: TestClient, make_person, db) -> None:
    """The expired request's page comes first: the password used to be checked, the last
    sign-in and a success written to the audit log and the failure count cleared, and only
    then the request found gone."""
    from sqlalchemy import select

    from core.audit import AuditEvent
    from directory.models import Account

    person = make_person()
    page = client.get("/login")
    response = client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "ia": "gone",
                                           "login": person.login, "password": person.password})
    assert response.status_code == 400 and "登录已过期" in response.text
    with db.session() as session:
        assert session.get(Account, person.account_id).last_login_at is None
        assert not session.scalars(select(AuditEvent).where(
            AuditEvent.action == "login.password")).all()


def test_a_second_factor_step_stored_by_a_newer_worker(client: TestClient, make_person,
                                                       store) -> None:
    import json

    person = make_person()
    store.set("mfa-step:s1", json.dumps({"account_id": person.account_id, "sub": person.sub,
                                         "amr": ["pwd"], "added_later": 1}).encode(), ttl=600)
    client.cookies.set("idp_mfa", "s1")
    assert client.get("/mfa").status_code == 200


def test_nul_characters_never_reach_the_database(client: TestClient, make_client,
                                                 make_person) -> None:
    """PostgreSQL refuses NUL in text (SQLite stores it): each answer is its protocol's
    error, on both backends."""
    make_person()
    authorize = flow.authorize(client, client_id="\x00")
    assert authorize.status_code == 400
    token = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                "client_id": "\x00"})
    assert token.status_code == 401 and token.json()["error"] == "invalid_client"
    basic = client.post("/oauth2/introspect", data={"token": "x"}, auth=("\x00", "s"))
    assert basic.status_code == 401
    page = client.get("/login")
    login = client.post("/login", data={"csrf_token": flow.csrf_of(page.text),
                                        "login": "a\x00b", "password": "x"})
    assert login.status_code == 400 and "账号或密码不正确" in login.text  # the form, again


@pytest.mark.parametrize("stored", [b"{}", b'{"client_id": "c"}',
                                    b'{"client_id": "c", "redirect_uri": "https://a/cb", '
                                    b'"scope": "openid", "max_age": "x"}'])
def test_a_damaged_pending_request_is_an_expired_one(client: TestClient, store,
                                                     stored: bytes) -> None:
    """Entries no version writes (a damaged store) answer like an expired sign-in."""
    client.cookies.set("idp_ia", "x1")
    store.set("ia:x1", stored, ttl=600)
    for path in ("/oauth2/authorize/resume?ia=x1", "/login?ia=x1"):
        response = client.get(path)
        assert response.status_code == 400 and "登录已过期" in response.text, path


def test_a_damaged_second_factor_step_is_an_expired_one(client: TestClient, store) -> None:
    store.set("mfa-step:s2", b'{"sub": "x"}', ttl=600)
    client.cookies.set("idp_mfa", "s2")
    response = client.get("/mfa")
    assert response.status_code == 400 and "登录已过期" in response.text


@pytest.mark.parametrize("uri", ["https://app.example.cn/c b", "https://app.example.cn/\x00",
                                 "https://app.example.cn/\tcb"])
def test_uris_with_spaces_or_control_characters_are_refused(make_client, uri: str) -> None:
    for member in ("redirect_uris", "post_logout_redirect_uris"):
        with pytest.raises(ValueError, match="control characters"):
            make_client(**{member: [uri]})


def test_sql_parameters_never_reach_a_log(db) -> None:
    """The engine renders "[SQL parameters hidden due to hide_parameters=True]" in any
    error it raises, instead of the values."""
    assert db.engine.hide_parameters is True


def test_a_database_error_is_logged_without_the_rows_values(caplog) -> None:
    """PostgreSQL's DETAIL line quotes the values of the row (an identifier, a name):
    the log keeps the error's type and where it happened, never its message."""
    import asyncio

    from sqlalchemy.exc import IntegrityError
    from starlette.requests import Request

    from core.web import errors

    class Driver(Exception):
        pass

    failure = IntegrityError("INSERT INTO x VALUES (...)", None,
                             Driver('DETAIL:  Key (value)=(13800138000) already exists.'))
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with caplog.at_level("ERROR", logger=errors.log.name):
        try:
            raise failure
        except IntegrityError as raised:
            response = asyncio.run(errors._unexpected(request, raised))
    assert response.status_code == 500
    assert "Driver" in caplog.text and "13800138000" not in caplog.text


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/oauth2/jwks",
                                  "/oauth2/jwks/all", "/login", "/readyz",
                                  "/static/core/site.css"])
def test_head_answers_like_get_without_a_body(client: TestClient, path: str) -> None:
    """RFC 9110 9.1: HEAD is supported wherever GET is (caches and health checks send it
    to discovery and the JWKS)."""
    got, head = client.get(path), client.head(path)
    assert got.status_code == head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers.get("cache-control") == got.headers.get("cache-control")


def test_head_on_a_post_endpoint_is_still_not_allowed(client: TestClient) -> None:
    assert client.head("/oauth2/token").status_code == 405


def test_head_through_uvicorn(live_server) -> None:  # noqa: F811
    import httpx

    answer = httpx.head(live_server.url + "/.well-known/openid-configuration")
    assert answer.status_code == 200 and answer.content == b""
    assert int(answer.headers["content-length"]) > 100
