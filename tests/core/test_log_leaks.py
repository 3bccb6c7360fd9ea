"""What could reach the logs around the redaction filter: an unexpected error logged again
by the server, URLs logged by httpx, the access log's path, a caller's X-Request-ID."""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from core.web import logs

EMAIL = "zhang.xiaoming@school1.example.cn"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch):
    """Everything the service logs, as the JSON lines it writes on stderr."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    logs.configure("DEBUG")
    yield buffer
    logging.getLogger().handlers[:] = []


def _capture_into(buffer: io.StringIO) -> None:
    """After create_app (which configures logging itself): the service's JSON handler,
    writing into ``buffer``, at the most verbose level."""
    logs.configure("DEBUG")
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger().handlers[:] = [handler]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unexpected_database_error_message_never_logged(settings, db, store, captured) -> None:
    """core/web/errors.py logs a DBAPIError without its message (PostgreSQL's DETAIL line
    quotes the row); Starlette's last resort re-raised after answering, and uvicorn logged
    it again, message and all ("Exception in ASGI application")."""
    import uvicorn
    from sqlalchemy.exc import IntegrityError

    from idp.app import create_app

    app = create_app(settings, db=db, store=store)
    _capture_into(captured)  # create_app configured logging again: keep our buffer
    boom = APIRouter()

    @boom.get("/boom")
    def boom_route() -> None:  # e.g. a unique violation in a race nobody expected
        class UniqueViolation(Exception):
            pass
        raise IntegrityError("INSERT INTO login_identifier ...", {}, UniqueViolation(
            'duplicate key value violates unique constraint "uq_login_identifier_kind"\n'
            f"DETAIL:  Key (kind, value)=(email, {EMAIL}) already exists."))

    app.include_router(boom)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/boom", timeout=10)
        time.sleep(0.3)
    finally:
        server.should_exit = True
        thread.join(10)
    assert answer.status_code == 500
    out = captured.getvalue()
    assert EMAIL not in out, [line[:200] for line in out.splitlines() if EMAIL in line]


def test_sms_webhook_url_with_credentials_not_logged(captured) -> None:
    """httpx logged every request's full URL at INFO (the default level)."""
    from mfa.sms_gateways import HttpGateway

    gateway = HttpGateway(
        "https://sms-relay.internal.example.edu.cn/aliyun?AccessKeyId=LTAI5tTestKey"
        "&Signature=TestSignatureValue",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"Code": "OK"})))
    gateway.send("13800138000", "您的验证码是 123456", {"code": "123456", "minutes": "5"})
    out = captured.getvalue()
    assert "LTAI5tTestKey" not in out and "TestSignatureValue" not in out, out


def test_access_log_never_carries_email_or_phone(settings, db, store, captured) -> None:
    """The access log writes the path (a mistaken client puts an e-mail in it), and the
    caller's own X-Request-ID skipped the redaction filter."""
    from idp.app import create_app

    app = create_app(settings, db=db, store=store)
    _capture_into(captured)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        client.get(f"/api/directory/people/{EMAIL}")
        client.get("/", headers={"X-Request-ID": "13800138002-abcdef"})
    out = captured.getvalue()
    leaks = [line[:220] for line in out.splitlines()  # the service's lines, not TestClient's
             if '"logger": "idp' in line and (EMAIL in line or "13800138002" in line)]
    assert not leaks, leaks

