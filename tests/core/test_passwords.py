"""Tests for core.passwords: formats, known answers, upgrades, garbage tolerance."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import bcrypt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from core.passwords import (
    DEFAULT_PBKDF2_ITERATIONS,
    MAX_PASSWORD_LENGTH,
    Passwords,
    VerifyResult,
    import_legacy_hash,
)

ARGON2_RE = re.compile(r"\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}")
PBKDF2_RE = re.compile(r"\$pbkdf2-sm3\$i=(\d+)\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})")

# Iteration count for tests that only need *a* pbkdf2-sm3 hasher (the minimum allowed).
FAST_ITERATIONS = 10_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def argon() -> Passwords:
    return Passwords()


@pytest.fixture(scope="module")
def sm3() -> Passwords:
    return Passwords("pbkdf2-sm3")


@pytest.fixture(scope="module")
def sm3_fast() -> Passwords:
    return Passwords("pbkdf2-sm3", pbkdf2_iterations=FAST_ITERATIONS)


# --- round trips ------------------------------------------------------------------------


def test_argon2id_round_trip(argon: Passwords) -> None:
    stored = argon.hash("correct horse battery staple")
    assert ARGON2_RE.fullmatch(stored), stored
    assert argon.verify(stored, "correct horse battery staple") == VerifyResult(True, None)
    assert argon.verify(stored, "correct horse battery stapl") == VerifyResult(False, None)
    assert argon.hash("same") != argon.hash("same")  # salted


def test_pbkdf2_sm3_round_trip(sm3: Passwords) -> None:
    stored = sm3.hash("correct horse battery staple")
    m = PBKDF2_RE.fullmatch(stored)
    assert m, stored
    assert int(m.group(1)) == DEFAULT_PBKDF2_ITERATIONS
    assert len(unb64(m.group(2))) == 16
    assert len(unb64(m.group(3))) == 32
    assert sm3.verify(stored, "correct horse battery staple") == VerifyResult(True, None)
    assert sm3.verify(stored, "Correct horse battery staple") == VerifyResult(False, None)
    assert sm3.hash("same") != sm3.hash("same")


def test_verify_result_truthiness(sm3_fast: Passwords) -> None:
    stored = sm3_fast.hash("pw")
    assert sm3_fast.verify(stored, "pw")
    assert not sm3_fast.verify(stored, "nope")


def test_empty_password_round_trips(sm3_fast: Passwords) -> None:
    stored = sm3_fast.hash("")
    assert sm3_fast.verify(stored, "").ok
    assert not sm3_fast.verify(stored, " ").ok


def test_nfkc_normalisation(argon: Passwords, sm3_fast: Passwords) -> None:
    # Full-width letters/digits from a Chinese IME match their ASCII forms;
    # composed and decomposed é match each other.
    for hasher in (argon, sm3_fast):
        assert hasher.verify(hasher.hash("ｐａｓｓ１２３"), "pass123").ok
        assert hasher.verify(hasher.hash("pass123"), "ｐａｓｓ１２３").ok
        assert hasher.verify(hasher.hash("caf\u00e9"), "cafe\u0301").ok
        assert not hasher.verify(hasher.hash("Pass123"), "pass123").ok


def test_pbkdf2_sm3_hashes_nfkc_utf8(sm3_fast: Passwords) -> None:
    m = PBKDF2_RE.fullmatch(sm3_fast.hash("ｐａｓｓ"))
    assert m
    salt = unb64(m.group(2))
    expected = hashlib.pbkdf2_hmac("sm3", b"pass", salt, FAST_ITERATIONS, 32)
    assert unb64(m.group(3)) == expected


@settings(max_examples=10, deadline=None)
@given(password=st.text(max_size=64))
def test_property_round_trip_unicode(argon: Passwords, sm3_fast: Passwords, password: str) -> None:
    for hasher in (argon, sm3_fast):
        stored = hasher.hash(password)
        result = hasher.verify(stored, password)
        assert result.ok
        assert result.new_hash is None
        assert not hasher.verify(stored, password + "x").ok


# --- garbage in, ok=False out -------------------------------------------------------------

GARBAGE = [
    "",
    "$",
    "$$$$",
    "password",
    "$argon2id$broken",
    "$argon2id$v=19$m=19456,t=2,p=1$AAAA$AAAA",
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$",
    "$argon2xyz$v=19$m=1,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$unknown$abc",
    "{SSHA}abcdefg",
    "$pbkdf2-sm3$",
    "$pbkdf2-sm3$i=0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=010$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=abc$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=99999999999$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=1000$AAAAAAAAAAAAAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=1000$AAAAAAAAAAAAAAAAAAAAAB$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=1000$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$pbkdf2-sm3$i=1000$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
    "$pbkdf2-sm3$i=1000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$x",
    "$legacy-md5$",
    "$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf9",
    "$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf99a",
    "$legacy-md5$zf4dcc3b5aa765d61d8327deb882cf99",
    "$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf99\n",
    "$legacy-sha1$not-hex-not-hex-not-hex-not-hex-not-hex!",
    "$legacy-sha256$$" + "0" * 64,
    "$legacy-sha256$c2FsdA$" + "g" * 64,
    "$legacy-sha256$c2FsdA$" + "0" * 63,
    "$legacy-sha256$not base64$" + "0" * 64,
    "$legacy-sha512$" + "0" * 128,
    "$2b$",
    "$2b$10$tooshort",
    "$2x$04$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e",
    "$2b$31$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e",
    "$2b$03$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e",
    "\x00\x00",
    "$argon2id$" + "A" * 5000,
]


@pytest.mark.parametrize("stored", GARBAGE)
def test_garbage_stored_value_is_rejected(argon: Passwords, stored: str) -> None:
    assert argon.verify(stored, "password") == VerifyResult(False, None)
    assert argon.verify(stored, "") == VerifyResult(False, None)


@pytest.mark.parametrize("stored", [None, 123, b"$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf99"])
def test_non_str_stored_value_is_rejected(argon: Passwords, stored: object) -> None:
    assert argon.verify(stored, "password") == VerifyResult(False, None)  # type: ignore[arg-type]


def test_lone_surrogate_password(argon: Passwords) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        argon.hash("pass\ud800")
    stored = argon.hash("pass")
    assert argon.verify(stored, "pass\ud800") == VerifyResult(False, None)
    assert argon.verify("$legacy-md5$" + "0" * 32, "\udfff") == VerifyResult(False, None)
    assert argon.dummy_verify("\ud800") == VerifyResult(False, None)


def test_password_length_limit(sm3_fast: Passwords) -> None:
    longest = "a" * MAX_PASSWORD_LENGTH
    stored = sm3_fast.hash(longest)
    assert sm3_fast.verify(stored, longest).ok
    with pytest.raises(ValueError, match="longer than 1024"):
        sm3_fast.hash(longest + "a")
    assert sm3_fast.verify(stored, longest + "a") == VerifyResult(False, None)
    assert sm3_fast.dummy_verify(longest + "a") == VerifyResult(False, None)


def test_non_str_password_raises_type_error(argon: Passwords) -> None:
    with pytest.raises(TypeError):
        argon.hash(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        argon.verify(argon.hash("x"), None)  # type: ignore[arg-type]


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="unknown password scheme"):
        Passwords("sha256")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pbkdf2_iterations"):
        Passwords("pbkdf2-sm3", pbkdf2_iterations=1000)
    with pytest.raises(TypeError):
        Passwords("pbkdf2-sm3", pbkdf2_iterations=100_000.0)  # type: ignore[arg-type]


# --- known answers ---------------------------------------------------------------------------


def test_sm3_standard_vector() -> None:
    # GB/T 32905-2016, example 1: SM3("abc").
    assert (
        hashlib.new("sm3", b"abc").hexdigest()
        == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def _pbkdf2_reference(password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 8018 PBKDF2 with HMAC-SM3, one 32-byte block, written out by hand."""
    u = hmac.new(password, salt + (1).to_bytes(4, "big"), "sm3").digest()
    out = bytearray(u)
    for _ in range(iterations - 1):
        u = hmac.new(password, u, "sm3").digest()
        out = bytearray(a ^ b for a, b in zip(out, u, strict=True))
    return bytes(out)


def test_pbkdf2_sm3_known_answer_cross_checked(argon: Passwords) -> None:
    password, salt, iterations = "password", bytes(range(16)), 12_345
    expected = PBKDF2HMAC(
        algorithm=hashes.SM3(), length=32, salt=salt, iterations=iterations
    ).derive(password.encode())
    assert expected == hashlib.pbkdf2_hmac("sm3", password.encode(), salt, iterations, 32)
    assert _pbkdf2_reference(password.encode(), salt, 3) == hashlib.pbkdf2_hmac(
        "sm3", password.encode(), salt, 3, 32
    )
    stored = f"$pbkdf2-sm3$i={iterations}${b64(salt)}${b64(expected)}"
    hasher = Passwords("pbkdf2-sm3", pbkdf2_iterations=iterations)
    assert hasher.verify(stored, password) == VerifyResult(True, None)
    assert hasher.verify(stored, "Password") == VerifyResult(False, None)
    # The argon2id deployment accepts it too, and upgrades it.
    result = argon.verify(stored, password)
    assert result.ok
    assert result.new_hash is not None
    assert ARGON2_RE.fullmatch(result.new_hash)


def test_legacy_md5_known_answer(argon: Passwords) -> None:
    assert hashlib.md5(b"password").hexdigest() == "5f4dcc3b5aa765d61d8327deb882cf99"
    stored = import_legacy_hash("md5", "5f4dcc3b5aa765d61d8327deb882cf99")
    assert stored == "$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf99"
    assert argon.verify(stored, "password").ok
    assert argon.verify(stored.upper().replace("$LEGACY-MD5$", "$legacy-md5$"), "password").ok


def test_legacy_sha1_known_answer(argon: Passwords) -> None:
    stored = import_legacy_hash("sha1", "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8")
    assert stored == "$legacy-sha1$5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"
    assert argon.verify(stored, "password").ok


def test_legacy_sha256_salt_placement(argon: Passwords) -> None:
    salt = "x7$Qz"  # a '$' in the salt must survive the stored format
    salt_first = hashlib.sha256((salt + "password").encode()).hexdigest()
    salt_last = hashlib.sha256(("password" + salt).encode()).hexdigest()
    sp = import_legacy_hash("sha256", salt_first, salt)
    ps = import_legacy_hash("sha256-ps", salt_last, salt)
    assert sp == f"$legacy-sha256${b64(salt.encode())}${salt_first}"
    assert ps == f"$legacy-sha256-ps${b64(salt.encode())}${salt_last}"
    assert argon.verify(sp, "password").ok
    assert argon.verify(ps, "password").ok
    # The conventions are not interchangeable.
    assert not argon.verify(import_legacy_hash("sha256", salt_last, salt), "password").ok
    assert not argon.verify(import_legacy_hash("sha256-ps", salt_first, salt), "password").ok


def test_legacy_sha256_bytes_salt(argon: Passwords) -> None:
    salt = bytes.fromhex("00ff10ee")
    digest = hashlib.sha256(salt + "密码".encode()).hexdigest()
    stored = import_legacy_hash("sha256", digest, salt)
    assert argon.verify(stored, "密码").ok


def test_legacy_digests_use_password_as_typed(argon: Passwords) -> None:
    # Old systems did not normalise: the full-width form hashed to something else.
    stored = import_legacy_hash("md5", hashlib.md5("ｐａｓｓ".encode()).hexdigest())
    assert argon.verify(stored, "ｐａｓｓ").ok
    assert not argon.verify(stored, "pass").ok


@pytest.mark.parametrize("prefix", [b"$2a$", b"$2b$", b"$2y$"])
def test_legacy_bcrypt(argon: Passwords, prefix: bytes) -> None:
    generated = bcrypt.hashpw(b"password", bcrypt.gensalt(rounds=4))
    stored = import_legacy_hash("bcrypt", (prefix + generated[4:]).decode())
    assert stored.startswith(prefix.decode())
    assert argon.verify(stored, "password").ok
    assert not argon.verify(stored, "passwore").ok


def test_legacy_bcrypt_long_password_truncated_to_72_bytes(argon: Passwords) -> None:
    long_password = "密" * 30  # 90 UTF-8 bytes; old systems only hashed the first 72
    stored = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    assert argon.verify(stored, long_password).ok
    assert argon.verify(stored, long_password + "anything after byte 72").ok
    assert not argon.verify(stored, "密" * 23).ok  # 69 bytes


# --- upgrades -------------------------------------------------------------------------------


def _legacy_hashes(password: str) -> dict[str, str]:
    pw = password.encode()
    return {
        "md5": import_legacy_hash("md5", hashlib.md5(pw).hexdigest()),
        "sha1": import_legacy_hash("sha1", hashlib.sha1(pw).hexdigest()),
        "sha256": import_legacy_hash("sha256", hashlib.sha256(b"NaCl" + pw).hexdigest(), "NaCl"),
        "sha256-ps": import_legacy_hash(
            "sha256-ps", hashlib.sha256(pw + b"NaCl").hexdigest(), "NaCl"
        ),
        "bcrypt": import_legacy_hash("bcrypt", bcrypt.hashpw(pw, bcrypt.gensalt(4)).decode()),
    }


@pytest.mark.parametrize("kind", ["md5", "sha1", "sha256", "sha256-ps", "bcrypt"])
@pytest.mark.parametrize("scheme", ["argon2id", "pbkdf2-sm3"])
def test_legacy_hash_is_upgraded(argon: Passwords, sm3: Passwords, kind: str, scheme: str) -> None:
    hasher = argon if scheme == "argon2id" else sm3
    stored = _legacy_hashes("s3cret-密码")[kind]
    assert hasher.verify(stored, "wrong") == VerifyResult(False, None)
    result = hasher.verify(stored, "s3cret-密码")
    assert result.ok
    assert result.new_hash is not None
    assert result.new_hash.startswith(f"${scheme}$")
    again = hasher.verify(result.new_hash, "s3cret-密码")
    assert again == VerifyResult(True, None)


def test_argon2_parameter_change_triggers_rehash(argon: Passwords) -> None:
    old = Passwords(argon2_memory_cost=8192)
    stored = old.hash("pw")
    assert "m=8192," in stored
    assert old.verify(stored, "pw") == VerifyResult(True, None)
    result = argon.verify(stored, "pw")
    assert result.ok
    assert result.new_hash is not None
    assert ARGON2_RE.fullmatch(result.new_hash)
    assert argon.verify(stored, "wrong") == VerifyResult(False, None)

    stronger = Passwords(argon2_time_cost=3)
    upgraded = stronger.verify(stored, "pw").new_hash
    assert upgraded is not None
    assert "t=3," in upgraded


def test_argon2i_is_upgraded_to_argon2id(argon: Passwords) -> None:
    import argon2

    stored = argon2.PasswordHasher(
        time_cost=2, memory_cost=19456, parallelism=1, type=argon2.Type.I
    ).hash("pw")
    assert stored.startswith("$argon2i$")
    result = argon.verify(stored, "pw")
    assert result.ok
    assert result.new_hash is not None
    assert result.new_hash.startswith("$argon2id$")


def test_pbkdf2_more_iterations_triggers_rehash(sm3_fast: Passwords, sm3: Passwords) -> None:
    stored = sm3_fast.hash("pw")
    assert f"$i={FAST_ITERATIONS}$" in stored
    result = sm3.verify(stored, "pw")
    assert result.ok
    assert result.new_hash is not None
    assert f"$i={DEFAULT_PBKDF2_ITERATIONS}$" in result.new_hash
    assert sm3.verify(result.new_hash, "pw") == VerifyResult(True, None)
    assert sm3.verify(stored, "wrong") == VerifyResult(False, None)
    # Fewer configured iterations than stored: no downgrade.
    assert sm3_fast.verify(result.new_hash, "pw") == VerifyResult(True, None)


def test_pbkdf2_short_salt_triggers_rehash(sm3_fast: Passwords) -> None:
    salt = b"12345678"
    key = hashlib.pbkdf2_hmac("sm3", b"pw", salt, FAST_ITERATIONS, 32)
    stored = f"$pbkdf2-sm3$i={FAST_ITERATIONS}${b64(salt)}${b64(key)}"
    result = sm3_fast.verify(stored, "pw")
    assert result.ok
    assert result.new_hash is not None


def test_scheme_switch_argon2_to_pbkdf2_sm3(argon: Passwords, sm3: Passwords) -> None:
    stored = argon.hash("pw")
    result = sm3.verify(stored, "pw")
    assert result.ok
    assert result.new_hash is not None
    assert PBKDF2_RE.fullmatch(result.new_hash)
    assert sm3.verify(result.new_hash, "pw") == VerifyResult(True, None)
    assert sm3.verify(stored, "wrong") == VerifyResult(False, None)
    # And back.
    back = argon.verify(result.new_hash, "pw")
    assert back.ok
    assert back.new_hash is not None
    assert ARGON2_RE.fullmatch(back.new_hash)


# --- dummy_verify ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["argon2id", "pbkdf2-sm3"])
def test_dummy_and_failed_paths_do_a_full_verification(
    argon: Passwords, sm3: Passwords, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown accounts, legacy and garbage hashes spend one real verification of the
    configured scheme, so their answer time tells nothing (counted, not timed)."""
    hasher = argon if scheme == "argon2id" else sm3
    assert hasher.dummy_verify("pw") == VerifyResult(False, None)
    assert not hasher.dummy_verify("pw")
    calls: list[str] = []
    real_verify = hasher._verify

    def counting(stored: str, password: str) -> tuple[bool, bool]:
        calls.append(stored)
        return real_verify(stored, password)

    monkeypatch.setattr(hasher, "_verify", counting)
    for attempt in (
        lambda: hasher.dummy_verify("wrong"),
        lambda: hasher.verify("$legacy-md5$" + "0" * 32, "wrong"),
        lambda: hasher.verify("$garbage$", "wrong"),
    ):
        calls.clear()
        assert not attempt().ok
        assert hasher._dummy_hash in calls


# --- import_legacy_hash validation -------------------------------------------------------------


def test_import_normalises_case_and_whitespace() -> None:
    assert (
        import_legacy_hash("md5", "  5F4DCC3B5AA765D61D8327DEB882CF99\n")
        == "$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf99"
    )


@pytest.mark.parametrize(
    ("kind", "value", "salt", "message"),
    [
        ("sha512", "0" * 128, None, "unknown legacy hash kind;"),
        ("MD5", "0" * 32, None, "unknown legacy hash kind;"),
        ("", "0" * 32, None, "unknown legacy hash kind;"),
        ("md5", "0" * 31, None, "32 hex digits"),
        ("md5", "0" * 33, None, "32 hex digits"),
        ("md5", "g" * 32, None, "32 hex digits"),
        ("md5", "", None, "32 hex digits"),
        ("md5", "0" * 32, "salt", "take no salt"),
        ("sha1", "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd", None, "40 hex digits"),
        ("sha1", "0x" + "0" * 38, None, "40 hex digits"),
        ("sha256", "0" * 64, None, "non-empty salt"),
        ("sha256", "0" * 64, "", "non-empty salt"),
        ("sha256-ps", "0" * 64, b"", "non-empty salt"),
        ("sha256", "0" * 40, "salt", "64 hex digits"),
        ("sha256", "0" * 64, "bad\ud800", "not valid Unicode"),
        ("bcrypt", "$2b$04$short", None, r"\$2a\$/\$2b\$/\$2y\$"),
        ("bcrypt", "$2x$04$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e", None, "2a"),
        ("bcrypt", "5f4dcc3b5aa765d61d8327deb882cf99", None, "2a"),
        ("bcrypt", "$2b$31$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e", None, "cost"),
        ("bcrypt", "$2b$03$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e", None, "cost"),
        ("bcrypt", "$2b$04$abcdefghijklmnopqrstuuL5ZGrB6U0T8dL7VqzQH8/7QaQtxIw1e", "s", "no salt"),
    ],
)
def test_import_legacy_hash_rejects_malformed(
    kind: str, value: str, salt: str | bytes | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        import_legacy_hash(kind, value, salt)


def test_import_legacy_hash_rejects_non_str_value() -> None:
    with pytest.raises(ValueError, match="must be a str"):
        import_legacy_hash("md5", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="salt must be str or bytes"):
        import_legacy_hash("sha256", "0" * 64, 42)  # type: ignore[arg-type]


def test_hashes_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one slot, eight threads verifying at once never run two hashes together."""
    import threading
    import time

    from core import passwords as module

    hasher = Passwords("argon2id", argon2_time_cost=1, argon2_memory_cost=8)
    stored = hasher.hash("right")
    inside, most = 0, 0
    lock = threading.Lock()
    real = hasher._argon2.verify

    def watched(*args: object) -> bool:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.01)
        try:
            return real(*args)
        finally:
            with lock:
                inside -= 1

    class Watched:  # argon2's PasswordHasher has slots: wrap it
        verify = staticmethod(watched)

        def __getattr__(self, name: str) -> object:
            return getattr(real.__self__, name)

    monkeypatch.setattr(hasher, "_argon2", Watched())
    try:
        for slots, expected in ((1, 1), (3, 3)):
            assert module.limit_concurrency(slots) == slots
            most = 0
            threads = [threading.Thread(target=hasher.verify, args=(stored, "right"))
                       for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert most == expected
    finally:
        module.limit_concurrency(0)


def test_auto_slots_share_the_cores_among_web_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import passwords as module

    monkeypatch.setattr(module.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    assert module.auto_slots() == 4
    monkeypatch.setenv("WEB_CONCURRENCY", "16")
    assert module.auto_slots() == 1
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert module.auto_slots() == 8


def test_hashing_cpu_is_counted_apart_from_the_rest() -> None:
    """``idp_password_hash_cpu_seconds``: what sign-ins cost in hashing alone."""
    from prometheus_client import REGISTRY

    from core import passwords as module

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    pw = module.Passwords()
    stored = pw.hash("correct horse")
    hashes, cpu = sample("idp_password_hashes_total"), \
        sample("idp_password_hash_cpu_seconds_total")
    assert pw.verify(stored, "correct horse").ok
    assert not pw.verify(stored, "wrong horse").ok
    pw.dummy_verify("anything")
    assert sample("idp_password_hashes_total") == hashes + 3
    assert sample("idp_password_hash_cpu_seconds_total") - cpu > 0.003  # 3 x argon2id, 19 MiB
