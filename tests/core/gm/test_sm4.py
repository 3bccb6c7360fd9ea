"""SM4-GCM primitive and FieldCipher (field encryption at rest)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.gm.errors import DecryptionError, InvalidKeyError
from core.gm.sm4 import FieldCipher, sm4_gcm_decrypt, sm4_gcm_encrypt

KEY = bytes(range(16))
NONCE = bytes(12)

# RFC 8998 Appendix A.1 (SM4-GCM example).
RFC8998_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
RFC8998_IV = bytes.fromhex("00001234567800000000ABCD")
RFC8998_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
RFC8998_PLAINTEXT = bytes.fromhex(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
RFC8998_CIPHERTEXT = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
)
RFC8998_TAG = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")


def test_rfc8998_known_answer() -> None:
    sealed = sm4_gcm_encrypt(RFC8998_KEY, RFC8998_IV, RFC8998_PLAINTEXT, RFC8998_AAD)
    assert sealed == RFC8998_CIPHERTEXT + RFC8998_TAG
    assert sm4_gcm_decrypt(RFC8998_KEY, RFC8998_IV, sealed, RFC8998_AAD) == RFC8998_PLAINTEXT


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=2048), aad=st.binary(max_size=64))
def test_gcm_round_trip(plaintext: bytes, aad: bytes) -> None:
    sealed = sm4_gcm_encrypt(KEY, NONCE, plaintext, aad)
    assert len(sealed) == len(plaintext) + 16
    assert sm4_gcm_decrypt(KEY, NONCE, sealed, aad) == plaintext


@pytest.mark.parametrize(
    ("key", "nonce", "mangle", "aad"),
    [
        (bytes(16), NONCE, lambda d: d, b"aad"),  # wrong key
        (KEY, bytes([1]) + bytes(11), lambda d: d, b"aad"),  # wrong nonce
        (KEY, NONCE, lambda d: d, b"other"),  # wrong aad
        (KEY, NONCE, lambda d: bytes([d[0] ^ 1]) + d[1:], b"aad"),  # flipped ciphertext
        (KEY, NONCE, lambda d: d[:-1] + bytes([d[-1] ^ 1]), b"aad"),  # flipped tag
        (KEY, NONCE, lambda d: d[:-1], b"aad"),  # truncated
        (KEY, NONCE, lambda d: d[:15], b"aad"),  # shorter than a tag
    ],
)
def test_gcm_rejects(key: bytes, nonce: bytes, mangle, aad: bytes) -> None:
    sealed = sm4_gcm_encrypt(KEY, NONCE, b"secret national id", b"aad")
    with pytest.raises(DecryptionError):
        sm4_gcm_decrypt(key, nonce, mangle(sealed), aad)


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(17), bytes(32)])
def test_gcm_key_size(key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        sm4_gcm_encrypt(key, NONCE, b"x")


def test_gcm_nonce_size() -> None:
    with pytest.raises(ValueError, match="nonce"):
        sm4_gcm_encrypt(KEY, bytes(16), b"x")


# --------------------------------------------------------------------------- FieldCipher

K1, K2 = bytes([1]) * 16, bytes([2]) * 16
CONTEXT = b"person/national_id/42"


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher({"2024a": K1, "2025b": K2}, "2025b")


def test_field_round_trip(cipher: FieldCipher) -> None:
    token = cipher.encrypt("110101199003074514", context=CONTEXT)
    assert re.fullmatch(r"sm4gcm\.2025b\.[A-Za-z0-9_-]+", token)
    assert cipher.decrypt(token, context=CONTEXT) == b"110101199003074514"
    assert cipher.decrypt(cipher.encrypt(b"\x00\xff", context=CONTEXT), context=CONTEXT) == (
        b"\x00\xff"
    )


def test_field_nonces_are_fresh(cipher: FieldCipher) -> None:
    tokens = {cipher.encrypt("same", context=CONTEXT) for _ in range(50)}
    assert len(tokens) == 50


@settings(max_examples=50, deadline=None)
@given(
    value=st.text(max_size=200),
    row=st.integers(min_value=0, max_value=10**9),
    other_row=st.integers(min_value=0, max_value=10**9),
)
def test_field_value_moved_to_another_row_fails(value: str, row: int, other_row: int) -> None:
    cipher = FieldCipher({"k": K1}, "k")
    token = cipher.encrypt(value, context=f"person/national_id/{row}".encode())
    assert cipher.decrypt(token, context=f"person/national_id/{row}".encode()) == value.encode()
    if other_row != row:
        with pytest.raises(DecryptionError):
            cipher.decrypt(token, context=f"person/national_id/{other_row}".encode())
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, context=f"person/phone/{row}".encode())


def test_field_rotation(cipher: FieldCipher) -> None:
    old = FieldCipher({"2024a": K1}, "2024a").encrypt("v", context=CONTEXT)
    assert cipher.key_id_of(old) == "2024a"
    assert cipher.needs_rotation(old)
    assert cipher.decrypt(old, context=CONTEXT) == b"v"
    new = cipher.encrypt(cipher.decrypt(old, context=CONTEXT), context=CONTEXT)
    assert cipher.key_id_of(new) == "2025b"
    assert not cipher.needs_rotation(new)


def test_field_unknown_key_id(cipher: FieldCipher) -> None:
    token = FieldCipher({"retired": K1}, "retired").encrypt("v", context=CONTEXT)
    with pytest.raises(DecryptionError, match="key id"):
        cipher.decrypt(token, context=CONTEXT)


def test_field_key_id_swap_fails(cipher: FieldCipher) -> None:
    token = cipher.encrypt("v", context=CONTEXT)
    with pytest.raises(DecryptionError):
        cipher.decrypt(token.replace(".2025b.", ".2024a."), context=CONTEXT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "sm4gcm",
        "sm4gcm.2025b",
        "aesgcm.2025b.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sm4gcm.2025b.AAAA",  # too short for nonce + tag
        "sm4gcm.2025b.****",
        "sm4gcm.20 25.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sm4gcm.2025b.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
    ],
)
def test_field_malformed_tokens(cipher: FieldCipher, token: str) -> None:
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, context=CONTEXT)


def test_field_tampered_token(cipher: FieldCipher) -> None:
    token = cipher.encrypt("value", context=CONTEXT)
    last = "A" if token[-1] != "A" else "B"
    with pytest.raises(DecryptionError):
        cipher.decrypt(token[:-1] + last, context=CONTEXT)


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({"k": bytes(15)}, "k"),
        ({"k.1": K1}, "k.1"),
        ({"": K1}, ""),
        ({"k": K1}, "missing"),
    ],
)
def test_field_cipher_configuration(keys: dict[str, bytes], current: str) -> None:
    with pytest.raises(InvalidKeyError):
        FieldCipher(keys, current)


def test_field_cipher_never_shows_keys(cipher: FieldCipher) -> None:
    assert K1.hex() not in repr(cipher) and "\\x01" not in repr(cipher)
    with pytest.raises(DecryptionError) as raised:
        cipher.decrypt(cipher.encrypt("v", context=CONTEXT), context=b"other")
    assert K2.hex() not in str(raised.value)
