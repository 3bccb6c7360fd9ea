"""SMS codes (mfa.sms) and gateways (mfa.sms_gateways): lifetimes, attempts, limits, storage."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from core.db import Database
from core.field_crypto import blind_index, seal
from core.settings import ConfigError, Settings, load_settings
from core.store import Store
from directory.models import PHONE, Account, IdentifierKind, LoginIdentifier
from mfa import sms
from mfa.sms_gateways import ConsoleGateway, GatewayError, HttpGateway, make_gateway

PHONE_NUMBER = "13800138000"


def add_phone(db: Database, settings: Settings, account_id: int, phone: str = PHONE_NUMBER,
              *, on_person: bool = True) -> None:
    """A phone login as the importer writes it (blind index) and the person's phone."""
    with db.session() as session:
        account = session.get(Account, account_id)
        session.add(LoginIdentifier(account=account, kind=IdentifierKind.phone.value,
                                    value=blind_index(settings, "phone", phone)))
        if on_person:
            seal(settings, PHONE, account.person, phone)


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.gateway = ConsoleGateway(folder)

    def messages(self) -> list[dict]:
        if not self.gateway.path.exists():
            return []
        return [json.loads(line) for line in self.gateway.path.read_text().splitlines()]

    def last_code(self, phone: str = PHONE_NUMBER) -> str:
        return [m for m in self.messages() if m["phone"] == phone][-1]["code"]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path)


@pytest.fixture
def person(db: Database, settings: Settings, make_person):
    made = make_person()
    add_phone(db, settings, made.account_id)
    return made


def _send(db, settings, store, gateway, phone=PHONE_NUMBER, purpose=sms.Purpose.login,
          account_id=None, ip="10.0.0.1"):
    with db.session() as session:
        if account_id is None:
            account = sms.account_for_phone(session, settings, sms.normalise(phone) or "")
            account_id = account.id if account else None
        return sms.send_code(session, settings, store, gateway, phone, purpose,
                             account_id=account_id, ip=ip)


def _verify(db, settings, store, code, phone=PHONE_NUMBER, purpose=sms.Purpose.login,
            account_id=None):
    with db.session() as session:
        return sms.verify_code(session, settings, store, phone, purpose, code,
                               account_id=account_id)


def test_send_and_verify_once(db, settings, store: Store, outbox, person) -> None:
    result = _send(db, settings, store, outbox.gateway, "+86 138-0013-8000")
    assert result.status is sms.SendStatus.sent
    [message] = outbox.messages()
    code = message["code"]
    assert message["phone"] == PHONE_NUMBER and len(code) == 6 and code.isdigit()
    assert code in message["message"] and "5" in message["message"]
    ok = _verify(db, settings, store, f" {code[:3]} {code[3:]} ")
    assert ok.status is sms.VerifyStatus.ok and ok.account_id == person.account_id
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.wrong  # spent


def test_store_holds_a_mac_bound_to_phone_and_purpose(db, settings, store, outbox,
                                                      person) -> None:
    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    raw = store.get(sms._code_key(settings, sms.Purpose.login, PHONE_NUMBER))
    assert raw is not None and code.encode() not in raw and PHONE_NUMBER.encode() not in raw
    assert json.loads(raw)["mac"] == sms._code_mac(settings, sms.Purpose.login, PHONE_NUMBER,
                                                   code)
    # a sign-in code is no second-factor code
    assert _verify(db, settings, store, code, purpose=sms.Purpose.mfa).status \
        is sms.VerifyStatus.wrong
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.ok


def test_wrong_then_right_code(db, settings, store, outbox, person) -> None:
    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    wrong = "000000" if code != "000000" else "111111"
    for bad in (wrong, "12ab56", "", "1234567"):
        assert _verify(db, settings, store, bad).status is sms.VerifyStatus.wrong
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.ok


def test_sixth_attempt_is_refused_even_with_the_right_code(db, settings, store, outbox,
                                                           person) -> None:
    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(sms.MAX_ATTEMPTS):
        assert _verify(db, settings, store, wrong).status is sms.VerifyStatus.wrong
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.too_many
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.wrong  # code gone


def test_expired_code(db, settings, store, outbox, person, monkeypatch) -> None:
    import time

    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    now = time.time()
    monkeypatch.setattr(sms.time, "time", lambda: now + sms.CODE_SECONDS + 1)
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.wrong


def test_a_new_code_replaces_the_old_one(db, settings, store, outbox, person) -> None:
    _send(db, settings, store, outbox.gateway)
    first = outbox.last_code()
    store.delete(f"sms:gap:{sms._phone_id(settings, PHONE_NUMBER)}")
    _send(db, settings, store, outbox.gateway)
    second = outbox.last_code()
    if first != second:
        assert _verify(db, settings, store, first).status is sms.VerifyStatus.wrong
    assert _verify(db, settings, store, second).status is sms.VerifyStatus.ok


def test_per_phone_limits(db, settings, store, outbox, person) -> None:
    assert _send(db, settings, store, outbox.gateway).status is sms.SendStatus.sent
    again = _send(db, settings, store, outbox.gateway, ip="10.0.0.2")
    assert again.status is sms.SendStatus.rate_limited and 0 < again.wait <= 60
    gap = f"sms:gap:{sms._phone_id(settings, PHONE_NUMBER)}"
    for _ in range(sms.PHONE_DAILY - 1):
        store.delete(gap)  # as if a minute had passed
        assert _send(db, settings, store, outbox.gateway).status is sms.SendStatus.sent
    store.delete(gap)
    refused = _send(db, settings, store, outbox.gateway, ip="10.0.0.3")
    assert refused.status is sms.SendStatus.rate_limited and refused.wait > 3600
    assert len(outbox.messages()) == sms.PHONE_DAILY


def test_per_ip_limit(db, settings, store, outbox) -> None:
    results = [_send(db, settings, store, outbox.gateway, f"139{n:08d}")
               for n in range(sms.IP_HOURLY + 1)]
    assert [r.status for r in results[:-1]] == [sms.SendStatus.sent] * sms.IP_HOURLY
    assert results[-1].status is sms.SendStatus.rate_limited
    assert _send(db, settings, store, outbox.gateway, "13700000000", ip="10.9.9.9").status \
        is sms.SendStatus.sent  # another address is not limited


def test_unknown_number_answers_the_same_and_sends_nothing(db, settings, store, outbox,
                                                           person) -> None:
    unknown = _send(db, settings, store, outbox.gateway, "13912345678")
    known = _send(db, settings, store, outbox.gateway)
    assert unknown == known == sms.SendResult(sms.SendStatus.sent)
    assert [m["phone"] for m in outbox.messages()] == [PHONE_NUMBER]
    # the limits apply to unknown numbers too (else they would tell them apart)
    assert _send(db, settings, store, outbox.gateway, "13912345678").status \
        is sms.SendStatus.rate_limited
    assert _send(db, settings, store, outbox.gateway, "12345").status \
        is sms.SendStatus.invalid_phone


def test_audit_names_no_phone_and_no_code(db, settings, store, outbox, person) -> None:
    from sqlalchemy import select

    from core.audit import AuditEvent

    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    _verify(db, settings, store, code)
    with db.session() as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    actions = [(e.action, e.outcome) for e in events]
    assert ("sms.send", "success") in actions and ("sms.verify", "success") in actions
    for event in events:
        text = json.dumps([event.actor, event.target, event.detail])
        assert PHONE_NUMBER not in text and code not in text


def test_phone_of_needs_a_phone_login(db, settings, make_person) -> None:
    with_login = make_person("s1")
    add_phone(db, settings, with_login.account_id, "13800138001")
    person_phone_only = make_person("s2")
    with db.session() as session:
        seal(settings, PHONE, session.get(Account, person_phone_only.account_id).person,
             "13800138002")
    login_only = make_person("s3")
    add_phone(db, settings, login_only.account_id, "13800138003", on_person=False)
    with db.session() as session:
        assert sms.phone_of(session, settings, with_login.account_id) == "13800138001"
        assert sms.phone_of(session, settings, person_phone_only.account_id) is None
        assert sms.phone_of(session, settings, login_only.account_id) is None  # not readable
        found = sms.account_for_phone(session, settings, "13800138001")
        assert found is not None and found.id == with_login.account_id


def test_console_gateway_log_masks_phone_and_hides_code(tmp_path, caplog) -> None:
    gateway = ConsoleGateway(tmp_path)
    with caplog.at_level(logging.INFO, logger="idp.sms"):
        gateway.send("13812345678", "您的验证码是 654321。", {"code": "654321", "minutes": "5"})
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "138****5678" in logged and "13812345678" not in logged and "654321" not in logged
    line = json.loads((tmp_path / "sms-outbox.jsonl").read_text())
    assert line["phone"] == "13812345678" and line["code"] == "654321" and line["at"]


def test_http_gateway_posts_the_configured_json(caplog) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    body = {"PhoneNumberSet": ["{phone_e164}"], "TemplateId": "1234",
            "TemplateParamSet": ["{code}", "{minutes}"], "note": "a {brace} stays"}
    gateway = HttpGateway("https://relay.example.edu.cn/sms", body=body, token="s3cret-token",
                          transport=httpx.MockTransport(handler))
    with caplog.at_level(logging.DEBUG):
        gateway.send("13800138000", "text", {"code": "123456", "minutes": "5"})
    [request] = seen
    assert request.method == "POST" and request.headers["authorization"] == "Bearer s3cret-token"
    assert json.loads(request.content) == {"PhoneNumberSet": ["+8613800138000"],
                                           "TemplateId": "1234",
                                           "TemplateParamSet": ["123456", "5"],
                                           "note": "a {brace} stays"}
    assert "s3cret-token" not in caplog.text and "123456" not in caplog.text


@pytest.mark.parametrize("answer", [500, 401, "timeout"])
def test_http_gateway_failures_raise_a_clear_error(answer, caplog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if answer == "timeout":
            raise httpx.ConnectTimeout("slow", request=request)
        return httpx.Response(answer, text="no")

    gateway = HttpGateway("https://relay.example.edu.cn/sms", token="s3cret-token",
                          transport=httpx.MockTransport(handler))
    with pytest.raises(GatewayError) as caught:
        gateway.send("13800138000", "您的验证码是 123456", {"code": "123456", "minutes": "5"})
    assert "123456" not in str(caught.value) and "13800138000" not in str(caught.value)
    assert "s3cret-token" not in caplog.text and "123456" not in caplog.text


def test_http_gateway_against_a_local_server(tmp_path) -> None:
    received: list[tuple[dict, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append((json.loads(self.rfile.read(length)),
                             self.headers.get("Authorization", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = load_settings({
            "IDP_VAR_DIR": str(tmp_path), "IDP_SMS_GATEWAY": "http",
            "IDP_SMS_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/send",
            "IDP_SMS_WEBHOOK_TOKEN": "tok", "IDP_SMS_WEBHOOK_TIMEOUT": "3",
            "IDP_SMS_WEBHOOK_BODY": json.dumps({
                "PhoneNumbers": "{phone}", "SignName": "城市教育", "TemplateCode": "SMS_1",
                "TemplateParam": '{"code":"{code}"}'}, ensure_ascii=False)})
        gateway = make_gateway(settings)
        assert isinstance(gateway, HttpGateway)
        gateway.send("13800138000", "text", {"code": "042042", "minutes": "5"})
    finally:
        server.shutdown()
        server.server_close()
    assert received == [({"PhoneNumbers": "13800138000", "SignName": "城市教育",
                          "TemplateCode": "SMS_1", "TemplateParam": '{"code":"042042"}'},
                         "Bearer tok")]


def test_sms_settings(tmp_path) -> None:
    base = {"IDP_VAR_DIR": str(tmp_path)}
    assert load_settings(base).sms_gateway == "console"
    production = {**base, "IDP_MODE": "production", "IDP_MASTER_KEY": "ab" * 32,
                  "IDP_DATABASE_URL": "postgresql://h/db",
                  "IDP_ISSUER": "https://id.example.edu.cn"}
    assert load_settings(production).sms_gateway == "none"
    assert not load_settings(production).sms_enabled
    assert make_gateway(load_settings(production)) is None
    problems = [
        ({**production, "IDP_SMS_GATEWAY": "console"}, "development only"),
        ({**base, "IDP_SMS_GATEWAY": "http"}, "needs IDP_SMS_WEBHOOK_URL"),
        ({**base, "IDP_SMS_GATEWAY": "http", "IDP_SMS_WEBHOOK_URL": "https://x/y",
          "IDP_SMS_WEBHOOK_BODY": "[1]"}, "must be a JSON object"),
        ({**base, "IDP_SMS_GATEWAY": "pigeon"}, "IDP_SMS_GATEWAY: must be console, http or none"),
        ({**base, "IDP_SMS_GATEWY": "http"}, "did you mean IDP_SMS_GATEWAY"),
    ]
    for environ, message in problems:
        with pytest.raises(ConfigError, match=message):
            load_settings(environ)
    ok = load_settings({**production, "IDP_SMS_GATEWAY": "http",
                        "IDP_SMS_WEBHOOK_URL": "https://relay.example.edu.cn/sms"})
    assert ok.sms_enabled and isinstance(make_gateway(ok), HttpGateway)


def test_a_failed_send_is_audited_as_a_failure_only(db, settings, store, person) -> None:
    """The second-factor send calls the gateway in the request: a 502 is one failure row,
    not a success followed by a failure."""
    from sqlalchemy import select

    from core.audit import AuditEvent

    failing = HttpGateway("https://relay.example.edu.cn/sms",
                          transport=httpx.MockTransport(lambda request: httpx.Response(502)))
    result = _send(db, settings, store, failing, purpose=sms.Purpose.mfa,
                   account_id=person.account_id)
    assert result.status is sms.SendStatus.gateway_failed
    with db.session() as session:
        rows = [(e.outcome, json.loads(e.detail or "{}").get("reason")) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sms.send"))]
    assert rows == [("failure", "gateway_failed")]


def test_second_factor_codes_have_no_ip_limit(db, settings, store, outbox) -> None:
    """A school's teachers share one address: the twenty-first's second-factor code is sent
    (the number's own limits still apply); sign-in codes keep the IP limit."""
    numbers = [f"1390013{n:04d}" for n in range(sms.IP_HOURLY + 1)]
    for account_id, number in enumerate(numbers, start=1000):
        result = _send(db, settings, store, outbox.gateway, phone=number,
                       purpose=sms.Purpose.mfa, account_id=account_id)
        assert result.status is sms.SendStatus.sent, number
    statuses = [_send(db, settings, store, outbox.gateway,
                      phone=number.replace("139", "137")).status for number in numbers]
    last = _send(db, settings, store, outbox.gateway, phone="13600136000")
    assert statuses == [sms.SendStatus.sent] * sms.IP_HOURLY + [sms.SendStatus.rate_limited]
    assert last.status is sms.SendStatus.rate_limited


def test_the_decoy_of_an_unregistered_number_never_passes(db, settings, store, outbox,
                                                          monkeypatch) -> None:
    """Even a guess that hits the decoy's code is wrong: there is no account behind it."""
    monkeypatch.setattr(sms.secrets, "randbelow", lambda _n: 123456)
    assert _send(db, settings, store, outbox.gateway, phone="13900139000").status \
        is sms.SendStatus.sent
    assert outbox.messages() == []
    result = _verify(db, settings, store, "123456", phone="13900139000")
    assert result.status is sms.VerifyStatus.wrong and result.account_id is None


def test_a_new_code_sent_while_an_old_one_is_checked_stays(db, settings, store: Store, outbox,
                                                           person, monkeypatch) -> None:
    """The check read the old code, a new one replaced it, then the check spent "the" code:
    a take deleted the new one. Only the code that was read is spent (compare-and-delete)."""
    _send(db, settings, store, outbox.gateway)
    old_code = outbox.last_code()
    key = sms._code_key(settings, sms.Purpose.login, PHONE_NUMBER)
    read = store.get(key)
    newer = json.dumps({**json.loads(read), "nonce": "sent-meanwhile"}).encode()
    store.set(key, newer, ttl=300)
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda k: read if k == key else real_get(k))
    assert _verify(db, settings, store, old_code).status is sms.VerifyStatus.wrong
    monkeypatch.setattr(store, "get", real_get)
    assert store.get(key) == newer


def test_take_if_deletes_only_what_was_read(store: Store) -> None:
    store.set("take-if", b"a", ttl=30)
    assert not store.take_if("take-if", b"b") and store.get("take-if") == b"a"
    assert store.take_if("take-if", b"a") and store.get("take-if") is None
    assert not store.take_if("take-if", b"a")


def test_a_code_does_not_pass_once_its_number_is_suspended_or_another_s(
        db, settings, store, outbox, person, make_person) -> None:
    """A code sent before the helpdesk suspended the number (a stolen phone, mfa.reset), or
    before the number became another account's, is spent without passing; a suspended
    number gets no code and no number for the second factor."""
    from core.db import utcnow

    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    with db.session() as session:
        session.get(Account, person.account_id).sms_suspended_at = utcnow()
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.wrong
    with db.session() as session:
        assert sms.phone_of(session, settings, person.account_id) is None
        session.get(Account, person.account_id).sms_suspended_at = None
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.wrong  # spent

    store.delete(f"sms:gap:{sms._phone_id(settings, PHONE_NUMBER)}")
    _send(db, settings, store, outbox.gateway)
    code = outbox.last_code()
    with db.session() as session:  # the number moves to another account meanwhile
        session.query(LoginIdentifier).filter_by(account_id=person.account_id).delete()
    add_phone(db, settings, make_person("s20268888").account_id)
    assert _verify(db, settings, store, code).status is sms.VerifyStatus.wrong
