"""The web kit: headers, languages, CSRF, errors, request ids, health endpoints."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient

from core.store import RedisStore
from core.web.csrf import require_csrf
from core.web.errors import PageError, Problem
from core.web.templates import render


def test_start_page_is_chinese_by_default(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert '<html lang="zh-CN">' in response.text
    assert "城市教育统一身份认证" in response.text


@pytest.mark.parametrize(
    ("params", "cookies", "headers"),
    [
        ({"ui_locales": "en-US zh-CN"}, {}, {}),
        ({}, {"lang": "en"}, {}),
        ({}, {}, {"Accept-Language": "fr;q=1, en-GB;q=0.8, zh;q=0.5"}),
    ],
)
def test_english_on_request(client: TestClient, params, cookies, headers) -> None:
    client.cookies.update(cookies)
    response = client.get("/", params=params, headers=headers)
    assert '<html lang="en">' in response.text
    assert "City Education Unified Identity" in response.text


def test_unsupported_language_falls_back_to_chinese(client: TestClient) -> None:
    response = client.get("/", headers={"Accept-Language": "fr, de;q=0.5"})
    assert '<html lang="zh-CN">' in response.text


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in headers  # plain http in tests


def test_hsts_over_https(app: FastAPI) -> None:
    with TestClient(app, base_url="https://id.example.edu.cn") as https_client:
        assert "max-age=" in https_client.get("/healthz").headers["strict-transport-security"]


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123-xyz"}).headers[
        "x-request-id"] == "abc-123-xyz"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id<script>"}).headers[
        "x-request-id"]
    assert made != "bad id" and len(made) == 16


def test_unknown_api_path_is_problem_json(client: TestClient) -> None:
    response = client.get("/no/such/thing", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_unknown_page_is_a_translated_page(client: TestClient) -> None:
    response = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "页面不存在" in response.text
    english = client.get("/no/such/page?ui_locales=en", headers={"Accept": "text/html"})
    assert "Page not found" in english.text


# -- a small app around the web kit, for forms and errors ---------------------------


@pytest.fixture
def kit_client(app: FastAPI) -> TestClient:
    pages = APIRouter(dependencies=[Depends(require_csrf)])

    @pages.get("/form")
    def form(request: Request):
        return render(request, "error.html", {"title": "Welcome", "message": "Welcome"})

    @pages.post("/form")
    def submit() -> dict[str, bool]:
        return {"accepted": True}

    @pages.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    @pages.get("/page-error")
    def page_error() -> None:
        raise PageError(403, "You are not allowed to do this.", title="Not allowed")

    @pages.get("/problem")
    def problem() -> None:
        raise Problem(409, "Conflict", "It clashes.")

    @pages.get("/unavailable")
    def unavailable() -> None:
        RedisStore("redis://127.0.0.1:1/0").get("x")

    @pages.get("/typed")
    def typed(n: int) -> dict[str, int]:
        return {"n": n}

    app.include_router(pages)
    return TestClient(app, raise_server_exceptions=False)


def test_csrf_token_required_on_forms(kit_client: TestClient, app: FastAPI) -> None:
    page = kit_client.get("/form")
    assert "csrf" in page.cookies
    assert kit_client.post("/form", data={"x": "1"}).status_code == 403
    assert kit_client.post("/form", data={"csrf_token": "forged"}).status_code == 403


def test_csrf_valid_token_accepted(kit_client: TestClient) -> None:
    kit_client.get("/form")
    from types import SimpleNamespace

    from core.web.csrf import _mac

    fake_request = SimpleNamespace(app=kit_client.app)
    token = _mac(fake_request, kit_client.cookies["csrf"])
    response = kit_client.post("/form", data={"csrf_token": token})
    assert response.status_code == 200 and response.json() == {"accepted": True}
    assert kit_client.post("/form", headers={"X-CSRF-Token": token}).status_code == 200


def test_csrf_token_from_another_cookie_refused(kit_client: TestClient) -> None:
    from types import SimpleNamespace

    from core.web.csrf import _mac

    token = _mac(SimpleNamespace(app=kit_client.app), "attacker-cookie")
    kit_client.get("/form")
    assert kit_client.post("/form", data={"csrf_token": token}).status_code == 403


def test_csrf_failure_page_is_translated(kit_client: TestClient) -> None:
    response = kit_client.post("/form", data={}, headers={"Accept": "text/html"})
    assert response.status_code == 403 and "表单已过期" in response.text


def test_unexpected_error_reveals_nothing(kit_client: TestClient) -> None:
    response = kit_client.get("/boom", headers={"Accept": "text/html"})
    assert response.status_code == 500
    assert "secret internals" not in response.text and "Traceback" not in response.text
    api = kit_client.get("/boom")
    assert api.status_code == 500 and "secret" not in api.text


def test_page_error_and_problem(kit_client: TestClient) -> None:
    page = kit_client.get("/page-error")
    assert page.status_code == 403 and "无权操作" in page.text
    problem = kit_client.get("/problem")
    assert problem.status_code == 409
    assert problem.json() == {"type": "about:blank", "title": "Conflict", "status": 409,
                              "detail": "It clashes."}


def test_backend_outage_is_503(kit_client: TestClient) -> None:
    response = kit_client.get("/unavailable")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


def test_validation_error_is_400_problem(kit_client: TestClient) -> None:
    response = kit_client.get("/typed?n=abc")
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["query", "n"]


# -- health ---------------------------------------------------------------------------


def test_healthz_readyz_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "store": "ok",
                                                              "signing_keys": "ok"}}
    metrics = client.get("/metrics").text
    assert 'idp_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_redis(port: int, workdir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed (scripts/install-peers.sh installs it)")
def test_readyz_names_the_store_while_down_and_recovers(settings, db, tmp_path) -> None:
    from idp.app import create_app

    port = _free_port()
    server = _start_redis(port, tmp_path)
    store = RedisStore(f"redis://127.0.0.1:{port}/0")
    try:
        with TestClient(create_app(settings, db=db, store=store)) as ready_client:
            assert ready_client.get("/readyz").status_code == 200
            server.terminate()
            server.wait()
            down = ready_client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["checks"] == {"database": "ok", "store": "unavailable",
                                             "signing_keys": "ok"}
            server = _start_redis(port, tmp_path)
            assert ready_client.get("/readyz").status_code == 200
    finally:
        server.terminate()
        server.wait()


def test_readyz_names_the_database_while_down(settings, store) -> None:
    from core.db import Database
    from idp.app import create_app
    from tests.conftest import make_settings

    broken = Database(make_settings(settings.var_dir,
                                    "postgresql+psycopg://nobody@127.0.0.1:1/none"))
    with TestClient(create_app(settings, db=broken, store=store)) as down_client:
        response = down_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unavailable", "store": "ok"}


def test_sync_endpoints_get_one_thread_per_pooled_connection(client: TestClient,
                                                              settings) -> None:
    """More threads than pooled connections would open throwaway connections (the
    pool's overflow) under load: the app sizes the thread pool to the connection pool."""
    import anyio.to_thread

    def tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert client.portal.call(tokens) == settings.database_pool_size != 40  # anyio's default


def test_a_route_bug_reaches_the_test_that_made_it(app) -> None:
    """The suite's app re-raises an unexpected error after answering it, as Starlette's own
    last resort did, so a test fails with the bug's traceback (a served app does not)."""
    from fastapi.testclient import TestClient

    class Boom(RuntimeError):
        pass

    @app.get("/_test/boom")
    def boom() -> None:
        raise Boom("a bug")

    with TestClient(app, base_url="http://127.0.0.1:8000") as client, pytest.raises(Boom):
        client.get("/_test/boom")
    app.state.reraise_unexpected = False
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/_test/boom").status_code == 500
