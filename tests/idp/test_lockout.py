"""Brute-force protection: temporary locks, password spraying, and an administrator's unlock."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from core.store import MemoryStore, Store
from directory import api_tokens
from directory.models import OrgKind, OrgUnit, Person
from directory.orgs import ensure_org_unit
from mfa import guards
from tests.conftest import TEST_MASTER_KEY
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.live import _HIDDEN, live_server  # noqa: F401 - fixture
from tests.mfa.test_webauthn import SoftKey, _csrf, _enrol

LOCKED = "暂时锁定"
LOCKED_IP = "暂停"


@pytest.fixture(autouse=True)
def no_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progressive delays would make the tests wait; the counts and locks still apply."""
    monkeypatch.setattr(guards, "MAX_DELAY", 0)


def _start(client: TestClient, make_client):
    return flow.authorize(client, client_id=make_client().client_id)


def _mistype_until_locked(client: TestClient, start, login: str) -> None:
    """Wrong passwords up to the lock: plain at first, then the attempts left (3, 2, 1),
    and the one that locks says so at once."""
    limit = guards.ACCOUNT
    for n in range(1, limit.lock_after + 1):
        answer = flow.login(client, start, login, "wrong")
        left = limit.lock_after - n
        if left == 0:
            assert answer.status_code == 429 and LOCKED in answer.text
        elif left <= 3:
            assert answer.status_code == 400 and f"再错 {left} 次" in answer.text, n
        else:
            assert answer.status_code == 400 and "账号或密码不正确" in answer.text
            assert "再错" not in answer.text, n


def _actions(db: Database, action: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _token(db: Database, settings: Settings, code: str, permissions: set[str]) -> str:
    with db.session() as session:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        _, token = api_tokens.issue(session, settings, name=f"console {code}", scope=unit,
                                    permissions=permissions)
    return token


def token_actor(db: Database, settings: Settings, token: str) -> str:
    """The audit log's actor for an API token (``TokenScope.actor``: its id)."""
    with db.session() as session:
        scope = api_tokens.authenticate(session, settings, token)
    assert scope is not None
    return scope.actor


def _uid(db: Database, name: str) -> str:
    with db.session() as session:
        return session.scalar(select(Person.uid).where(Person.name == name))


def _passkey(client: TestClient, page, key: SoftKey):
    """Press "sign in with a passkey" on the sign-in page ``page`` shows or redirects to."""
    ia = flow.ia_of(flow.login_form(client, page))
    headers = _csrf(client, f"/login?ia={ia}")
    options = client.post("/login/passkey/options", headers=headers, json={"ia": ia})
    assert options.status_code == 200, options.text
    return client.post("/login/passkey/verify", headers=headers,
                       json={"ia": ia, "credential": key.get(options.json())})


def _reaches_the_app(client: TestClient, signed) -> None:
    """A passkey answer that resumes the pending request ends at the app with a code."""
    assert signed.status_code == 200, signed.text
    at_app = flow.follow(client, client.get(signed.json()["redirect"], follow_redirects=False))
    assert at_app.status_code in (302, 303), at_app.text[:300]
    redirect = flow.Redirect(at_app.headers["location"])
    assert redirect.location.startswith(REDIRECT_URI)
    assert redirect.params["code"] and redirect.params["state"] == "st-1"


def test_guard_locks_once_at_the_threshold() -> None:
    store = MemoryStore()
    results = [guards.record_failure(store, guards.ACCOUNT, "7") for _ in range(12)]
    assert results.index(True) == guards.ACCOUNT.lock_after - 1 and results.count(True) == 1
    assert guards.refusal_seconds(store, guards.ACCOUNT, "7")[0]
    assert guards.unlock(store, guards.ACCOUNT, "7")
    assert guards.refusal_seconds(store, guards.ACCOUNT, "7") == (False, 0)
    assert guards.failures(store, guards.ACCOUNT, "7") == 0


def test_a_schools_address_is_slowed_gently(monkeypatch: pytest.MonkeyPatch) -> None:
    """One address is a whole school: its pupils' typos slow the next pupil by seconds at
    most, and lock it only far beyond what a morning produces; one account still locks at
    10 and waits up to 5 minutes."""
    monkeypatch.setattr(guards, "MAX_DELAY", 300)
    store = MemoryStore()
    for _ in range(guards.IP.free_attempts - 1):
        guards.record_failure(store, guards.IP, "203.0.113.9")
    assert guards.refusal_seconds(store, guards.IP, "203.0.113.9") == (False, 0)
    for _ in range(100):
        assert not guards.record_failure(store, guards.IP, "203.0.113.9")
    assert 0 < guards.wait_seconds(store, guards.IP, "203.0.113.9") <= 15
    for _ in range(guards.ACCOUNT.lock_after - 1):
        guards.record_failure(store, guards.ACCOUNT, "8")
    assert guards.wait_seconds(store, guards.ACCOUNT, "8") > 60


def test_account_locks_even_for_the_right_password_then_admin_unlocks(
        client: TestClient, make_client, make_person, db: Database, settings: Settings) -> None:
    person = make_person("s40", "pw-right-40", name="锁定同学")
    start = _start(client, make_client)
    _mistype_until_locked(client, start, "s40")
    locked = flow.login(client, start, "s40", "pw-right-40")
    assert locked.status_code == 429 and LOCKED in locked.text
    events = _actions(db, "security.lock")
    assert [e.target for e in events] == [f"account:{person.account_id}"]

    token = _token(db, settings, "T-CITY", {"security:unlock"})
    headers = {"authorization": f"Bearer {token}"}
    uid = _uid(db, "锁定同学")
    state = client.get(f"/api/admin/people/{uid}/sign-in-lock", headers=headers).json()
    assert state["locked"] and state["seconds_left"] > 0
    answer = client.post(f"/api/admin/people/{uid}/unlock", headers=headers)
    assert answer.status_code == 200 and answer.json()["was_locked"] is True
    unlocked = _actions(db, "security.unlock")
    assert unlocked[-1].actor == token_actor(db, settings, token)
    assert flow.login(client, start, "s40", "pw-right-40").status_code == 303


@pytest.mark.parametrize(("max_delay", "checks", "wrong"), [
    (0, guards.ACCOUNT.lock_after, guards.ACCOUNT.lock_after - 1),  # the last check locks
    (300, guards.ACCOUNT.free_attempts, guards.ACCOUNT.free_attempts)])
def test_attempts_sent_at_once_are_checked_one_at_a_time(
        live_server, make_person, db: Database, monkeypatch,  # noqa: F811
        max_delay: int, checks: int, wrong: int) -> None:
    """A burst of wrong passwords for one account, all sent at once (each from a browser of
    its own): without one check at a time, every attempt read the count before any added
    its failure, so all were checked and the lock came late (34 of 40 in a review). Each
    attempt waits for its turn and reads what the one before it recorded: without delays
    exactly ``lock_after`` are checked, then the lock refuses the rest; with them, the free
    attempts, then the first delay refuses the rest."""
    monkeypatch.setattr(guards, "MAX_DELAY", max_delay)
    make_person("s42", "pw-right-42", name="并发同学")
    burst = 16
    statuses = _all_at_once(live_server.url, burst, "s42", "wrong")
    checked = [e for e in _actions(db, "login.password") if e.outcome == "failure"]
    assert len(checked) == checks, statuses
    assert statuses.count(400) == wrong and statuses.count(429) == burst - wrong


def test_a_class_sharing_one_account_signs_in_at_once(live_server, make_person) -> None:  # noqa: F811
    """docs/lockout.md: the pupils of a class that share one account press "sign in" at
    the same moment; each waits for the check before it, none is refused."""
    make_person("s46", "pw-right-46", name="班级账号")
    pupils = 8
    assert _all_at_once(live_server.url, pupils, "s46", "pw-right-46") == [303] * pupils


def _all_at_once(url: str, browsers: int, login: str, password: str) -> list[int]:
    """``browsers`` browsers, each with its sign-in page, send ``login`` and ``password``
    at the same moment; the statuses of their answers."""
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(browsers)]
    forms = []
    for browser in clients:
        page = browser.get("/login").text
        hidden = {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}
        forms.append({**hidden, "login": login, "password": password})
    start = threading.Barrier(browsers)

    def attempt(n: int) -> int:
        start.wait()
        return clients[n].post("/login", data=forms[n]).status_code

    with ThreadPoolExecutor(browsers) as pool:
        statuses = list(pool.map(attempt, range(browsers)))
    for browser in clients:
        browser.close()
    return statuses


def test_an_attempt_waits_for_the_check_under_way(client: TestClient, make_client,
                                                  make_person, app) -> None:
    """Pupils sharing a class account press "sign in" together: the second attempt waits
    for the first check to end instead of being refused."""
    person = make_person("s43", "pw-right-43")
    start = _start(client, make_client)
    turn = guards.sole_check(app.state.store, guards.ACCOUNT, str(person.account_id))
    assert turn.__enter__()
    release = threading.Timer(0.3, turn.__exit__, (None, None, None))
    release.start()
    began = time.monotonic()
    answer = flow.login(client, start, "s43", "pw-right-43")
    release.join()
    assert answer.status_code == 303 and time.monotonic() - began >= 0.3


def test_a_check_that_does_not_end_in_time_refuses_the_attempt(
        client: TestClient, make_client, make_person, app, monkeypatch) -> None:
    person = make_person("s45", "pw-right-45")
    start = _start(client, make_client)
    monkeypatch.setattr(guards, "TURN_WAIT_SECONDS", 0.2)
    with guards.sole_check(app.state.store, guards.ACCOUNT, str(person.account_id)) as sole:
        assert sole
        waiting = flow.login(client, start, "s45", "pw-right-45")
    assert waiting.status_code == 429 and "请等待" in waiting.text
    assert flow.login(client, start, "s45", "pw-right-45").status_code == 303


def test_a_check_that_outlived_its_turn_leaves_the_next_turn_alone(monkeypatch) -> None:
    """A check that ran past CHECK_SECONDS lost its turn to the next check; ending, it must
    not end that check's turn too (a third attempt would then run beside the second)."""
    from core.store import MemoryStore

    store = MemoryStore()

    def turn(wait: float = 0):
        return guards.sole_check(store, guards.ACCOUNT, "7", wait=wait)

    monkeypatch.setattr(guards, "CHECK_SECONDS", 0.1)
    first = turn()
    assert first.__enter__()
    time.sleep(0.15)  # the first check's turn expires
    monkeypatch.setattr(guards, "CHECK_SECONDS", 30)
    second = turn()
    assert second.__enter__()
    first.__exit__(None, None, None)  # the first check ends late
    third = turn()
    assert not third.__enter__()  # the second check still holds the turn
    third.__exit__(None, None, None)
    second.__exit__(None, None, None)
    fourth = turn()
    assert fourth.__enter__()
    fourth.__exit__(None, None, None)


def test_account_lock_refuses_the_password_but_not_the_passkey(
        client: TestClient, make_client, make_person, db: Database, store: Store) -> None:
    """docs/lockout.md: "Passkeys are not locked out"; the lock on the password stays."""
    person = make_person("s44", "pw-right-44", name="通行密钥同学")
    key, _ = _enrol(db, client.app.state.settings, store, person)
    start = _start(client, make_client)
    _mistype_until_locked(client, start, "s44")
    locked = flow.login(client, start, "s44", "pw-right-44")
    assert locked.status_code == 429 and LOCKED in locked.text
    assert "idp_session" not in locked.cookies

    _reaches_the_app(client, _passkey(client, start, key))
    with db.session() as session:
        passkey_events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.action == "login.passkey")))
    assert [(e.outcome, e.actor) for e in passkey_events] == [
        ("success", f"account:{person.account_id}")]

    # A passkey success does not lift the lock (guards.clear keeps locks; only an
    # administrator or the expiry does): the password is still refused afterwards.
    assert guards.locked_seconds(store, guards.ACCOUNT, str(person.account_id)) > 0
    client.cookies.clear()
    again = _start(client, make_client)
    assert flow.is_login_page(again)
    still = flow.login(client, again, "s44", "pw-right-44")
    assert still.status_code == 429 and LOCKED in still.text
    assert [e.target for e in _actions(db, "security.lock")] == [f"account:{person.account_id}"]


def test_ip_lock_pauses_passwords_but_not_passkeys(
        client: TestClient, make_client, make_person, db: Database, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An IP lock: "Sign-in with a password from here is paused" (docs/lockout.md: a lock
    stops password guessing only), so a passkey from the locked IP still gets in."""
    monkeypatch.setattr(guards, "SPRAY_ACCOUNTS", 5)
    person = make_person("s45", "pw-right-45")
    key, _ = _enrol(db, client.app.state.settings, store, person)
    start = _start(client, make_client)
    for n in range(5):  # spraying through the real form locks the IP
        flow.login(client, start, f"s8{n}", "Summer2026!")
    assert guards.locked_seconds(store, guards.IP, "testclient") > 0
    blocked = flow.login(client, start, "s45", "pw-right-45")
    assert blocked.status_code == 429 and LOCKED_IP in blocked.text

    _reaches_the_app(client, _passkey(client, start, key))
    assert guards.locked_seconds(store, guards.IP, "testclient") > 0  # the lock stays
    client.cookies.clear()
    still = flow.login(client, _start(client, make_client), "s45", "pw-right-45")
    assert still.status_code == 429 and LOCKED_IP in still.text


def test_ip_delay_refuses_a_passkey_with_a_clear_wait(
        client: TestClient, make_client, make_person, db: Database, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What passkey_login does check for the IP: the progressive delay (not the lock).

    Right after the failure that locks an IP the delay is at its longest, so a passkey
    from there is refused with a plain "wait N seconds" (429) and no session."""
    monkeypatch.setattr(guards, "MAX_DELAY", 300)
    person = make_person("s46", "pw-right-46")
    key, _ = _enrol(db, client.app.state.settings, store, person)
    start = _start(client, make_client)
    # The same counters the login form writes (300 form posts would only be slower).
    for _ in range(guards.IP.lock_after):
        guards.record_failure(store, guards.IP, "testclient")
    assert guards.locked_seconds(store, guards.IP, "testclient") > 0
    refused = _passkey(client, start, key)
    assert refused.status_code == 429 and "idp_session" not in refused.cookies
    error = refused.json()["error"]
    cap = guards.IP.max_delay
    assert "尝试次数过多" in error and any(str(s) in error for s in (cap - 1, cap)), error
    assert _actions(db, "login.passkey") == []


def test_ip_lock_set_by_passkey_failures_is_audited(client: TestClient, db: Database) -> None:
    headers = _csrf(client)
    for _ in range(guards.IP.lock_after):
        failed = client.post("/login/passkey/verify", headers=headers, json={"credential": {}})
        assert failed.status_code == 400
    assert guards.locked_seconds(client.app.state.store, guards.IP, "testclient") > 0
    assert [e.target for e in _actions(db, "security.lock")] == ["ip:testclient"]


def test_unknown_login_locks_like_a_real_one(client: TestClient, make_client) -> None:
    """No account oracle: a name that belongs to nobody locks exactly like a real one."""
    start = _start(client, make_client)
    _mistype_until_locked(client, start, "no-such-person")
    locked = flow.login(client, start, "no-such-person", "wrong")
    assert locked.status_code == 429 and LOCKED in locked.text


@pytest.mark.parametrize(("typed", "respelt"), [
    ("s20268888", "ｓ２０２６ 8888"), ("13900139000", "+86 139-0013-9000"),
    ("Nobody@Example.CN", "nobody@example.cn"), ("nobody@example.cn", "ｎｏｂｏｄｙ@example.cn")])
def test_respelling_an_unknown_name_counts_like_a_real_one(client: TestClient, make_client,
                                                          typed: str, respelt: str) -> None:
    """Failures for a name that matches nobody count under its normalised form, as they do
    under the account for a real one: a respelling reveals nothing (no account oracle)."""
    start = _start(client, make_client)
    for _ in range(guards.ACCOUNT.lock_after):
        flow.login(client, start, typed, "wrong")
    locked = flow.login(client, start, respelt, "wrong")
    assert locked.status_code == 429 and LOCKED in locked.text


def test_password_spraying_locks_the_ip(client: TestClient, make_client, make_person,
                                        db: Database, settings: Settings,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guards, "SPRAY_ACCOUNTS", 5)
    make_person("s41", "pw-right-41")
    start = _start(client, make_client)
    for n in range(5):  # one wrong password each on five accounts: no account is near a lock
        flow.login(client, start, f"s9{n}", "Summer2026!")
    blocked = flow.login(client, start, "s41", "pw-right-41")
    assert blocked.status_code == 429 and LOCKED_IP in blocked.text
    spraying = _actions(db, "security.spraying")
    assert len(spraying) == 1 and spraying[0].target == "ip:testclient"

    school = _token(db, settings, "T-SCHOOL", {"security:unlock"})
    refused = client.post("/api/admin/ip-locks/127.0.0.1/unlock",
                          headers={"authorization": f"Bearer {school}"})
    assert refused.status_code == 403
    city = {"authorization": f"Bearer {_token(db, settings, 'T-CITY', {'security:unlock'})}"}
    assert client.post("/api/admin/ip-locks/not-an-ip/unlock", headers=city).status_code == 400
    # TestClient's peer is the host name "testclient": lift it through the guard itself.
    with db.session() as session:
        assert guards.lift(session, client.app.state.store, guards.IP, "testclient",
                           actor="test")
    assert flow.login(client, start, "s41", "pw-right-41").status_code == 303


def test_pupils_signing_in_raise_their_schools_spraying_threshold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guards, "SPRAY_ACCOUNTS", 5)
    store = MemoryStore()
    for pupil in range(3):
        guards.record_sign_in(store, "203.0.113.5", str(pupil))
        guards.record_sign_in(store, "203.0.113.5", str(pupil))  # twice counts once
    for pupil in range(3, 8):
        guards.record_sign_in(store, "203.0.113.5", str(pupil))  # 8 signed in
    typos = [guards.record_spraying(store, "203.0.113.5", f"login:{n}") for n in range(8)]
    assert typos == [False] * 7 + [True]  # failures reached the 8 who signed in
    assert [guards.record_spraying(store, "198.51.100.1", f"login:{n}")
            for n in range(5)] == [False] * 4 + [True]  # no sign-ins: 5


def test_admin_api_rules(client: TestClient, make_person, db: Database,
                         settings: Settings) -> None:
    make_person("s42", "pw-right-42", name="范围同学")
    uid = _uid(db, "范围同学")
    url = f"/api/admin/people/{uid}/unlock"
    assert client.post(url).status_code == 401
    read_only = _token(db, settings, "T-CITY", {"directory:read"})
    answer = client.post(url, headers={"authorization": f"Bearer {read_only}"})
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    with db.session() as session:
        city = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-CITY"))
        ensure_org_unit(session, code="T-OTHER", name="另一学校", kind=OrgKind.school,
                        parent=city)
    other = _token(db, settings, "T-OTHER", {"security:unlock"})
    assert client.post(url, headers={"authorization": f"Bearer {other}"}).status_code == 404


def test_cli_unlock_needs_the_shared_store(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env = {**clean, "IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    result = subprocess.run([sys.executable, "-m", "idp.cli", "security", "unlock", "--ip",
                             "203.0.113.7"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "admin API" in result.stderr


def test_cli_unlock_and_tokens_with_redis(tmp_path: Path, store: Store) -> None:
    redis_url = os.environ.get("IDP_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("needs IDP_TEST_REDIS_URL (the CLI reaches locks through Redis)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    prefix = f"test-cli-{os.getpid()}:"
    env = {**clean, "IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY,
           "IDP_REDIS_URL": redis_url, "IDP_STORE_PREFIX": prefix}

    def idp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert idp("db", "upgrade").returncode == 0
    assert idp("demo").returncode == 0
    from core.store import RedisStore

    shared = RedisStore(redis_url, prefix)
    try:
        for _ in range(guards.IP.lock_after):
            guards.record_failure(shared, guards.IP, "203.0.113.7")
        assert guards.locked_seconds(shared, guards.IP, "203.0.113.7") > 0
        result = idp("security", "unlock", "--ip", "203.0.113.7")
        assert result.returncode == 0 and "unlocked" in result.stdout, result.stderr
        assert guards.locked_seconds(shared, guards.IP, "203.0.113.7") == 0
        by_login = idp("security", "unlock", "--login", "s20260001")
        assert by_login.returncode == 0 and "was not locked" in by_login.stdout, by_login.stderr
        by_phone = idp("security", "unlock", "--login", "13800138002")  # the demo phone login
        assert by_phone.returncode == 0, by_phone.stderr
        nobody = idp("security", "unlock", "--login", "nobody-here")
        assert nobody.returncode == 2 and "no account" in nobody.stderr
    finally:
        shared.close()
    issued = idp("tokens", "issue", "--name", "sync", "--org", "DEMO-CITY", "--permission",
                 "directory:read")
    assert issued.returncode == 0 and issued.stdout.startswith("idp_"), issued.stderr
    bad = idp("tokens", "issue", "--name", "x", "--org", "DEMO-CITY", "--permission", "root")
    assert bad.returncode == 2 and "permissions must be among" in bad.stderr
    assert "revoked 1 token(s)" in idp("tokens", "revoke", "--name", "sync").stdout


def test_cli_lists_tokens_and_revokes_one_by_id(tmp_path: Path) -> None:
    """Two schools' tokens may share a name: one is revoked by its id, the other stays."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env = {**clean, "IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY}

    def idp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "idp.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert idp("db", "upgrade").returncode == 0
    assert idp("demo").returncode == 0
    for _ in range(2):
        issued = idp("tokens", "issue", "--name", "helpdesk", "--org", "DEMO-CITY",
                     "--permission", "security:unlock")
        assert issued.returncode == 0, issued.stderr
    listed = idp("tokens", "list")
    assert listed.returncode == 0 and listed.stdout.count("helpdesk") == 2, listed.stdout
    ids = [line.split("│")[1].strip() for line in listed.stdout.splitlines()
           if "helpdesk" in line]
    assert idp("tokens", "revoke").returncode == 2
    assert "revoked 1 token(s)" in idp("tokens", "revoke", "--id", ids[0]).stdout
    assert idp("tokens", "list").stdout.count("helpdesk") == 1
    assert idp("tokens", "list", "--all").stdout.count("helpdesk") == 2


def test_the_warning_does_not_tell_that_two_names_are_one_account(
        client: TestClient, make_client, make_person, db: Database) -> None:
    """Attempts left are counted per name as typed: seven wrong passwords typed as a pupil's
    number, then one typed as the pupil's username, gets the plain message (as an unknown
    name would), not "2 left", which would tell that both name the same account."""
    from directory.models import LoginIdentifier

    person = make_person("s98", "pw-right-98")
    with db.session() as session:
        session.add(LoginIdentifier(account_id=person.account_id, kind="username",
                                    value="xiaozhao98"))
    start = _start(client, make_client)
    for _ in range(guards.ACCOUNT.lock_after - 3):
        flow.login(client, start, "s98", "wrong")
    as_username = flow.login(client, start, "xiaozhao98", "wrong")
    assert as_username.status_code == 400 and "再错" not in as_username.text
    as_number = flow.login(client, start, "s98", "wrong")
    assert "再错 2 次" in as_number.text  # the number's own count: 8 of 10


def test_a_sign_in_forgets_the_wrong_attempts_counted_as_typed(
        client: TestClient, make_client, make_person) -> None:
    """After the right password, the next mistype starts the count afresh: no warning left
    over from the wrong passwords before it (they were counted per name as typed too)."""
    make_person("s97", "pw-right-97")
    start = _start(client, make_client)
    for _ in range(guards.ACCOUNT.lock_after - 3):
        flow.login(client, start, "s97", "wrong")
    assert flow.login(client, start, "s97", "pw-right-97").status_code == 303
    client.cookies.clear()
    start = _start(client, make_client)
    again = flow.login(client, start, "s97", "wrong")
    assert again.status_code == 400 and "再错" not in again.text


def test_two_tokens_of_one_name_are_two_actors(client: TestClient, make_person, db: Database,
                                               settings: Settings) -> None:
    """Token names need not be unique (each school's console has its "helpdesk"): the
    audit log names the token by its id, as its ``api_token.issue`` event does."""
    from directory.models import Role

    make_person("t61", "pw-teacher-61", name="审计老师", role=Role.teacher)
    with db.session() as session:
        tokens = [api_tokens.issue(session, settings, name="helpdesk", permissions={
            "security:unlock"}, scope=session.scalar(select(OrgUnit).where(
                OrgUnit.code == code)))[1] for code in ("T-SCHOOL", "T-CITY")]
    url = f"/api/admin/people/{_uid(db, '审计老师')}/sign-out"
    for token in tokens:
        assert client.post(url, headers={"authorization": f"Bearer {token}"}).status_code == 200
    with db.session() as session:
        actors = list(session.scalars(select(AuditEvent.actor).where(
            AuditEvent.action == "account.sign_out_everywhere").order_by(AuditEvent.seq)))
    assert actors == [token_actor(db, settings, token) for token in tokens]
    assert len(set(actors)) == 2


def test_a_schools_token_cannot_reach_its_own_administrator(client: TestClient, make_person,
                                                            db: Database,
                                                            settings: Settings) -> None:
    """A school token holding the resets must not take over the account that administers
    the school (reset its second factor, then its password): an administrator is reset
    from above (``directory.api.managed_person``)."""
    from datetime import date

    from directory.models import Role
    from directory.people import affiliate

    make_person("t62", "pw-admin-62", name="校管理员", role=Role.teacher)
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.name == "校管理员"))
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        affiliate(session, person, school, Role.school_admin, date(2026, 9, 1))
    every = {"security:unlock", "security:mfa-reset", "security:password-reset"}
    uid = _uid(db, "校管理员")
    for code, status in (("T-SCHOOL", 404), ("T-CITY", 200)):
        headers = {"authorization": f"Bearer {_token(db, settings, code, every)}"}
        for action in ("second-factors/reset", "password/reset", "sign-out", "unlock"):
            answer = client.post(f"/api/admin/people/{uid}/{action}", headers=headers)
            assert answer.status_code == status, (code, action, answer.text)
