"""OpenID Connect Back-Channel Logout 1.0: a sign-out tells the session's apps."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import ClassVar
from urllib.parse import parse_qs

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.oidc.backchannel_logout import drain
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, list[str]], str]]] = []
    answers: ClassVar[list[int]] = []  # the statuses of the next answers (then 200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.received.append((self.path, parse_qs(body), self.headers["Content-Type"]))
        self.send_response(self.answers.pop(0) if self.answers else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    """An app's back-channel logout endpoint: (its base URL, what it received)."""
    _Receiver.received, _Receiver.answers = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app not reached is asked again after 1, 5 and 25 s; here after moments."""
    from idp.oidc import backchannel_logout

    monkeypatch.setattr(backchannel_logout, "RETRY_AFTER", (0.05, 0.1, 0.2))


def _signed_in(client: TestClient, registered, person) -> dict:
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": REDIRECT_URI}).json()


def _claims(client: TestClient, token: str, jwks_path: str = "/oauth2/jwks"):
    keys = KeySet.import_key_set(client.get(jwks_path).json())
    decoded = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
    return decoded.header, decoded.claims


def test_signing_out_tells_every_app_of_the_session(client: TestClient, make_client,
                                                    make_person, receiver) -> None:
    base, received = receiver
    person = make_person()
    first = make_client(id_token_signed_response_alg="ES256",
                        backchannel_logout_uri=base + "/first/logout")
    second = make_client(id_token_signed_response_alg="RS256",
                         backchannel_logout_uri=base + "/second/logout?x=1",
                         backchannel_logout_session_required=True)
    silent = make_client(id_token_signed_response_alg="ES256")  # registered no endpoint
    tokens = {c.client_id: _signed_in(client, c, person) for c in (first, second, silent)}
    out = client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)},
                      follow_redirects=False)
    assert out.status_code == 303
    drain()  # sent on threads of their own, after the answer
    assert sorted(path for path, _, _ in received) == ["/first/logout", "/second/logout?x=1"]
    for path, form, content_type in received:
        registered = first if path.startswith("/first") else second
        assert content_type == "application/x-www-form-urlencoded"
        header, claims = _claims(client, form["logout_token"][0])
        _, id_token = _claims(client, tokens[registered.client_id]["id_token"])
        assert header["typ"] == "logout+jwt"
        assert header["alg"] == registered.metadata["id_token_signed_response_alg"]
        assert claims["iss"] == "http://127.0.0.1:8000" and claims["aud"] == registered.client_id
        assert claims["sub"] == id_token["sub"] == person.sub
        assert claims["sid"] == id_token["sid"] and claims["events"] == {EVENT: {}}
        assert "nonce" not in claims and claims["exp"] - claims["iat"] == 120
        assert claims["jti"]


def test_rp_initiated_logout_tells_the_apps_too(client: TestClient, make_client, make_person,
                                                receiver) -> None:
    base, received = receiver
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri=base + "/bc",
                             post_logout_redirect_uris=["https://app.example.cn/bye"])
    tokens = _signed_in(client, registered, make_person())
    out = client.get("/oauth2/logout", params={
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": "https://app.example.cn/bye"}, follow_redirects=False)
    drain()
    assert out.status_code == 303 and [path for path, _, _ in received] == ["/bc"]


def test_a_pairwise_app_hears_its_own_sub(client: TestClient, make_client, make_person,
                                          receiver) -> None:
    base, received = receiver
    registered = make_client(id_token_signed_response_alg="ES256", subject_type="pairwise",
                             backchannel_logout_uri=base + "/bc")
    tokens = _signed_in(client, registered, make_person())
    client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})
    drain()
    _, claims = _claims(client, received[0][1]["logout_token"][0])
    _, id_token = _claims(client, tokens["id_token"])
    assert claims["sub"] == id_token["sub"] and claims["sub"].startswith("pw-")


def test_an_app_that_does_not_answer_delays_and_breaks_nothing(
        client: TestClient, make_client, make_person, caplog) -> None:
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri="http://127.0.0.1:9/nobody")
    _signed_in(client, registered, make_person())
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        out = client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)},
                          follow_redirects=False)
        drain()
    assert out.status_code == 303
    assert any(registered.client_id in r.getMessage() for r in caplog.records)
    assert "data-sign-out" not in client.get("/").text


def test_discovery_and_registration(client: TestClient, make_client) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["backchannel_logout_supported"] is True
    assert document["backchannel_logout_session_supported"] is True
    for bad in ({"backchannel_logout_uri": "javascript:alert(1)"},
                {"backchannel_logout_uri": "https://app.example.cn/bc#x"},
                {"backchannel_logout_uri": 5},
                {"backchannel_logout_session_required": "yes"}):
        with pytest.raises(ValueError, match="backchannel_logout"):
            make_client(**bad)


@pytest.mark.parametrize("uri", ["http://a..b/bc", "http://" + "a" * 64 + ".cn/bc",
                                 "http://a\tb/", "http://\u202e.cn/bc"])
def test_a_logout_uri_no_http_client_can_call_is_refused(make_client, uri: str) -> None:
    with pytest.raises(ValueError, match="backchannel_logout_uri"):
        make_client(backchannel_logout_uri=uri)


def test_one_apps_unusable_uri_does_not_keep_the_others_untold(receiver, caplog) -> None:
    """A URI stored before it was checked: that app is logged, the next one still told."""
    from idp.oidc.backchannel_logout import Notice, deliver

    base, received = receiver
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        deliver([Notice("broken", "http://a..b/bc", "t1"), Notice("fine", base + "/bc", "t2")])
    assert [form["logout_token"] for _, form, _ in received] == [["t2"]]
    assert "broken" in caplog.text


def test_a_new_sign_in_in_the_same_browser_tells_the_previous_sessions_apps(
        client: TestClient, make_client, make_person, receiver) -> None:
    """A classroom computer: pupil A's session ends when pupil B signs in."""
    base, received = receiver
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri=base + "/bc")
    first = _signed_in(client, registered, make_person())
    second_person = make_person("s20260002", "Another-Pass-2", name="钱同学")
    flow.login(client, client.get("/login"), second_person.login, second_person.password)
    drain()
    [(_, form, _)] = received
    _, claims = _claims(client, form["logout_token"][0])
    _, id_token = _claims(client, first["id_token"])
    assert claims["sid"] == id_token["sid"]


def test_apps_added_by_two_tabs_at_once_are_all_kept(store) -> None:
    """Each write merges back what another tab wrote meanwhile."""
    from idp import sessions

    token, _started = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                                    acr="urn:edu:acr:sfa")
    tab_one = sessions.load(store, _request_with(token))[1]
    tab_two = sessions.load(store, _request_with(token))[1]
    sessions.add_app(store, token, tab_one, "app-one")
    sessions.add_app(store, token, tab_two, "app-two")
    assert sorted(sessions.load(store, _request_with(token))[1].apps) == ["app-one", "app-two"]
    sessions.end(store, token)
    sessions.add_app(store, token, tab_one, "app-three")  # never brings the session back
    assert sessions.load(store, _request_with(token)) is None


def _request_with(token: str):
    from starlette.requests import Request

    from idp import sessions

    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"cookie", f"{sessions.COOKIE}={token}".encode())]})


class _Dripping(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        import time

        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):  # a byte now and then: each read is quick, the whole is not
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up, as it should
            pass

    def log_message(self, *_args: object) -> None:
        pass


def test_a_slow_app_gets_its_seconds_and_no_more(monkeypatch) -> None:
    """httpx's timeout bounds each read; the delivery bounds the whole exchange."""
    import time

    from idp.oidc import backchannel_logout

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(backchannel_logout, "SECONDS_PER_APP", 0.5)
    try:
        began = time.monotonic()
        backchannel_logout.deliver([backchannel_logout.Notice(
            "slow", f"http://127.0.0.1:{server.server_address[1]}/bc", "t")])
        assert time.monotonic() - began < 10  # the drip alone lasts 20 s
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_app_delays_no_other_apps_delivery(receiver, monkeypatch) -> None:
    """Sign-outs queue behind nobody: a healthy app hears every one while a slow app is
    still being waited for (with two shared threads it heard half of them a deadline
    later)."""
    import time

    from idp.oidc import backchannel_logout

    base, received = receiver
    slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    monkeypatch.setattr(backchannel_logout, "SECONDS_PER_APP", 3.0)
    slow_url = f"http://127.0.0.1:{slow.server_address[1]}/bc"
    try:
        began = time.monotonic()
        for n in range(6):  # six sign-outs, each with a slow app and a healthy one
            backchannel_logout._submit([backchannel_logout.Notice("slow", slow_url, "s"),
                                        backchannel_logout.Notice("fine", base + "/bc", f"t{n}")])
        while len(received) < 6 and time.monotonic() - began < 2.5:
            time.sleep(0.05)
        assert len(received) == 6  # all before the first slow delivery's deadline
        drain()
    finally:
        slow.shutdown()
        slow.server_close()


def test_a_token_that_expired_waiting_is_not_sent(receiver) -> None:
    import time

    from idp.oidc.backchannel_logout import Notice, deliver

    base, received = receiver
    deliver([Notice("late", base + "/bc", "t", time.time() - 1)])
    assert received == []


def test_tokens_that_cannot_be_made_leave_the_sign_out_standing(
        client: TestClient, make_client, make_person, monkeypatch, caplog) -> None:
    """A database or signing failure while the logout tokens are made is logged; the
    person is signed out all the same."""
    from idp.oidc import backchannel_logout

    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri="http://127.0.0.1:9/bc")
    _signed_in(client, registered, make_person())

    def broken(*_args):
        raise RuntimeError("no signing key")

    monkeypatch.setattr(backchannel_logout, "notices", broken)
    with caplog.at_level(logging.ERROR, logger="idp.oidc.backchannel_logout"):
        out = client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)},
                          follow_redirects=False)
    assert out.status_code == 303 and "could not be made" in caplog.text
    assert "data-sign-out" not in client.get("/").text


@pytest.mark.parametrize("failures", [[503], [500, 429, 408]])
def test_an_app_that_fails_for_a_moment_is_asked_again(receiver, failures, caplog) -> None:
    """A school's server restarting (5xx, 408, 429) hears the logout on a later try."""
    from idp.oidc.backchannel_logout import Notice, deliver

    base, received = receiver
    _Receiver.answers.extend(failures)
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        deliver([Notice("flaky", base + "/bc", "t", time.time() + 60)])
    assert [form["logout_token"] for _, form, _ in received] == [["t"]] * (len(failures) + 1)
    assert caplog.text.count("trying again") == len(failures) and "given up" not in caplog.text


def test_an_app_that_keeps_failing_is_given_up_after_the_last_retry(receiver, caplog) -> None:
    from idp.oidc.backchannel_logout import RETRY_AFTER, Notice, deliver

    base, received = receiver
    _Receiver.answers.extend([502] * 10)
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        deliver([Notice("down", base + "/bc", "t", time.time() + 60)])
    assert len(received) == len(RETRY_AFTER) + 1
    assert "down not accepted: status 502; given up" in caplog.text


def test_an_app_that_refuses_the_token_is_not_asked_again(receiver, caplog) -> None:
    """400: the app's verdict on the token (section 2.8), not a moment's failure."""
    from idp.oidc.backchannel_logout import Notice, deliver

    base, received = receiver
    _Receiver.answers.append(400)
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        deliver([Notice("strict", base + "/bc", "t", time.time() + 60)])
    assert len(received) == 1 and "status 400; given up" in caplog.text


def test_no_retry_after_the_token_has_expired(receiver, monkeypatch) -> None:
    from idp.oidc import backchannel_logout

    base, received = receiver
    monkeypatch.setattr(backchannel_logout, "RETRY_AFTER", (0.05, 5.0))
    _Receiver.answers.extend([503, 503])
    began = time.monotonic()
    backchannel_logout.deliver([backchannel_logout.Notice(
        "brief", base + "/bc", "t", time.time() + 1)])
    assert len(received) == 2 and time.monotonic() - began < 4  # the 5 s pause not taken


def test_shutdown_logs_the_deliveries_it_leaves(monkeypatch, caplog) -> None:
    from idp.oidc import backchannel_logout

    monkeypatch.setattr(backchannel_logout, "RETRY_AFTER", (0.5,))
    backchannel_logout._submit([backchannel_logout.Notice(
        "restarting", "http://127.0.0.1:9/bc", "t", time.time() + 60)])
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        drain(timeout=0.2)
    assert "1 back-channel logout deliveries (or their retries) left unfinished" in caplog.text
    drain()  # the retry, then given up: nothing left for the next test


def _until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_delivery_an_ended_process_left_is_taken_over(client: TestClient, receiver,
                                                        monkeypatch) -> None:
    """A worker that ended (a deploy, a crash) after one failed try leaves its delivery in
    the store; once its lease has run out, a running server takes it over and goes on
    with the tries left, then clears it."""
    from idp.oidc import backchannel_logout as bcl

    monkeypatch.setattr(bcl, "POLL_SECONDS", 0.05)
    store = client.app.state.store
    base, received = receiver
    _Receiver.answers.append(503)  # the taker's first try fails too: it tries again
    left = bcl.Notice("ended", base + "/bc", "t-left", time.time() + 60, tries=1,
                      key="k-ended")
    store.set("bcl:k-ended", bcl._record(left), ttl=60)
    store.schedule(bcl.OUTBOX, "k-ended", time.time() - 1)  # its lease ran out
    assert _until(lambda: len(received) == 2)
    assert [form["logout_token"] for _, form, _ in received] == [["t-left"]] * 2
    assert _until(lambda: store.get("bcl:k-ended") is None)
    assert store.claim_due(bcl.OUTBOX, lease=1, limit=5) == []


def _named_keys(monkeypatch, *keys: str) -> None:
    """The outbox keys the next deliveries get, in order."""
    from types import SimpleNamespace

    from idp.oidc import backchannel_logout as bcl

    names = iter(keys)
    monkeypatch.setattr(bcl, "secrets", SimpleNamespace(token_urlsafe=lambda _n: next(names)))


def test_a_retry_left_at_shutdown_stays_in_the_store(client: TestClient, monkeypatch) -> None:
    """The retry a stopping worker could not wait for is kept, with the tries made and a
    lease that its heartbeat renews: only once that stops may another worker take it over."""
    from idp.oidc import backchannel_logout as bcl

    monkeypatch.setattr(bcl, "RETRY_AFTER", (2.0,))
    _named_keys(monkeypatch, "k-restart")
    store = client.app.state.store
    bcl._submit([bcl.Notice("restarting", "http://127.0.0.1:9/bc", "t", time.time() + 60)])
    deadline = time.monotonic() + 10  # the first try (refused) on a busy host: wait for it
    while (json.loads(store.get("bcl:k-restart") or "{}").get("tries") != 1
           and time.monotonic() < deadline):
        time.sleep(0.02)
    assert drain(timeout=0.2) == 1  # stopping during the pause before the retry
    assert json.loads(store.get("bcl:k-restart"))["tries"] == 1
    assert store.claim_due(bcl.OUTBOX, lease=60, limit=5) == []  # not another's yet
    assert drain() == 0  # the retry here, then given up: nothing kept
    assert store.get("bcl:k-restart") is None


def test_a_delivered_notice_leaves_nothing_in_the_store(client: TestClient, receiver,
                                                        monkeypatch) -> None:
    from idp.oidc import backchannel_logout as bcl

    base, received = receiver
    _named_keys(monkeypatch, "k-sent")
    store = client.app.state.store
    seen: list = []
    real_keep = bcl._keep
    monkeypatch.setattr(bcl, "_keep", lambda *args: (seen.append(args[1].key),
                                                     real_keep(*args))[1])
    bcl.deliver([bcl.Notice("app", base + "/bc", "t", time.time() + 60)])
    assert [form["logout_token"] for _, form, _ in received] == [["t"]]
    assert seen and set(seen) == {"k-sent"}  # it was kept while under way
    assert store.get("bcl:k-sent") is None
    assert store.claim_due(bcl.OUTBOX, lease=1, limit=5) == []


class _Slow(http.server.BaseHTTPRequestHandler):
    """An app that takes 0.3 s to answer."""

    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        time.sleep(0.3)
        self.received.append(parse_qs(body)["logout_token"][0])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def slow_app() -> Iterator[str]:
    _Slow.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bc"
    finally:
        server.shutdown()
        server.server_close()


def test_a_delivery_waiting_for_a_slot_is_not_sent_twice(client: TestClient, slow_app,
                                                          monkeypatch) -> None:
    """More deliveries than slots (a rollover, an app that times out): one waiting for a
    slot past its first lease is still this process's, not the poller's to take over."""
    from collections import Counter

    from idp.oidc import backchannel_logout as bcl

    for name, value in (("POLL_SECONDS", 0.05), ("GRACE", 0.1), ("HEARTBEAT_SECONDS", 0.05),
                        ("AT_ONCE", 1), ("_slots", None)):  # _slots: made again, one slot
        monkeypatch.setattr(bcl, name, value)
    bcl._submit([bcl.Notice("app", slow_app, f"t{n}", time.time() + 60) for n in range(5)])
    assert drain(timeout=10) == 0
    time.sleep(0.3)
    assert drain(timeout=10) == 0
    assert Counter(_Slow.received) == Counter(f"t{n}" for n in range(5))


def test_a_try_that_succeeds_after_shutdown_is_not_sent_again(client: TestClient, slow_app,
                                                              monkeypatch) -> None:
    """The lifespan's drain gives up while a POST is on the wire and stop() runs; the POST
    then succeeds and its delivery still clears itself from the store it began with, so
    no other worker sends it again."""
    from idp.oidc import backchannel_logout as bcl

    for name, value in (("POLL_SECONDS", 0.05), ("GRACE", 0.1), ("HEARTBEAT_SECONDS", 0.05)):
        monkeypatch.setattr(bcl, name, value)
    store = client.app.state.store
    bcl._submit([bcl.Notice("app", slow_app, "t-once", time.time() + 60)])
    drain(timeout=0.1)
    bcl.stop()
    time.sleep(0.5)  # the POST succeeds meanwhile
    bcl.start(store)  # another worker's poller on the shared store
    time.sleep(0.5)
    drain(timeout=5)
    assert _Slow.received == ["t-once"]


def test_one_unreadable_record_holds_back_no_other(client: TestClient, slow_app,
                                                   monkeypatch) -> None:
    """A record another version wrote (a field this one does not know) is read for what
    it knows; one that cannot be read at all is dropped, and the rest are taken over."""
    from idp.oidc import backchannel_logout as bcl

    monkeypatch.setattr(bcl, "POLL_SECONDS", 0.05)
    store = client.app.state.store
    good = bcl.Notice("app", slow_app, "t-good", time.time() + 60)
    newer = json.loads(bcl._record(replace(good, logout_token="t-newer")))
    store.set("bcl:k-good", bcl._record(good), ttl=60)
    store.set("bcl:k-newer", json.dumps({**newer, "priority": 1}).encode(), ttl=60)
    store.set("bcl:k-bad", b"{not json", ttl=60)
    for number, key in enumerate(("k-bad", "k-newer", "k-good")):
        store.schedule(bcl.OUTBOX, key, time.time() - 3 + number)
    assert _until(lambda: len(_Slow.received) == 2)
    drain(timeout=5)
    assert sorted(_Slow.received) == ["t-good", "t-newer"]
    assert store.get("bcl:k-bad") is None


def test_the_heartbeat_renews_every_lease_in_one_call_and_puts_back_none(
        slow_app, monkeypatch) -> None:
    """A hundred deliveries waiting for one slot: each heartbeat renews all their leases in
    one store call (one call per key outgrew the grace with thousands under way), no
    other worker could take a live one over, and once they finish the queue is empty (a
    renewal never puts back a delivery that finished meanwhile)."""
    from core.store import MemoryStore
    from idp.oidc import backchannel_logout as bcl

    store = MemoryStore()
    for name, value in (("_outbox", store), ("GRACE", 0.2), ("HEARTBEAT_SECONDS", 0.05),
                        ("AT_ONCE", 4), ("_slots", None), ("POLL_SECONDS", 3600.0)):
        monkeypatch.setattr(bcl, name, value)
    calls: list[int] = []
    real_renew = bcl._renew
    monkeypatch.setattr(bcl, "_renew", lambda s, keys: (calls.append(len(keys)),
                                                        real_renew(s, keys)))
    time.sleep(0.6)  # the heartbeat wakes up to the shorter period
    bcl._submit([bcl.Notice("app", slow_app, f"t{n}", time.time() + 60) for n in range(100)])
    time.sleep(1.0)
    stolen = store.claim_due(bcl.OUTBOX, lease=60, limit=1000)  # another worker's poller
    assert stolen == [] and max(calls) > 50
    assert drain(timeout=30) == 0
    time.sleep(0.2)  # a last heartbeat
    assert store.claim_due(bcl.OUTBOX, lease=1, limit=1000) == []
    assert len(_Slow.received) == 100


def test_a_programming_error_in_keeping_is_logged_as_one(receiver, monkeypatch,
                                                        caplog) -> None:
    """A store out of reach is a warning and the delivery goes on; a bug in keeping is
    also no reason to drop the delivery, but its traceback is logged."""
    from core.store import MemoryStore
    from idp.oidc import backchannel_logout as bcl

    def broken_keep(store, notice):
        raise TypeError("schedule() missing 1 required positional argument: 'due'")

    monkeypatch.setattr(bcl, "_outbox", MemoryStore())
    monkeypatch.setattr(bcl, "_keep", broken_keep)
    base, received = receiver
    with caplog.at_level(logging.WARNING, logger="idp.oidc.backchannel_logout"):
        bcl.deliver([bcl.Notice("app", base + "/bc", "t", time.time() + 60)])
    assert len(received) == 1
    assert any(record.exc_info for record in caplog.records), caplog.text


def test_a_try_that_succeeds_while_the_interpreter_exits_clears_itself(
        client: TestClient, slow_app, monkeypatch) -> None:
    """At exit, concurrent.futures refuses new work while the daemon delivery thread still
    runs: a try that succeeds then must still clear itself from the store (its store calls
    are made on the loop, not in a thread pool), or another worker sends it again."""
    import concurrent.futures.thread as pool_module

    from idp.oidc import backchannel_logout as bcl

    for name, value in (("POLL_SECONDS", 0.05), ("GRACE", 0.1), ("HEARTBEAT_SECONDS", 0.05)):
        monkeypatch.setattr(bcl, name, value)
    bcl._submit([bcl.Notice("app", slow_app, "t-exit", time.time() + 60)])
    assert _until(lambda: bool(bcl._under_way))
    time.sleep(0.1)  # the POST is on the wire
    monkeypatch.setattr(pool_module, "_shutdown", True)  # the interpreter begins to exit
    assert _until(lambda: _Slow.received == ["t-exit"])
    time.sleep(0.2)
    monkeypatch.setattr(pool_module, "_shutdown", False)
    time.sleep(0.5)  # another worker's poller on the same store
    drain(timeout=5)
    assert _Slow.received == ["t-exit"]


def _helpdesk_sign_out(client: TestClient, db, settings, name: str = "赵同学") -> dict:
    from tests.idp.test_lockout import _token, _uid

    token = _token(db, settings, "T-CITY", {"security:unlock"})
    return client.post(f"/api/admin/people/{_uid(db, name)}/sign-out",
                       headers={"authorization": f"Bearer {token}"}).json()


def _signed_out_at(db, account_id: int) -> float:
    from directory.models import Account

    with db.session() as session:
        return session.get(Account, account_id).signed_out_at.timestamp()


def test_signing_out_everywhere_tells_the_apps_of_every_browser(
        client: TestClient, make_client, make_person, receiver, db, settings) -> None:
    """A lost phone: the helpdesk signs the pupil out everywhere, and the apps of the
    phone's session and of the school computer's are told at once, each with its own
    ``sid``; a session begun after the sign-out is not touched."""
    from idp import sessions

    base, received = receiver
    person = make_person()
    app_a = make_client(id_token_signed_response_alg="ES256", backchannel_logout_uri=base + "/a")
    app_b = make_client(id_token_signed_response_alg="RS256", backchannel_logout_uri=base + "/b")
    phone = TestClient(client.app)
    tokens = {"/a": _signed_in(client, app_a, person), "/b": _signed_in(phone, app_b, person)}
    assert _helpdesk_sign_out(client, db, settings) == {"signed_out": True,
                                                        "sessions_ended": 2}
    drain()
    assert sorted(path for path, _, _ in received) == ["/a", "/b"]
    for path, form, _ in received:
        _, claims = _claims(client, form["logout_token"][0])
        _, id_token = _claims(client, tokens[path]["id_token"])
        assert claims["sid"] == id_token["sid"] and claims["sub"] == id_token["sub"]
    assert received[0][1]["logout_token"] != received[1][1]["logout_token"]
    store = client.app.state.store
    for browser in (client, phone):  # ended in the store, not only refused when next used
        assert store.get(sessions._key(browser.cookies[sessions.COOKIE])) is None
    assert store.members(f"sso-of:{person.account_id}") == set()

    received.clear()
    later = TestClient(client.app)
    _signed_in(later, app_a, person)
    signed_out = _signed_out_at(db, person.account_id)
    assert sessions.end_everywhere(client.app.state, person.account_id,
                                   begun_before=signed_out) == 0
    drain()
    assert received == [] and len(store.members(f"sso-of:{person.account_id}")) == 1
    assert _helpdesk_sign_out(client, db, settings)["sessions_ended"] == 1
    drain()
    assert [path for path, _, _ in received] == ["/a"]


def _in_two_browsers(client: TestClient, make_client, receiver, person):
    """``person`` signed in to the app ``here`` in ``client`` and to ``there`` on a phone
    (another browser), both apps with a back-channel logout endpoint: (here, there, phone)."""
    base, _ = receiver
    here = make_client(id_token_signed_response_alg="ES256", backchannel_logout_uri=base + "/here")
    there = make_client(id_token_signed_response_alg="ES256",
                        backchannel_logout_uri=base + "/there")
    phone = TestClient(client.app)
    _signed_in(client, here, person)
    _signed_in(phone, there, person)
    return here, there, phone


def test_a_password_change_tells_the_other_browsers_apps_only(
        client: TestClient, make_client, make_person, receiver) -> None:
    _, received = receiver
    here, there, phone = _in_two_browsers(client, make_client, receiver,
                                          make_person("s84", "pw-pupil-84-old"))
    page = client.get("/account/security/password")
    done = client.post("/account/security/password", data={
        "csrf_token": flow.csrf_of(page.text), "current": "pw-pupil-84-old",
        "password": "a brand new password", "again": "a brand new password"},
        follow_redirects=False)
    assert done.status_code == 303
    drain()
    assert [path for path, _, _ in received] == ["/there"]  # this browser stays signed in
    assert flow.is_login_page(flow.authorize(client, client_id=here.client_id)) is False
    assert flow.is_login_page(flow.authorize(phone, client_id=there.client_id))


def test_sign_out_everywhere_here_tells_this_browsers_and_the_others_apps(
        client: TestClient, make_client, make_person, receiver) -> None:
    _, received = receiver
    person = make_person()
    _in_two_browsers(client, make_client, receiver, person)
    page = client.get("/account/security/password")
    out = client.post("/account/sign-out-everywhere",
                      data={"csrf_token": flow.csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    drain()
    assert sorted(path for path, _, _ in received) == ["/here", "/there"]
    assert client.app.state.store.members(f"sso-of:{person.account_id}") == set()


def test_a_store_failure_while_ending_leaves_the_sign_out_standing(
        client: TestClient, make_client, make_person, db, settings, monkeypatch,
        caplog) -> None:
    """The sign-out is committed first: if the sessions cannot be ended now, that is
    logged, the helpdesk's answer is still 200, and the session ends when next used."""
    from core.store import StoreUnavailable

    person = make_person()
    registered = make_client()
    _signed_in(client, registered, person)
    store = client.app.state.store

    def unavailable(_key: str) -> set[str]:
        raise StoreUnavailable("Redis is unreachable (test)")

    monkeypatch.setattr(store, "members", unavailable)
    with caplog.at_level(logging.ERROR, logger="idp.sessions"):
        assert _helpdesk_sign_out(client, db, settings) == {"signed_out": True,
                                                            "sessions_ended": 0}
    assert "could not all be ended now" in caplog.text
    monkeypatch.undo()
    assert flow.is_login_page(flow.authorize(client, client_id=registered.client_id))


def test_a_sessions_index_forgets_ended_sessions(client: TestClient, make_client,
                                                 make_person) -> None:
    """Each sign-in adds its session to the account's index; a sign-out removes it, and
    a member whose session is gone (expired, re-keyed) is dropped when next read."""
    from idp import sessions

    person = make_person()
    registered = make_client()
    store = client.app.state.store
    index = f"sso-of:{person.account_id}"
    _signed_in(client, registered, person)
    assert len(store.members(index)) == 1
    client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})
    assert store.members(index) == set()
    _signed_in(client, registered, person)
    (member,) = store.members(index)
    flow.code_flow(client, registered.client_id, person, prompt="login")  # signing in again:
    (renewed,) = store.members(index)  # the session moves to a new key, and the index too
    assert renewed != member and store.get(member) is None
    store.delete(renewed)  # as if it had expired
    store.add_member(index, "sso:gone-long-ago", ttl=60)
    assert sessions.end_everywhere(client.app.state, person.account_id,
                                   begun_before=time.time()) == 0
    assert store.members(index) == set()


def _cli(settings, store, tmp_path, *args: str):
    """``idp *args`` in another process, on this test's database and shared Redis store."""
    import os
    import subprocess
    import sys

    from tests.conftest import REDIS_URL, TEST_MASTER_KEY

    if not REDIS_URL:
        pytest.skip("needs IDP_TEST_REDIS_URL: the CLI reaches sessions through Redis")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env = {**clean, "IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY,
           "IDP_DATABASE_URL": settings.database_url, "IDP_ISSUER": settings.issuer,
           "IDP_REDIS_URL": REDIS_URL, "IDP_STORE_PREFIX": store._prefix}
    return subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_cli_sign_out_tells_the_apps_through_the_shared_store(
        client: TestClient, make_client, make_person, receiver, settings, tmp_path) -> None:
    """``idp security sign-out`` in another process ends the server's sessions in the shared
    Redis store and delivers the logout tokens itself before it exits."""
    base, received = receiver
    person = make_person("s20269985")
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri=base + "/cli")
    _signed_in(client, registered, person)
    store = client.app.state.store
    result = _cli(settings, store, tmp_path, "security", "sign-out", "--login", "s20269985")
    assert result.returncode == 0, result.stderr
    assert "ended 1 session(s)" in result.stderr
    assert [path for path, _, _ in received] == ["/cli"]  # delivered before the CLI exited
    _, claims = _claims(client, received[0][1]["logout_token"][0])
    assert claims["aud"] == registered.client_id
    assert store.members(f"sso-of:{person.account_id}") == set()


def test_the_rollover_tells_the_apps_of_its_graduates(
        client: TestClient, make_client, make_person, receiver, settings, db,
        tmp_path) -> None:
    """``idp rollover`` graduates a final-year pupil, who may then no longer sign in: the
    pupil's sessions end at once and their apps are told."""
    from datetime import date

    from directory.models import Account, OrgKind, OrgUnit, Role
    from directory.orgs import ensure_org_unit
    from directory.people import affiliate

    base, received = receiver
    person = make_person("s20269986")
    with db.session() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        grade = ensure_org_unit(session, code="T-SCHOOL-G12", name="高三", kind=OrgKind.grade,
                                parent=school)
        final = ensure_org_unit(session, code="T-SCHOOL-G12-1", name="1班",
                                kind=OrgKind.class_, parent=grade)
        pupil = session.get(Account, person.account_id).person
        affiliate(session, pupil, final, Role.student, date(2026, 9, 1))
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri=base + "/graduated")
    _signed_in(client, registered, person)
    result = _cli(settings, client.app.state.store, tmp_path, "rollover", "--year", "2027")
    assert result.returncode == 0, result.stderr
    assert "graduated 1" in result.stdout and "ended 1 session(s)" in result.stderr
    assert [path for path, _, _ in received] == ["/graduated"]


def test_a_snapshot_import_tells_the_apps_of_those_who_left(
        client: TestClient, make_client, make_person, receiver, settings, db,
        tmp_path) -> None:
    """``idp import --snapshot`` finds a pupil missing from the school's file: the pupil
    has left and may no longer sign in, so the pupil's sessions end at once and their
    apps are told; a pupil in the file keeps signing in."""
    from datetime import date

    from directory.models import Account, Affiliation, OrgUnit, Role
    from directory.people import affiliate
    from tests.directory.cityfiles import CLASSES, SCHOOLS, STUDENT_HEADER, run, student, write

    base, received = receiver
    run(db, settings, write(tmp_path / "schools.csv", SCHOOLS))
    run(db, settings, write(tmp_path / "classes.csv", CLASSES))
    leaving, staying = make_person("s20269987"), make_person("s20269988", name="钱同学")
    with db.session() as session:  # both move into an imported school's class
        klass = session.scalar(select(OrgUnit).where(OrgUnit.code == "3100000001-G1-1"))
        for who in (leaving, staying):
            pupil = session.get(Account, who.account_id).person
            for placement in session.scalars(select(Affiliation).where(
                    Affiliation.person_id == pupil.id)):
                placement.valid_to = date(2026, 9, 1)
            affiliate(session, pupil, klass, Role.student, date(2026, 9, 1))
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri=base + "/left")
    _signed_in(client, registered, leaving)
    other = TestClient(client.app)
    _signed_in(other, registered, staying)
    snapshot = write(tmp_path / "snapshot.csv", (STUDENT_HEADER, [
        student("s20269988", "钱同学", seq=8)]))
    result = _cli(settings, client.app.state.store, tmp_path, "import", str(snapshot),
                  "--snapshot")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ended 1 session(s)" in result.stderr
    assert [path for path, _, _ in received] == ["/left"]
    _, claims = _claims(client, received[0][1]["logout_token"][0])
    assert claims["sub"] == leaving.sub
    store = client.app.state.store
    assert store.members(f"sso-of:{leaving.account_id}") == set()
    assert len(store.members(f"sso-of:{staying.account_id}")) == 1


@pytest.mark.parametrize("how", ["patch", "delete"])
def test_a_scim_deactivation_ends_the_sessions_and_tells_the_apps(
        client: TestClient, make_client, make_person, receiver, db, settings, how) -> None:
    """The school's system deactivates a pupil (SCIM ``active: false``, or deletes the
    last placement: left): the pupil's sessions end at once and their apps are told, not
    only when the browser comes back."""
    from tests.idp.test_lockout import _token, _uid

    base, received = receiver
    person = make_person()
    registered = make_client(id_token_signed_response_alg="ES256",
                             backchannel_logout_uri=base + "/scim")
    phone = TestClient(client.app)
    _signed_in(phone, registered, person)
    headers = {"authorization": f"Bearer {_token(db, settings, 'T-CITY', {'scim'})}",
               "content-type": "application/scim+json"}
    url = f"/scim/v2/Users/{_uid(db, '赵同学')}"
    if how == "patch":
        answer = client.patch(url, headers=headers, json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}]})
        assert answer.status_code == 200 and answer.json()["active"] is False
    else:
        assert client.delete(url, headers=headers).status_code == 204
    drain()
    assert [path for path, _, _ in received] == ["/scim"]
    assert client.app.state.store.members(f"sso-of:{person.account_id}") == set()


def test_a_scim_change_that_keeps_the_account_ends_nothing(
        client: TestClient, make_client, make_person, receiver, db, settings) -> None:
    from tests.idp.test_lockout import _token, _uid

    base, received = receiver
    person = make_person()
    _signed_in(client, make_client(id_token_signed_response_alg="ES256",
                                   backchannel_logout_uri=base + "/kept"), person)
    headers = {"authorization": f"Bearer {_token(db, settings, 'T-CITY', {'scim'})}",
               "content-type": "application/scim+json"}
    answer = client.patch(f"/scim/v2/Users/{_uid(db, '赵同学')}", headers=headers, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "赵小同学"}]})
    assert answer.status_code == 200, answer.text
    drain()
    assert received == [] and len(client.app.state.store.members(
        f"sso-of:{person.account_id}")) == 1
