"""SM2 keys, strict verification, backends and serialisation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.gm import sm2
from core.gm.errors import GMError, InvalidKeyError
from core.gm.sm2 import (
    BACKEND_NAMES,
    DEFAULT_UID,
    N,
    SM2PrivateKey,
    SM2PublicKey,
    available_backends,
    get_backend,
    signature_from_der,
    signature_to_der,
)

OTHER_BACKEND = {"tongsuo": "gmssl", "gmssl": "tongsuo"}


def _require(name: str) -> str:
    if name not in available_backends():
        pytest.skip(f"SM2 backend {name} is not available here")
    return name


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> str:
    return _require(request.param)


# Keys are costly on gmssl; build them once per backend for the whole module.
_KEYS: dict[str, SM2PrivateKey] = {}


def key_for(backend: str) -> SM2PrivateKey:
    if backend not in _KEYS:
        _KEYS[backend] = SM2PrivateKey.generate(backend=backend)
    return _KEYS[backend]


def _raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --------------------------------------------------------------------------- strict verification

MESSAGE = b"header.payload"


def test_good_signature_verifies(backend: str) -> None:
    key = key_for(backend)
    assert key.public_key.verify(MESSAGE, key.sign(MESSAGE))


@pytest.mark.parametrize(
    ("case", "mangle"),
    [
        ("65 bytes", lambda sig: sig + b"\x00"),
        ("63 bytes", lambda sig: sig[:63]),
        ("empty", lambda sig: b""),
        ("128 bytes", lambda sig: sig + sig),
        ("r = 0", lambda sig: _raw(0, int.from_bytes(sig[32:], "big"))),
        ("s = 0", lambda sig: _raw(int.from_bytes(sig[:32], "big"), 0)),
        ("r = n", lambda sig: _raw(N, int.from_bytes(sig[32:], "big"))),
        ("s = n", lambda sig: _raw(int.from_bytes(sig[:32], "big"), N)),
        ("r = n + 1", lambda sig: _raw(N + 1, int.from_bytes(sig[32:], "big"))),
        ("r + s = n", lambda sig: _raw(1, N - 1)),
        ("all ones", lambda sig: b"\xff" * 64),
        ("flipped bit", lambda sig: sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]),
        ("swapped r s", lambda sig: sig[32:] + sig[:32]),
        ("DER encoded", lambda sig: signature_to_der(sig)),
        ("str", lambda sig: sig.hex()),
    ],
)
def test_bad_signatures_are_false_never_raise(backend: str, case: str, mangle) -> None:
    key = key_for(backend)
    signature = key.sign(MESSAGE)
    assert key.public_key.verify(MESSAGE, mangle(signature)) is False, case


def test_tampered_message_fails(backend: str) -> None:
    key = key_for(backend)
    signature = key.sign(MESSAGE)
    assert not key.public_key.verify(MESSAGE + b" ", signature)
    assert not key.public_key.verify(b"", signature)


def test_other_uid_fails(backend: str) -> None:
    key = key_for(backend)
    assert not key.public_key.verify(MESSAGE, key.sign(MESSAGE), uid=b"alice@example.edu")
    signed_for_alice = key.sign(MESSAGE, uid=b"alice@example.edu")
    assert key.public_key.verify(MESSAGE, signed_for_alice, uid=b"alice@example.edu")
    assert not key.public_key.verify(MESSAGE, signed_for_alice)


def test_other_key_fails(backend: str) -> None:
    other = SM2PrivateKey.generate(backend=backend)
    assert not other.public_key.verify(MESSAGE, key_for(backend).sign(MESSAGE))


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (0, 0),
        (sm2.GX, sm2.GY + 1),
        (sm2.GX + sm2.P, sm2.GY),  # on the curve only modulo p: not canonical
        (sm2.GX, sm2.P - sm2.GY + sm2.P),
        (-1, 1),
    ],
)
def test_public_point_not_on_curve_is_rejected(backend: str, x: int, y: int) -> None:
    with pytest.raises(InvalidKeyError):
        SM2PublicKey(x, y, backend=backend)


def test_point_encoding_must_be_uncompressed() -> None:
    key = key_for(available_backends()[0]).public_key
    assert SM2PublicKey.from_encoded_point(key.encoded_point()) == key
    with pytest.raises(InvalidKeyError):
        SM2PublicKey.from_encoded_point(b"\x02" + key.xy_bytes()[0])
    with pytest.raises(InvalidKeyError):
        SM2PublicKey.from_public_xy(b"\x01" * 31, b"\x01" * 32)


@pytest.mark.parametrize("d", [0, N - 1, N, N + 1, 2**256 - 1])
def test_private_scalar_out_of_range(d: int) -> None:
    with pytest.raises(InvalidKeyError, match="out of range"):
        SM2PrivateKey.from_private_bytes(d.to_bytes(32, "big"))


def test_private_bytes_must_be_32() -> None:
    for raw in (b"", b"\x01" * 31, b"\x01" * 33):
        with pytest.raises(InvalidKeyError):
            SM2PrivateKey.from_private_bytes(raw)


# --------------------------------------------------------------------------- PEM / DER


def test_pem_der_round_trip(backend: str) -> None:
    key = key_for(backend)
    assert SM2PrivateKey.from_pem(key.to_pem(), backend=backend) == key
    assert SM2PrivateKey.from_der(key.to_der(), backend=backend) == key
    assert SM2PublicKey.from_pem(key.public_key.to_pem()) == key.public_key
    assert SM2PublicKey.from_der(key.public_key.to_der()) == key.public_key
    assert key.to_pem().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert key.public_key.to_pem().startswith(b"-----BEGIN PUBLIC KEY-----\n")


def test_serialisation_is_byte_identical_to_tongsuo() -> None:
    _require("tongsuo")
    from tongsuopy.crypto import serialization as t_serialization
    from tongsuopy.crypto.asymciphers import ec as t_ec

    key = key_for("tongsuo")
    native = t_ec.derive_private_key(int.from_bytes(key.private_bytes(), "big"), t_ec.SM2())
    assert key.to_pem() == native.private_bytes(
        t_serialization.Encoding.PEM,
        t_serialization.PrivateFormat.PKCS8,
        t_serialization.NoEncryption(),
    )
    assert key.public_key.to_pem() == native.public_key().public_bytes(
        t_serialization.Encoding.PEM, t_serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _p256_pems() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


P256_PRIVATE, P256_PUBLIC = _p256_pems()
RSA_PUBLIC = (
    rsa.generate_private_key(public_exponent=65537, key_size=1024)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a key",
        b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ==\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        P256_PUBLIC,
        RSA_PUBLIC,
        P256_PRIVATE,
    ],
    ids=["empty", "text", "bad-b64", "truncated", "junk-der", "cert", "p256", "rsa", "private"],
)
def test_malformed_public_pem(pem: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        SM2PublicKey.from_pem(pem)


@pytest.mark.parametrize(
    "pem",
    [
        b"garbage",
        b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqBHM9V\n"
        b"-----END PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        P256_PRIVATE,
        P256_PUBLIC,
    ],
    ids=["text", "truncated", "encrypted", "p256", "public"],
)
def test_malformed_private_pem(pem: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        SM2PrivateKey.from_pem(pem)


def test_embedded_public_key_must_match() -> None:
    backend = available_backends()[0]
    key, other = key_for(backend), SM2PrivateKey.generate(backend=backend)
    # Swap the embedded public point (the last 65 bytes) for another key's.
    forged = key.to_der()[:-65] + other.public_key.encoded_point()
    with pytest.raises(InvalidKeyError, match="does not match"):
        SM2PrivateKey.from_der(forged)


def test_errors_and_repr_never_contain_key_material() -> None:
    key = key_for(available_backends()[0])
    secret_hex = key.private_bytes().hex()
    assert secret_hex not in repr(key).lower()
    try:
        SM2PrivateKey.from_private_bytes(key.private_bytes() + b"\x00")
    except InvalidKeyError as error:
        assert secret_hex not in str(error).lower()


# --------------------------------------------------------------------------- DER signatures


def test_signature_der_round_trip(backend: str) -> None:
    signature = key_for(backend).sign(MESSAGE)
    assert signature_from_der(signature_to_der(signature)) == signature
    with pytest.raises(ValueError):
        signature_from_der(b"\x30\x00garbage")
    with pytest.raises(ValueError):
        signature_to_der(signature[:-1])


# --------------------------------------------------------------------------- property tests


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    backend=st.sampled_from(BACKEND_NAMES),
    message=st.binary(max_size=512),
    uid=st.one_of(st.just(DEFAULT_UID), st.binary(max_size=40)),
)
def test_sign_verify_round_trip(backend: str, message: bytes, uid: bytes) -> None:
    if backend not in available_backends():
        return
    key = key_for(backend)
    signature = key.sign(message, uid=uid)
    assert len(signature) == 64
    assert key.public_key.verify(message, signature, uid=uid)
    assert not key.public_key.verify(message + b"\x00", signature, uid=uid)


# --------------------------------------------------------------------------- cross-backend


@pytest.mark.parametrize("signer", BACKEND_NAMES)
@pytest.mark.parametrize("uid", [DEFAULT_UID, b"", b"teacher-0042@edu.example"])
def test_cross_backend(signer: str, uid: bytes) -> None:
    verifier = _require(OTHER_BACKEND[signer])
    key = key_for(_require(signer))
    signature = key.sign(MESSAGE, uid=uid)
    other_side = key.public_key.with_backend(verifier)
    assert other_side.verify(MESSAGE, signature, uid=uid)
    assert not other_side.verify(MESSAGE + b"!", signature, uid=uid)


def test_same_key_derives_same_public_point_on_both_backends() -> None:
    for name in BACKEND_NAMES:
        _require(name)
    raw = key_for("tongsuo").private_bytes()
    assert (
        SM2PrivateKey.from_private_bytes(raw, backend="gmssl").public_key
        == key_for("tongsuo").public_key
    )


# --------------------------------------------------------------------------- backend choice


def test_backend_selection_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_SM2_BACKEND", "gmssl")
    assert sm2.active_backend() == "gmssl"
    assert SM2PrivateKey.generate().backend == "gmssl"
    monkeypatch.setenv("IDP_SM2_BACKEND", "auto")
    expected = "tongsuo" if "tongsuo" in available_backends() else "gmssl"
    assert sm2.active_backend() == expected
    monkeypatch.delenv("IDP_SM2_BACKEND")
    assert sm2.active_backend() == expected
    monkeypatch.setenv("IDP_SM2_BACKEND", "rot13")
    with pytest.raises(GMError, match="unknown SM2 backend"):
        sm2.active_backend()


def test_every_backend_passes_self_test() -> None:
    for name in available_backends():
        assert sm2.self_test(get_backend(name))


def test_native_backend_is_available() -> None:
    # tongsuopy is a declared dependency: its absence is an installation bug.
    assert "tongsuo" in available_backends()
