"""QR-code login: a signed-in phone approves a sign-in on a computer.

Two TestClients are two browsers (the desktop that shows the code and the phone that
scans it); a third is a stranger. The last test drives two Chromium contexts against a
live server.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.store import Store
from directory.models import Account
from idp import qr_login as web
from idp import sessions
from mfa import qr_login as qr
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.live import live_server  # noqa: F401 - fixture

DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0")
EN = {"Accept-Language": "en"}


@pytest.fixture
def browsers(app) -> Iterator[tuple[TestClient, TestClient, TestClient]]:
    """(desktop, phone, stranger): three browsers with their own cookies."""
    with TestClient(app, base_url="http://127.0.0.1:8000",
                    headers={**EN, "User-Agent": DESKTOP_UA}) as desktop, \
            TestClient(app, base_url="http://127.0.0.1:8000", headers=EN) as phone, \
            TestClient(app, base_url="http://127.0.0.1:8000", headers=EN) as stranger:
        yield desktop, phone, stranger


def _csrf_header(client: TestClient, path: str = "/login") -> dict[str, str]:
    found = re.search(r'data-qr-login[^>]*data-csrf="([^"]+)"', client.get(path).text, re.S)
    assert found, "no QR panel on the login page"
    return {"X-CSRF-Token": found.group(1)}


def _ticket(desktop: TestClient, ia: str = "", path: str = "/login") -> dict:
    response = desktop.post("/login/qr/ticket", json={"ia": ia}, headers=_csrf_header(
        desktop, path))
    assert response.status_code == 200, response.text
    body = response.json()
    assert desktop.cookies.get(web.COOKIE)
    return body


def _signed_in_phone(phone: TestClient, store: Store, person, amr=("pwd",),
                     auth_time: int | None = None) -> sessions.SSOSession:
    token, session = sessions.start(store, account_id=person.account_id, sub=person.sub,
                                    amr=list(amr), acr="urn:edu:acr:sfa")
    if auth_time is not None:
        session.auth_time = auth_time
        sessions.save(store, token, session)
    phone.cookies.set(sessions.COOKIE, token)
    return session


def _scan(phone: TestClient, ticket: dict):
    return phone.get(urlsplit(ticket["scan_url"]).path + "?" + urlsplit(
        ticket["scan_url"]).query)


def _decide(phone: TestClient, ticket: dict, decision: str = "approve"):
    page = _scan(phone, ticket)
    assert page.status_code == 200, page.text
    return phone.post(f"/login/qr/{decision}", data={
        "csrf_token": flow.csrf_of(page.text), "t": ticket["ticket"]})


def _status(client: TestClient, ticket: dict) -> tuple[int, dict]:
    response = client.get("/login/qr/status", params={"t": ticket["ticket"]})
    return response.status_code, response.json()


def _redeem(client: TestClient, ticket: dict, ia: str = "", approver: str | None = None):
    """Press "continue as ...": with the approver the status names (``approver``: what to
    send instead)."""
    if approver is None:
        approver = _status(client, ticket)[1].get("approver", "")
    csrf = flow.csrf_of(client.get("/login").text)
    return client.post("/login/qr/redeem", data={"csrf_token": csrf, "t": ticket["ticket"],
                                                 "ia": ia, "approver": approver},
                       follow_redirects=False)


def _approved_redeem(desktop: TestClient, phone: TestClient, ia: str):
    """The whole QR sign-in for the pending request ``ia``: a code, the phone scans and
    approves, the computer continues as the approver."""
    ticket = _ticket(desktop, ia)
    _scan(phone, ticket)
    _decide(phone, ticket)
    return _redeem(desktop, ticket, ia)


def _session_of(store: Store, response) -> sessions.SSOSession:
    token = response.cookies.get(sessions.COOKIE)
    assert token, "no SSO session was started"
    raw = store.get(sessions._key(token))
    assert raw is not None
    return sessions.SSOSession(**json.loads(raw))


def _audit(db: Database, prefix: str = "login.qr.") -> list[tuple[str, str]]:
    with db.sessions() as session:
        return [(a, o) for a, o in session.execute(
            select(AuditEvent.action, AuditEvent.outcome).where(
                AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq))]


# -- the flow ------------------------------------------------------------------------------


def test_full_flow_starts_a_desktop_session(browsers, store, db, make_person) -> None:
    desktop, phone, _ = browsers
    person = make_person()
    auth_time = int(time.time()) - 600
    _signed_in_phone(phone, store, person, auth_time=auth_time)

    assert "/login/qr" in desktop.get("/login").text  # the panel and its no-script link
    ticket = _ticket(desktop)
    assert ticket["svg"].startswith("<svg") and ticket["expires_in"] == 120
    assert ticket["scan_url"].startswith("http://127.0.0.1:8000/login/qr/scan?t=")
    assert len(ticket["ticket"]) >= 22  # >= 128 bits
    set_cookie = [h for k, h in desktop.post("/login/qr/ticket", json={}, headers=_csrf_header(
        desktop)).headers.multi_items() if k == "set-cookie"]
    assert any("idp_qr=" in h and "HttpOnly" in h and "samesite=lax" in h.lower()
               and "Path=/;" in h for h in set_cookie)
    assert _status(desktop, ticket) == (200, {
        "status": "pending", "final": False, "message": "Scan this code with the phone on "
        "which you are signed in, then approve on the phone."})

    page = _scan(phone, ticket)
    assert page.status_code == 200
    assert "Edge on Windows" in page.text and "testclient" in page.text  # device and place
    scanned = _status(desktop, ticket)[1]
    assert scanned["status"] == "scanned" and scanned["message"].startswith("Scanned by 赵*学")
    done = _decide(phone, ticket)
    assert done.status_code == 200 and "You approved the sign-in" in done.text
    approved = _status(desktop, ticket)[1]
    assert approved["status"] == "approved" and approved["continue"] == "Continue as 赵*学"

    signed = _redeem(desktop, ticket)
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    session = _session_of(store, signed)
    assert session.account_id == person.account_id and session.sub == person.sub
    assert session.amr == ["pwd"] and session.auth_time == auth_time
    assert session.acr == "urn:edu:acr:sfa"
    assert _audit(db) == [("login.qr.approve", "success"), ("login.qr.redeem", "success")]


def test_a_desktop_session_from_a_qr_code_cannot_change_factors(browsers, store,
                                                                 make_person) -> None:
    """Approving a code shown by someone else must not hand them the factor pages: the
    desktop session is never "recent" for them, however fresh the phone's sign-in."""
    desktop, phone, _ = browsers
    person = make_person()
    _signed_in_phone(phone, store, person, auth_time=int(time.time()))
    assert phone.get("/account/security/totp", follow_redirects=False).status_code == 200
    ticket = _ticket(desktop)
    _scan(phone, ticket)
    _decide(phone, ticket)
    signed = _redeem(desktop, ticket)
    assert _session_of(store, signed).proven_here is False
    for page in ("/account/security/totp", "/account/security/passkeys"):
        answer = desktop.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?")


def test_the_computer_asks_whose_approval_it_takes(browsers, store, make_person) -> None:
    """Without naming the approver (as the no-script page's first button does), a redeem
    gets the question "continue as 赵*学?" and signs in only when that is answered."""
    desktop, phone, _ = browsers
    person = make_person()
    _signed_in_phone(phone, store, person)
    ticket = _ticket(desktop)
    _scan(phone, ticket)
    _decide(phone, ticket)
    asked = _redeem(desktop, ticket, approver="")
    assert asked.status_code == 200 and "赵*学 approved on the phone" in asked.text
    assert 'name="approver" value="赵*学"' in asked.text and "Continue as 赵*学" in asked.text
    assert sessions.COOKIE not in asked.cookies
    assert _redeem(desktop, ticket, approver="李*").status_code == 200  # not who approved
    signed = _redeem(desktop, ticket, approver="赵*学")
    assert signed.status_code == 303 and _session_of(store, signed).sub == person.sub


def test_a_qr_sign_in_cannot_set_up_a_second_factor(browsers, store, make_client,
                                                    make_person) -> None:
    """An app that needs two factors, a phone with one: the computer is asked for the second
    factor but offered no authenticator enrolment (that would add the computer's factor to
    the approver's account), and whatever it ends in is not a session proven here."""
    desktop, phone, _ = browsers
    registered = make_client(default_acr_values=["urn:edu:acr:mfa"])
    person = make_person()
    _signed_in_phone(phone, store, person, auth_time=int(time.time()))
    ia = flow.ia_of(flow.authorize(desktop, client_id=registered.client_id))
    step = _approved_redeem(desktop, phone, ia)
    assert step.headers["location"] == "/mfa"
    page = desktop.get("/mfa")
    assert "otpauth" not in page.text and "second factor cannot be set up" in page.text


def test_a_qr_sign_in_stays_unproven_through_the_second_factor(
        browsers, store, db, settings, make_client, make_person) -> None:
    """Completing the second factor on the computer (here with a recovery code) ends in a
    session that still cannot change factors; and a QR session's later step-up for another
    app is offered no enrolment either."""
    from mfa import recovery

    desktop, phone, _ = browsers
    strict = make_client(default_acr_values=["urn:edu:acr:mfa"])
    person = make_person()
    with db.session() as session:
        codes = recovery.generate(session, settings, person.account_id)
    _signed_in_phone(phone, store, person, auth_time=int(time.time()))
    ia = flow.ia_of(flow.authorize(desktop, client_id=strict.client_id))
    assert _approved_redeem(desktop, phone, ia).headers["location"] == "/mfa"
    page = desktop.get("/mfa")
    done = desktop.post("/mfa/recovery", data={"csrf_token": flow.csrf_of(page.text),
                                               "recovery_code": codes[0]},
                        follow_redirects=False)
    assert done.status_code == 303
    stepped = _session_of(store, done)
    assert stepped.acr == "urn:edu:acr:mfa" and stepped.proven_here is False
    assert desktop.get("/account/security/totp", follow_redirects=False).status_code == 303


def test_a_qr_session_stepping_up_is_offered_no_enrolment(browsers, store, make_client,
                                                          make_person) -> None:
    desktop, phone, _ = browsers
    relaxed, strict = make_client(), make_client(default_acr_values=["urn:edu:acr:mfa"])
    person = make_person()
    _signed_in_phone(phone, store, person, auth_time=int(time.time()))
    ia = flow.ia_of(flow.authorize(desktop, client_id=relaxed.client_id))
    flow.follow(desktop, _approved_redeem(desktop, phone, ia))  # signed in for the first app
    step_up = flow.authorize(desktop, client_id=strict.client_id)
    assert step_up.headers["location"] == "/mfa"
    page = desktop.get("/mfa")
    assert "otpauth" not in page.text and "second factor cannot be set up" in page.text


def test_a_qr_approval_by_someone_else_than_asked_answers_login_required(
        browsers, store, make_client, make_person) -> None:
    """The app asked for alice (a sub value); bob approves: the app hears login_required."""
    desktop, phone, _ = browsers
    registered = make_client()
    alice, bob = make_person("sa1", "pw-a-1"), make_person("sb1", "pw-b-1")
    _signed_in_phone(phone, store, bob)
    claims = json.dumps({"id_token": {"sub": {"value": alice.sub}}})
    ia = flow.ia_of(flow.authorize(desktop, client_id=registered.client_id, claims=claims))
    answer = flow.follow(desktop, _approved_redeem(desktop, phone, ia))
    assert flow.Redirect(answer.headers["location"]).params["error"] == "login_required"


def test_through_the_authorization_endpoint(browsers, store, make_client, make_person) -> None:
    desktop, phone, _ = browsers
    registered, person = make_client(), make_person()
    _signed_in_phone(phone, store, person, amr=["pwd", "otp", "mfa"])
    verifier, challenge = flow.pkce_pair()
    start = flow.authorize(desktop, client_id=registered.client_id, code_challenge=challenge,
                           code_challenge_method="S256")
    ia = flow.ia_of(start)  # the authorization endpoint shows the sign-in page itself
    ticket = _ticket(desktop, ia)

    page = _scan(phone, ticket)
    assert "测试应用" in page.text  # the app asking
    _decide(phone, ticket)
    signed = _redeem(desktop, ticket, ia)
    redirect = flow.follow(desktop, signed)  # straight to the app, or through the resume URL
    assert redirect.headers["location"].startswith(REDIRECT_URI)
    code = flow.Redirect(redirect.headers["location"]).params["code"]
    token = desktop.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier})
    assert token.status_code == 200, token.text
    claims = json.loads(base64.urlsafe_b64decode(
        token.json()["id_token"].split(".")[1] + "=="))
    assert claims["sub"] == person.sub and claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == "urn:edu:acr:mfa"


def test_the_policy_may_ask_the_desktop_for_a_second_factor(browsers, store,
                                                           make_person) -> None:
    from directory.models import Role

    desktop, phone, _ = browsers
    teacher = make_person("t2026001", role=Role.teacher)  # teachers need two factors
    _signed_in_phone(phone, store, teacher, amr=["pwd"])
    ticket = _ticket(desktop)
    _decide(phone, ticket)
    step = _redeem(desktop, ticket)
    assert step.status_code == 303 and step.headers["location"] == "/mfa"
    assert sessions.COOKIE not in step.cookies


def test_the_page_without_javascript(browsers, store, make_person) -> None:
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    page = desktop.get("/login/qr")
    assert page.status_code == 200 and "<svg" in page.text
    assert "I approved on my phone, continue" in page.text
    ticket_id = re.search(r'name="t" value="([^"]+)"', page.text).group(1)
    ticket = {"ticket": ticket_id,
              "scan_url": f"http://127.0.0.1:8000/login/qr/scan?t={ticket_id}"}
    early = _redeem(desktop, ticket)  # before the phone approved: asked to approve first
    assert early.status_code == 409 and "has not been approved yet" in early.text
    assert ticket_id in early.text and sessions.COOKIE not in early.cookies
    _decide(phone, ticket)
    assert _redeem(desktop, ticket).status_code == 303


# -- bad input -----------------------------------------------------------------------------


def test_a_ticket_works_once(browsers, store, db, make_person) -> None:
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    ticket = _ticket(desktop)
    _decide(phone, ticket)
    assert _redeem(desktop, ticket).status_code == 303
    again = _redeem(desktop, ticket)
    assert again.status_code == 410 and "already been used" in again.text
    assert sessions.COOKIE not in again.cookies
    assert _status(desktop, ticket)[1]["status"] == "used"
    assert "already been used" in _scan(phone, ticket).text
    assert ("login.qr.redeem", "failure") in _audit(db)


def test_concurrent_redeems_one_wins(store, db, make_person) -> None:
    person = make_person()
    ticket_id, secret, _ = qr.create(store, user_agent=DESKTOP_UA, ip="10.0.0.1")
    qr.scan(store, ticket_id, person.account_id)
    with db.session() as session:
        qr.approve(session, store, ticket_id, account_id=person.account_id, sub=person.sub,
                   amr=["pwd"], auth_time=int(time.time()))
    results: list[str] = []
    barrier = threading.Barrier(4)

    def redeem() -> None:
        barrier.wait()
        with db.session() as session:
            try:
                qr.redeem(session, store, ticket_id, secret)
                results.append("won")
            except qr.QrError as exc:
                results.append(exc.reason)

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("won") == 1 and set(results) == {"won", "used"}


def test_another_browser_cannot_use_the_ticket(browsers, store, db, make_person) -> None:
    desktop, phone, stranger = browsers
    _signed_in_phone(phone, store, make_person())
    ticket = _ticket(desktop)
    _decide(phone, ticket)
    # no binding cookie
    assert _status(stranger, ticket) == (403, {
        "status": "other_browser", "final": True, "message": qr.OTHER_BROWSER_TEXT})
    refused = _redeem(stranger, ticket)
    assert refused.status_code == 403 and "made in another browser" in refused.text
    assert sessions.COOKIE not in refused.cookies
    # its own binding cookie (from its own ticket) does not fit either
    _ticket(stranger)
    refused = _redeem(stranger, ticket)
    assert refused.status_code == 403 and sessions.COOKIE not in refused.cookies
    assert not [c for c in stranger.cookies.jar if c.name == sessions.COOKIE]
    # a forged cookie neither
    stranger.cookies.set(web.COOKIE, "A" * 43, path="/")
    assert _redeem(stranger, ticket).status_code == 403
    # nothing was consumed: the desktop still signs in
    assert _redeem(desktop, ticket).status_code == 303
    assert _audit(db).count(("login.qr.redeem", "failure")) == 3


def test_an_expired_ticket(browsers, store, make_person, monkeypatch) -> None:
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    monkeypatch.setattr(qr, "TICKET_SECONDS", 1)
    ticket = _ticket(desktop)
    time.sleep(1.3)
    assert _status(desktop, ticket) == (410, {"status": "expired", "final": True,
                                              "message": qr.EXPIRED_TEXT})
    page = _scan(phone, ticket)
    assert page.status_code == 410 and "This QR code has expired" in page.text
    refused = _redeem(desktop, ticket)
    assert refused.status_code == 410 and sessions.COOKIE not in refused.cookies


def test_an_expired_ticket_after_approval(browsers, store, make_person, monkeypatch) -> None:
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    monkeypatch.setattr(qr, "TICKET_SECONDS", 2)
    ticket = _ticket(desktop)
    _decide(phone, ticket)
    time.sleep(2.3)
    refused = _redeem(desktop, ticket)
    assert refused.status_code == 410 and sessions.COOKIE not in refused.cookies


def test_deny(browsers, store, db, make_person) -> None:
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    ticket = _ticket(desktop)
    refused = _decide(phone, ticket, "deny")
    assert refused.status_code == 200 and "Nothing was unlocked" in refused.text
    assert _status(desktop, ticket) == (200, {"status": "denied", "final": True,
                                              "message": qr.DENIED_TEXT})
    attempt = _redeem(desktop, ticket)
    assert attempt.status_code == 403 and "refused on the phone" in attempt.text
    assert sessions.COOKIE not in attempt.cookies
    assert "refused the sign-in" in _scan(phone, ticket).text  # approving later: no
    late = phone.post("/login/qr/approve", data={"csrf_token": flow.csrf_of(
        phone.get("/login").text), "t": ticket["ticket"]})
    assert late.status_code == 403 and _status(desktop, ticket)[1]["status"] == "denied"
    assert _audit(db) == [("login.qr.deny", "success")]


def test_a_phone_without_a_session(browsers, store) -> None:
    desktop, phone, _ = browsers
    ticket = _ticket(desktop)
    page = _scan(phone, ticket)
    assert page.status_code == 401 and "Sign in on this phone first" in page.text
    back = "/login?" + urlencode({"next": "/login/qr/scan?" + urlencode({"t": ticket["ticket"]})})
    assert f'href="{html.escape(back)}"' in page.text  # back to this scan after signing in
    approve = phone.post("/login/qr/approve", data={"csrf_token": flow.csrf_of(
        phone.get("/login").text), "t": ticket["ticket"]})
    assert approve.status_code == 401
    assert _status(desktop, ticket)[1]["status"] == "pending"


def test_a_lost_phone_signed_out_everywhere_approves_nothing(browsers, store, make_person,
                                                            db: Database) -> None:
    """The phone's session was voided (a lost phone: "sign out everywhere", a password or
    second-factor reset) while its cookie stayed: it must not approve a new sign-in."""
    from directory.people import sign_out_everywhere

    desktop, phone, _ = browsers
    person = make_person()
    _signed_in_phone(phone, store, person)
    ticket = _ticket(desktop)
    page = _scan(phone, ticket)
    assert page.status_code == 200
    with db.session() as session:
        sign_out_everywhere(session.get(Account, person.account_id))
    approve = phone.post("/login/qr/approve", data={"csrf_token": flow.csrf_of(page.text),
                                                    "t": ticket["ticket"]})
    assert approve.status_code == 401
    assert _status(desktop, ticket)[1]["status"] != "approved"


def test_an_approval_followed_by_a_sign_out_everywhere_signs_nobody_in(
        browsers, store, make_person, db: Database) -> None:
    from directory.people import sign_out_everywhere

    desktop, phone, _ = browsers
    person = make_person()
    _signed_in_phone(phone, store, person)
    ticket = _ticket(desktop)
    assert _decide(phone, ticket).status_code == 200
    with db.session() as session:  # the phone is reported lost right after
        sign_out_everywhere(session.get(Account, person.account_id))
    attempt = _redeem(desktop, ticket)
    assert attempt.status_code == 403 and sessions.COOKIE not in attempt.cookies


def test_scanning_reveals_and_unlocks_nothing(browsers, store, make_person) -> None:
    desktop, phone, stranger = browsers
    person = make_person()
    _signed_in_phone(phone, store, person)
    ticket = _ticket(desktop)
    phone_cookie = phone.cookies.get(sessions.COOKIE)
    page = _scan(phone, ticket)
    assert sessions.COOKIE not in page.cookies and web.COOKIE not in page.cookies
    assert phone_cookie not in page.text and desktop.cookies.get(web.COOKIE) not in page.text
    # the desktop learns only "scanned": not who scanned it
    _code, body = _status(desktop, ticket)
    assert body["status"] == "scanned" and "赵同学" not in json.dumps(body)
    early = _redeem(desktop, ticket)
    assert early.status_code == 409 and sessions.COOKIE not in early.cookies
    # the ticket id alone (e.g. photographed) is not enough, even after approval
    _decide(phone, ticket)
    assert _redeem(stranger, ticket).status_code == 403


def test_another_phone_cannot_take_over(browsers, app, store, make_person) -> None:
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    other = make_person("s20268888")
    ticket = _ticket(desktop)
    _scan(phone, ticket)
    with TestClient(app, base_url="http://127.0.0.1:8000", headers=EN) as second:
        _signed_in_phone(second, store, other)
        page = _scan(second, ticket)
        assert page.status_code == 409 and "scanned on another phone" in page.text
        approve = second.post("/login/qr/approve", data={"csrf_token": flow.csrf_of(
            second.get("/login").text), "t": ticket["ticket"]})
        assert approve.status_code == 409
    assert _status(desktop, ticket)[1]["status"] == "scanned"


def test_an_account_disabled_after_approval(browsers, store, db, make_person) -> None:
    desktop, phone, _ = browsers
    person = make_person()
    _signed_in_phone(phone, store, person)
    ticket = _ticket(desktop)
    _decide(phone, ticket)
    with db.session() as session:
        session.get(Account, person.account_id).disabled = True
    refused = _redeem(desktop, ticket)
    assert refused.status_code == 403 and "disabled" in refused.text
    assert sessions.COOKIE not in refused.cookies


def test_requests_that_need_a_fresh_sign_in(browsers, store, make_client,
                                            make_person) -> None:
    desktop, phone, _ = browsers
    registered, person = make_client(), make_person()
    _signed_in_phone(phone, store, person, auth_time=int(time.time()) - 3600)
    start = flow.authorize(desktop, client_id=registered.client_id, prompt="login")
    ia = flow.ia_of(start)
    refused = desktop.post("/login/qr/ticket", json={"ia": ia}, headers=_csrf_header(desktop))
    assert refused.status_code == 409 and "sign in again with your password" in refused.json()[
        "error"]
    # max_age: the phone's sign-in is older than the app accepts
    start = flow.authorize(desktop, client_id=registered.client_id, max_age="60")
    ia = flow.ia_of(start)
    ticket = _ticket(desktop, ia)
    stale = _decide(phone, ticket)
    assert stale.status_code == 409 and "recent sign-in" in stale.text
    assert _status(desktop, ticket)[1]["status"] == "scanned"


def test_garbage_never_breaks(browsers, store, make_person) -> None:
    desktop, phone, _ = browsers
    for value in ("", "x", "../../etc", "A" * 32, "é" * 10):
        code, body = _status(desktop, {"ticket": value})
        assert code == 410 and body["status"] == "expired"
        assert _redeem(desktop, {"ticket": value}).status_code == 410
    assert desktop.post("/login/qr/ticket", json={}).status_code == 403  # no CSRF header
    assert desktop.post("/login/qr/ticket", json={"ia": "nope"}, headers=_csrf_header(
        desktop)).status_code == 400
    assert desktop.get("/login/qr/status", params={"t": "x" * 500}).status_code == 400
    _signed_in_phone(phone, store, make_person())
    assert phone.get("/login/qr/scan", params={"t": "nope"}).status_code == 410
    assert phone.post("/login/qr/approve", data={"t": "nope"}).status_code == 403  # CSRF


def test_chinese_by_default(app, store, make_person) -> None:
    with TestClient(app, base_url="http://127.0.0.1:8000") as desktop:
        page = desktop.get("/login")
        assert "扫码登录" in page.text
        body = _ticket(desktop)
        assert "手机" in body["message"]


@pytest.mark.parametrize(("agent", "expected"), [
    (DESKTOP_UA, ("Edge", "Windows")),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Safari/605.1.15", ("Safari", "macOS")),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
     ("Firefox", "Linux")),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0 Mobile Safari/537.36 MicroMessenger/8.0.47", ("WeChat", "Android")),
    ("curl/8.5.0", ("", "")),
])
def test_describe_agent(agent: str, expected: tuple[str, str]) -> None:
    assert qr.describe_agent(agent) == expected


# -- two Chromium browsers against a live server ------------------------------------------

@pytest.mark.interop
def test_chromium_desktop_and_phone(live_server, store, make_person) -> None:  # noqa: F811
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    server, person = live_server.url, make_person()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desktop = chromium.new_context(viewport={"width": 1280, "height": 900},
                                           locale="zh-CN")
            phone = chromium.new_context(viewport={"width": 390, "height": 844},
                                         locale="zh-CN", is_mobile=True, has_touch=True)
            # the phone signs in with its password; its narrow login page leaves the QR
            # panel out (a phone scans codes, it does not show them) and makes no code
            mobile = phone.new_page()
            mobile.goto(server + "/login")
            assert not mobile.is_visible("[data-qr-login]")
            assert mobile.get_attribute("[data-qr-login]", "data-qr-url") is None
            mobile.fill("#login", person.login)
            mobile.fill("#password", person.password)
            mobile.click("form[action='/login'] button[type=submit]")
            mobile.wait_for_url(server + "/")

            # the desktop's login page shows the code
            page = desktop.new_page()
            page.goto(server + "/login")
            page.wait_for_selector("[data-qr-login][data-qr-url] [data-qr-image] svg")
            url = page.get_attribute("[data-qr-login]", "data-qr-url")
            assert url.startswith(server + "/login/qr/scan?t=")
            assert not page.is_visible("[data-qr-fallback]")

            mobile.goto(url)
            assert "Chrome" in mobile.inner_text("[data-qr-device]")
            assert mobile.inner_text("[data-qr-ip]") == "127.0.0.1"
            page.wait_for_selector("[data-qr-state=scanned]")  # the poller saw the scan
            assert "赵*学 已扫码" in page.inner_text("[data-qr-status]")  # whose phone
            mobile.click("[data-qr-approve]")
            mobile.wait_for_selector("[data-qr-message]")

            # the computer asks before it signs in as whoever approved
            button = page.locator("form[data-qr-redeem] button")
            button.wait_for(state="visible")
            assert button.inner_text() == "以 赵*学 的身份继续"
            assert "是您本人才继续" in page.inner_text("[data-qr-status]")
            shots = os.environ.get("IDP_SCREENSHOTS")  # to look at the pages
            if shots:
                page.screenshot(path=os.path.join(shots, "qr_continue_as.png"))
            button.click()
            page.wait_for_url(server + "/", timeout=15000)
            assert "您已登录为 赵同学" in page.inner_text("[data-signed-in]")
            if shots:
                page.screenshot(path=os.path.join(shots, "home_signed_in.png"))
            token = next(c["value"] for c in desktop.cookies() if c["name"] == sessions.COOKIE)
            raw = store.get(sessions._key(token))
            assert raw and json.loads(raw)["account_id"] == person.account_id
            assert httpx.get(server + "/login/qr/status", params={"t": url.split("t=")[1]},
                             timeout=5).json()["status"] == "used"
        finally:
            chromium.close()


def test_over_https_the_binding_cookie_cannot_be_planted(app) -> None:
    """``__Host-`` with Path=/ over https: a sibling subdomain or a plain-http injector
    cannot set it, so nobody can plant a binding secret of their own in a desktop browser
    (it is reused for the browser's next code), then redeem the approval with it."""
    with TestClient(app, base_url="https://127.0.0.1:8000", headers=EN) as desktop:
        answer = desktop.post("/login/qr/ticket", json={}, headers=_csrf_header(desktop))
        assert answer.status_code == 200
        set_cookie = [h for k, h in answer.headers.multi_items() if k == "set-cookie"]
        assert any(h.startswith("__Host-idp_qr=") and "Path=/;" in h and "Secure" in h
                   for h in set_cookie)
        planted = "P" * 43  # a plain idp_qr cookie, as a subdomain could set, is not read
        desktop.cookies.set("idp_qr", planted, domain="127.0.0.1", path="/")
        again = desktop.post("/login/qr/ticket", json={}, headers=_csrf_header(desktop))
        assert planted not in again.headers.get("set-cookie", "")


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_link_from_another_site_scans_nothing(browsers, store, make_person, site) -> None:
    """Another website linking (or redirecting) a signed-in visitor to a stranger's scan
    URL: the visitor's session does not take the ticket, and the stranger's computer learns
    nothing; the camera's own opening of the URL ("none") still works."""
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    ticket = _ticket(desktop)
    path = urlsplit(ticket["scan_url"]).path + "?" + urlsplit(ticket["scan_url"]).query
    linked = phone.get(path, headers={"Sec-Fetch-Site": site})
    assert linked.status_code == 403 and "scan the code" in linked.text
    assert _status(desktop, ticket)[1]["status"] == "pending"
    opened = phone.get(path, headers={"Sec-Fetch-Site": "none"})
    assert opened.status_code == 200
    assert _status(desktop, ticket)[1]["status"] == "scanned"


def test_a_scan_reached_through_the_sign_in_asks_first(browsers, store, make_person) -> None:
    """``/login?next=/login/qr/scan?t=...`` can be linked from anywhere, and the sign-in's
    return arrives from this site ("same-origin"): the ticket is taken only after the
    person confirms with a form (CSRF), never by the redirect."""
    desktop, phone, _ = browsers
    _signed_in_phone(phone, store, make_person())
    ticket = _ticket(desktop)
    path = urlsplit(ticket["scan_url"]).path + "?" + urlsplit(ticket["scan_url"]).query
    page = phone.get(path, headers={"Sec-Fetch-Site": "same-origin"})
    assert page.status_code == 200 and 'action="/login/qr/scan"' in page.text
    assert _status(desktop, ticket)[1]["status"] == "pending"
    forged = phone.post("/login/qr/scan", data={"t": ticket["ticket"]})  # no CSRF token
    assert forged.status_code == 403 and _status(desktop, ticket)[1]["status"] == "pending"
    confirmed = phone.post("/login/qr/scan", data={"t": ticket["ticket"],
                                                   "csrf_token": flow.csrf_of(page.text)})
    assert confirmed.status_code == 200 and "/login/qr/approve" in confirmed.text
    assert _status(desktop, ticket)[1]["status"] == "scanned"
