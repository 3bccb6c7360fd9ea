"""TOTP factors: RFC 6238 codes from Debian's oathtool, replay and rate limits, the pages."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time

import pyotp
import pytest
from sqlalchemy import select

from core.audit import AuditEvent
from core.field_crypto import open_
from idp import sessions
from mfa import totp
from mfa.credentials import SECRET, MfaCredential
from tests.idp.flow import csrf_of

OATHTOOL = shutil.which("oathtool")
needs_oathtool = pytest.mark.skipif(
    OATHTOOL is None, reason="Debian's oathtool is not installed (apt-get install oathtool)")
T0 = 1_800_000_015  # in the middle of a 30 s step, so ±1 step is unambiguous


def oathtool(secret: str, at: float) -> str:
    assert OATHTOOL
    result = subprocess.run([OATHTOOL, "--totp", "-b", "-N", f"@{int(at)}", secret],
                            capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()


@pytest.fixture
def person(make_person):
    return make_person()


def enrol(db, settings, store, account_id: int, *, confirm: bool = True,
          confirm_at: float = T0 - 300) -> totp.Enrolment:
    with db.session() as session:
        enrolment = totp.begin_enrolment(session, settings, account_id, "Authenticator app",
                                         label="s20269999")
    if confirm:
        code = pyotp.TOTP(enrolment.secret_base32).at(confirm_at)
        with db.session() as session:
            assert totp.confirm(session, settings, store, account_id, enrolment.uid, code,
                                at=confirm_at)
    return enrolment


def verify(db, settings, store, account_id: int, code: str, at: float = T0) -> bool:
    with db.session() as session:
        return totp.verify(session, settings, store, account_id, code, at=at)


def audit_rows(db) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_enrolment_seals_the_secret_and_builds_the_uri(db, settings, store, person):
    enrolment = enrol(db, settings, store, person.account_id, confirm=False)
    assert re.fullmatch(r"[A-Z2-7]{32}", enrolment.secret_base32)
    with db.session() as session:
        row = session.scalar(select(MfaCredential).where(MfaCredential.uid == enrolment.uid))
        assert row.kind == "totp" and row.confirmed_at is None
        assert row.secret_enc.startswith("sm4gcm.")
        assert enrolment.secret_base32 not in row.secret_enc
        assert open_(settings, SECRET, row) == enrolment.secret_base32
    parsed = pyotp.parse_uri(enrolment.otpauth_uri)
    assert parsed.issuer == "城市教育统一身份认证" and parsed.name == "s20269999"
    assert parsed.digits == 6 and parsed.interval == 30
    assert "issuer=%E5%9F%8E%E5%B8%82" in enrolment.otpauth_uri


def test_qr_code_is_local_inline_svg():
    svg = totp.qr_svg("otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXPJBSWY3DP&issuer=x")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "secret" not in svg


@needs_oathtool
@pytest.mark.interop
def test_oathtool_codes_are_accepted_within_one_step(db, settings, store, person):
    secret = enrol(db, settings, store, person.account_id).secret_base32
    assert not verify(db, settings, store, person.account_id, oathtool(secret, T0 - 60))
    assert not verify(db, settings, store, person.account_id, oathtool(secret, T0 + 60))
    assert verify(db, settings, store, person.account_id, oathtool(secret, T0 - 30))
    assert verify(db, settings, store, person.account_id, oathtool(secret, T0))
    assert verify(db, settings, store, person.account_id, oathtool(secret, T0 + 30))


def test_no_code_older_than_the_last_one_used(db, settings, store, person):
    """RFC 6238 5.2: once a step's code is used, earlier steps' codes are refused too, so
    no more than one code passes at any moment."""
    secret = enrol(db, settings, store, person.account_id).secret_base32
    assert verify(db, settings, store, person.account_id, pyotp.TOTP(secret).at(T0 + 30))
    assert not verify(db, settings, store, person.account_id, pyotp.TOTP(secret).at(T0))
    assert not verify(db, settings, store, person.account_id, pyotp.TOTP(secret).at(T0 - 30))
    assert verify(db, settings, store, person.account_id, pyotp.TOTP(secret).at(T0 + 60),
                  at=T0 + 60)


@needs_oathtool
@pytest.mark.interop
def test_oathtool_code_now_with_the_real_clock(db, settings, store, person):
    secret = enrol(db, settings, store, person.account_id,
                   confirm_at=time.time() - 300).secret_base32
    code = oathtool(secret, time.time())
    with db.session() as session:
        assert totp.verify(session, settings, store, person.account_id, code)
        row = session.scalar(select(MfaCredential).where(MfaCredential.account_id
                                                         == person.account_id))
        assert row.last_used_at is not None


def test_a_used_code_is_refused_again(db, settings, store, person):
    secret = enrol(db, settings, store, person.account_id).secret_base32
    code = pyotp.TOTP(secret).at(T0)
    assert verify(db, settings, store, person.account_id, code)
    assert not verify(db, settings, store, person.account_id, code)
    assert not verify(db, settings, store, person.account_id, code, at=T0 + 30)  # still in window
    # The next step's code is a new code.
    assert verify(db, settings, store, person.account_id, pyotp.TOTP(secret).at(T0 + 30),
                  at=T0 + 30)
    failures = [json.loads(e.detail) for e in audit_rows(db) if e.outcome == "failure"]
    assert [f["reason"] for f in failures] == ["code_reused", "code_reused"]


def test_two_factors_one_code_per_step(db, settings, store, person):
    first = enrol(db, settings, store, person.account_id).secret_base32
    second = enrol(db, settings, store, person.account_id, confirm_at=T0 - 270).secret_base32
    assert verify(db, settings, store, person.account_id, pyotp.TOTP(second).at(T0))
    assert not verify(db, settings, store, person.account_id, pyotp.TOTP(first).at(T0))
    assert verify(db, settings, store, person.account_id, pyotp.TOTP(first).at(T0 + 30),
                  at=T0 + 30)


def test_rate_limit_after_five_wrong_codes(db, settings, store, person, make_person):
    secret = enrol(db, settings, store, person.account_id).secret_base32
    good = pyotp.TOTP(secret).at(T0)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(4):
        assert not verify(db, settings, store, person.account_id, wrong)
    # A correct code does not count against the limit.
    assert verify(db, settings, store, person.account_id, good)
    assert not verify(db, settings, store, person.account_id, wrong)
    assert totp.locked_seconds(store, person.account_id) > 0
    fresh = pyotp.TOTP(secret).at(T0 + 30)
    assert not verify(db, settings, store, person.account_id, fresh, at=T0 + 30)
    assert 0 < totp.locked_seconds(store, person.account_id) <= totp.FAILURE_WINDOW
    reasons = [json.loads(e.detail)["reason"] for e in audit_rows(db) if e.outcome == "failure"]
    assert reasons == ["wrong_code"] * 5 + ["rate_limited"]
    assert all(good not in e.detail and wrong not in e.detail for e in audit_rows(db))
    # Another account is not affected.
    other = make_person("s20268888")
    other_secret = enrol(db, settings, store, other.account_id).secret_base32
    assert verify(db, settings, store, other.account_id, pyotp.TOTP(other_secret).at(T0))
    # The window passes: codes are checked again.
    store.delete(f"totp:fail:{person.account_id}")
    assert verify(db, settings, store, person.account_id, fresh, at=T0 + 30)


def test_concurrent_guesses_cannot_exceed_the_limit(db, settings, store, person):
    from concurrent.futures import ThreadPoolExecutor

    enrol(db, settings, store, person.account_id)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: verify(db, settings, store, person.account_id, "000000"),
                      range(12)))
    wrong = [e for e in audit_rows(db) if json.loads(e.detail).get("reason") == "wrong_code"]
    assert len(wrong) <= totp.MAX_FAILURES


def test_codes_sent_at_once_pass_as_if_one_after_the_other(db, settings, store, person):
    """RFC 6238 5.2 under concurrency: the previous, current and next step's codes, each
    sent four times at once. Each step passes at most once, and the acceptances are in
    step order: a step passes only above every step that passed before it (the store's
    ``advance`` is the point where each acceptance happens; its order is recorded)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    accepted: list[int] = []
    lock = threading.Lock()

    class Recording:  # the test's store, noting each accepted step in order
        def __getattr__(self, name: str):
            return getattr(store, name)

        def advance(self, key: str, value: int, ttl: float) -> bool:
            with lock:
                won = store.advance(key, value, ttl)
                if won:
                    accepted.append(value)
                return won

    recording = Recording()
    secret = enrol(db, settings, store, person.account_id).secret_base32
    codes = [pyotp.TOTP(secret).at(T0 + offset) for offset in (30, -30, 0)] * 4
    with ThreadPoolExecutor(12) as pool:
        passed = list(pool.map(lambda code: verify(db, settings, recording,
                                                   person.account_id, code), codes))
    assert 1 <= passed.count(True) == len(accepted) <= 3
    assert accepted == sorted(set(accepted))
    # the highest step that passed never passes again (which steps passed depends on the
    # threads' order, and on the failure limit that twelve attempts at once reach: a
    # step's four copies may all be refused as over the limit, and pass later)
    totp.forget_failures(store, person.account_id)  # refused for the replay, not a lock
    replayed = pyotp.TOTP(secret).at(max(accepted) * 30)
    assert verify(db, settings, store, person.account_id, replayed) is False


def test_unconfirmed_factors_do_not_verify(db, settings, store, person):
    enrolment = enrol(db, settings, store, person.account_id, confirm=False)
    code = pyotp.TOTP(enrolment.secret_base32).at(T0)
    assert not verify(db, settings, store, person.account_id, code)
    with db.session() as session:
        assert totp.factors(session, person.account_id) == []


def test_confirm_needs_a_valid_code_and_the_owner(db, settings, store, person, make_person):
    enrolment = enrol(db, settings, store, person.account_id, confirm=False)
    other = make_person("s20268888")
    totp_ = pyotp.TOTP(enrolment.secret_base32)
    with db.session() as session:
        assert not totp.confirm(session, settings, store, other.account_id, enrolment.uid,
                                totp_.at(T0), at=T0)
        assert not totp.confirm(session, settings, store, person.account_id, enrolment.uid,
                                totp_.at(T0 - 90), at=T0)
        assert not totp.confirm(session, settings, store, person.account_id, enrolment.uid,
                                "12ab56", at=T0)
    with db.session() as session:
        assert totp.confirm(session, settings, store, person.account_id, enrolment.uid,
                            totp_.at(T0), at=T0)
    # The confirming code is used: it does not sign in as well.
    assert not verify(db, settings, store, person.account_id, totp_.at(T0))
    with db.session() as session:
        (row,) = totp.factors(session, person.account_id)
        assert row.confirmed_at is not None


def test_remove(db, settings, store, person, make_person):
    enrolment = enrol(db, settings, store, person.account_id)
    other = make_person("s20268888")
    with db.session() as session:
        assert not totp.remove(session, other.account_id, enrolment.uid)
        assert totp.remove(session, person.account_id, enrolment.uid)
        assert not totp.remove(session, person.account_id, enrolment.uid)
    code = pyotp.TOTP(enrolment.secret_base32).at(T0)
    assert not verify(db, settings, store, person.account_id, code)
    actions = [(e.action, e.outcome) for e in audit_rows(db)]
    assert ("mfa.totp.enrol", "success") in actions
    assert ("mfa.totp.confirm", "success") in actions
    assert ("mfa.totp.remove", "success") in actions
    assert ("mfa.totp.verify", "failure") in actions


# --- pages ---------------------------------------------------------------------------------

PAGE = "/account/security/totp"


def sign_in(client, store, person) -> None:
    token, _ = sessions.start(store, account_id=person.account_id, sub=person.sub, amr=["pwd"],
                              acr="1")
    client.cookies.set(sessions.COOKIE, token)


def secret_on(html: str) -> str:
    found = re.search(r'<pre id="totp-secret">([A-Z2-7 ]+)</pre>', html)
    assert found, "no secret on the page"
    return found.group(1).replace(" ", "")


def test_pages_need_a_signed_in_person(client):
    response = client.get(PAGE, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == sessions.reauth_url(PAGE)
    csrf = csrf_of(client.get("/login").text)
    for path in ("/begin", "/confirm", "/remove"):
        response = client.post(PAGE + path, data={"csrf_token": csrf, "uid": "x", "code": "1"},
                               follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == sessions.reauth_url(PAGE)


def test_enrol_confirm_and_remove_through_the_pages(client, db, settings, store, person):
    sign_in(client, store, person)
    client.headers["accept-language"] = "en"
    page = client.get(PAGE)
    assert page.status_code == 200 and "Add authenticator app" in page.text
    started = client.post(PAGE + "/begin", data={"csrf_token": csrf_of(page.text)})
    assert started.status_code == 200
    assert "<svg" in started.text and 'class="qr"' in started.text
    assert started.headers["cache-control"] == "no-store"
    grouped = re.search(r'<pre id="totp-secret">([A-Z2-7 ]+)</pre>', started.text).group(1)
    assert re.fullmatch(r"([A-Z2-7]{4} ){7}[A-Z2-7]{4}", grouped)
    opened = re.search(r'href="(otpauth://[^"]+)" data-otpauth', started.text)[1]
    assert pyotp.parse_uri(html.unescape(opened)).secret == grouped.replace(" ", "")
    secret = secret_on(started.text)
    uid = re.search(r'name="uid" value="([0-9a-f]+)"', started.text).group(1)

    wrong = client.post(PAGE + "/confirm", data={"csrf_token": csrf_of(started.text),
                                                 "uid": uid, "code": "000000"})
    assert wrong.status_code == 400 and "not correct" in wrong.text
    assert secret_on(wrong.text) == secret  # the person can try again on the same page

    code = oathtool(secret, time.time()) if OATHTOOL else pyotp.TOTP(secret).now()
    done = client.post(PAGE + "/confirm", data={"csrf_token": csrf_of(wrong.text),
                                                "uid": uid, "code": code},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == PAGE + "?done=added"
    listing = client.get(done.headers["location"])
    assert "The authenticator app was added." in listing.text and uid in listing.text
    with db.session() as session:
        assert [r.uid for r in totp.factors(session, person.account_id)] == [uid]

    removed = client.post(PAGE + "/remove", data={"csrf_token": csrf_of(listing.text),
                                                  "uid": uid}, follow_redirects=False)
    assert removed.headers["location"] == PAGE + "?done=removed"
    with db.session() as session:
        assert totp.factors(session, person.account_id) == []


def test_pages_are_chinese_by_default(client, store, person):
    sign_in(client, store, person)
    page = client.get(PAGE, headers={"accept-language": "zh-CN"})
    assert page.status_code == 200 and 'lang="zh-CN"' in page.text
    assert "添加身份验证器应用" in page.text


def test_forms_without_a_valid_csrf_token_are_refused(client, db, store, person):
    sign_in(client, store, person)
    client.get(PAGE)  # sets the csrf cookie
    for path, data in (("/begin", {}), ("/confirm", {"uid": "x", "code": "123456"}),
                       ("/remove", {"uid": "x"})):
        assert client.post(PAGE + path, data=data).status_code == 403
        assert client.post(PAGE + path, data={**data, "csrf_token": "forged"}).status_code == 403
    with db.session() as session:
        assert session.scalars(select(MfaCredential)).all() == []


def test_someone_elses_factor_cannot_be_removed(client, db, settings, store, person,
                                                 make_person):
    other = make_person("s20268888")
    enrolment = enrol(db, settings, store, other.account_id)
    sign_in(client, store, person)
    csrf = csrf_of(client.get(PAGE).text)
    response = client.post(PAGE + "/remove", data={"csrf_token": csrf, "uid": enrolment.uid},
                           follow_redirects=False)
    assert response.headers["location"] == PAGE
    with db.session() as session:
        assert len(totp.factors(session, other.account_id)) == 1


def test_at_most_twenty_wrong_codes_a_day(db, settings, store, person):
    """Five per five minutes would still allow 1,440 guesses a day with a stolen password;
    the daily limit keeps it to twenty, whatever the pace."""
    secret = enrol(db, settings, store, person.account_id).secret_base32
    good = pyotp.TOTP(secret).at(T0)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _window in range(totp.DAILY_FAILURES // totp.MAX_FAILURES):
        for _ in range(totp.MAX_FAILURES):
            assert not verify(db, settings, store, person.account_id, wrong)
        store.delete(f"totp:fail:{person.account_id}")  # five minutes pass
    assert not verify(db, settings, store, person.account_id, good)  # the day's limit
    assert totp.locked_seconds(store, person.account_id) > totp.FAILURE_WINDOW
    store.delete(f"totp:fail-day:{person.account_id}")  # a day passes
    assert verify(db, settings, store, person.account_id, good)


def test_tries_refused_during_the_lock_use_up_nothing(db, settings, store, person):
    """Guessing on during the five-minute lock is refused unchecked and does not use up the
    day's twenty: after the window the person's right code passes."""
    secret = enrol(db, settings, store, person.account_id).secret_base32
    good = pyotp.TOTP(secret).at(T0)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(totp.MAX_FAILURES):
        assert not verify(db, settings, store, person.account_id, wrong)
    for _ in range(totp.DAILY_FAILURES):
        assert not verify(db, settings, store, person.account_id, wrong)  # locked
    assert store.get(f"totp:fail-day:{person.account_id}") == str(totp.MAX_FAILURES).encode()
    store.delete(f"totp:fail:{person.account_id}")  # five minutes pass
    assert verify(db, settings, store, person.account_id, good)


def test_an_administrators_unlock_forgets_the_wrong_codes(db, settings, store, person):
    from mfa import guards, recovery

    secret = enrol(db, settings, store, person.account_id).secret_base32
    good = pyotp.TOTP(secret).at(T0)
    for _ in range(totp.MAX_FAILURES):
        verify(db, settings, store, person.account_id, f"{(int(good) + 1) % 1_000_000:06d}")
        with db.session() as session:
            recovery.use(session, settings, store, person.account_id, "aaaaa-aaaaa")
    assert totp.locked_seconds(store, person.account_id)
    assert recovery.locked_seconds(store, person.account_id)
    assert guards.unlock(store, guards.ACCOUNT, str(person.account_id)) is True
    assert totp.locked_seconds(store, person.account_id) == 0
    assert recovery.locked_seconds(store, person.account_id) == 0
    assert verify(db, settings, store, person.account_id, good)
