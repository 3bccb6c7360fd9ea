from __future__ import annotations

import json
import logging

import pytest

from core.web.logs import JsonFormatter, redact, request_id_var


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("login failed password=hunter2 for t1", "hunter2"),
        ('{"client_secret": "abc123def", "x": 1}', "abc123def"),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", "eyJzdWIiOiIx"),
        ("basic dXNlcjpwYXNz header", "dXNlcjpwYXNz"),
        ("token eyJhbGciOiJTTTIifQ.eyJzdWIiOiJhYmMifQ.AAAAAAAA", "eyJzdWIiOiJhYmMifQ"),
        ("person 11010519491231002X imported", "11010519491231002X"),
        ("sms sent to 13800138000 ok", "13800138000"),
        ("sms sent to +86 13800138000 ok", "13800138000"),
        ("code=SplxlOBeZQQYbYS6WxSbIA&state=af0", "SplxlOBeZQQYbYS6WxSbIA"),
    ],
)
def test_redaction(raw: str, secret: str) -> None:
    assert secret not in redact(raw)


def test_harmless_text_is_kept() -> None:
    text = "GET /authorize 302 in 12.5 ms, 3 users, order 20261128"
    assert redact(text) == text


def test_json_records_carry_request_id_and_redact_extras() -> None:
    record = logging.LogRecord("idp", logging.INFO, __file__, 1, "user %s", ("13912345678",),
                               None)
    record.phone_note = "call 13912345678"
    token = request_id_var.set("req-42")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req-42"
    assert "13912345678" not in line
    assert entry["level"] == "info"
