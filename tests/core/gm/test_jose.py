"""JWS "SM2" and SM2 JWKs through joserfc; algorithm confusion must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    InvalidKeyCurveError,
    InvalidKeyIdError,
    InvalidKeyTypeError,
    JoseError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from core.gm.errors import InvalidKeyError
from core.gm.jose import (
    SM2Key,
    import_key_set,
    import_sm2_key,
    sign_jws,
    sm2_jwk_from_key,
    sm2_jwk_thumbprint,
    sm3_half_hash,
    verify_jws,
)
from core.gm.sm2 import BACKEND_NAMES, N, SM2PrivateKey, SM2PublicKey, available_backends
from core.gm.sm3 import sm3

PAYLOAD = json.dumps({"iss": "https://idp.edu.example", "sub": "t-0042"}).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(header: dict, payload: bytes, signature: bytes) -> str:
    head = b64(json.dumps(header, separators=(",", ":")).encode())
    return f"{head}.{b64(payload)}.{b64(signature)}"


@pytest.fixture(scope="module")
def key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048)


# --------------------------------------------------------------------------- round trips


def test_sign_and_verify_jws(key: SM2PrivateKey) -> None:
    token = sign_jws(PAYLOAD, key, {"kid": "k1", "typ": "JWT"})
    assert verify_jws(token, key.public_key) == PAYLOAD
    header = json.loads(unb64(token.split(".")[0]))
    assert header == {"kid": "k1", "typ": "JWT", "alg": "SM2"}


def test_signature_convention(key: SM2PrivateKey) -> None:
    """Raw 64-byte r || s over the JWS Signing Input, SM3 with Z_A(default id)."""
    token = sign_jws(PAYLOAD, key)
    head, body, signature = token.split(".")
    raw = unb64(signature)
    assert len(raw) == 64
    assert key.public_key.verify(f"{head}.{body}".encode("ascii"), raw)


@pytest.mark.parametrize("signer", BACKEND_NAMES)
def test_jws_across_backends(signer: str) -> None:
    if set(BACKEND_NAMES) - set(available_backends()):
        pytest.skip("needs both SM2 backends")
    verifier = next(name for name in BACKEND_NAMES if name != signer)
    private = SM2PrivateKey.generate(backend=signer)
    token = sign_jws(PAYLOAD, private)
    assert verify_jws(token, private.public_key.with_backend(verifier)) == PAYLOAD


def test_joserfc_compact_round_trip(key: SM2PrivateKey) -> None:
    private, public = SM2Key.import_key(key), SM2Key.import_key(key.public_key)
    token = jws.serialize_compact({"alg": "SM2"}, PAYLOAD, private, algorithms=["SM2"])
    assert jws.deserialize_compact(token, public, algorithms=["SM2"]).payload == PAYLOAD


def test_joserfc_jwt_round_trip(key: SM2PrivateKey) -> None:
    claims = {"iss": "https://idp.edu.example", "sub": "t-0042", "aud": "rp", "exp": 2**31}
    token = jwt.encode({"alg": "SM2", "kid": "k1"}, claims, SM2Key.import_key(key), ["SM2"])
    decoded = jwt.decode(token, SM2Key.import_key(key.public_key), algorithms=["SM2"])
    assert decoded.claims == claims
    assert decoded.header["alg"] == "SM2"


def test_sm2_is_opt_in(key: SM2PrivateKey) -> None:
    token = sign_jws(PAYLOAD, key)
    with pytest.raises(UnsupportedAlgorithmError):
        jws.deserialize_compact(token, SM2Key.import_key(key.public_key))


def test_tampered_payload_fails(key: SM2PrivateKey) -> None:
    head, _, signature = sign_jws(PAYLOAD, key).split(".")
    with pytest.raises(BadSignatureError):
        verify_jws(f"{head}.{b64(PAYLOAD + b' ')}.{signature}", key.public_key)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw + b"\x00",
        lambda raw: raw[:63],
        lambda raw: bytes(32) + raw[32:],
        lambda raw: raw[:32] + N.to_bytes(32, "big"),
        lambda raw: b"",
    ],
    ids=["65-bytes", "63-bytes", "r=0", "s=n", "empty"],
)
def test_malformed_signature_fails(key: SM2PrivateKey, mangle) -> None:
    head, body, signature = sign_jws(PAYLOAD, key).split(".")
    with pytest.raises(BadSignatureError):
        verify_jws(f"{head}.{body}.{b64(mangle(unb64(signature)))}", key.public_key)


# --------------------------------------------------------------------------- algorithm confusion


def test_rs256_token_for_sm2_key_is_rejected(key: SM2PrivateKey, rsa_key: RSAKey) -> None:
    token = jws.serialize_compact({"alg": "RS256"}, PAYLOAD, rsa_key)
    with pytest.raises(UnsupportedAlgorithmError):
        verify_jws(token, key.public_key)
    # Even where a caller allows both, an SM2 key never verifies RS256.
    with pytest.raises(InvalidKeyTypeError):
        jws.deserialize_compact(token, SM2Key.import_key(key.public_key), ["SM2", "RS256"])


def test_es256_token_for_sm2_key_is_rejected(key: SM2PrivateKey) -> None:
    token = jws.serialize_compact({"alg": "ES256"}, PAYLOAD, ECKey.generate_key("P-256"))
    with pytest.raises(UnsupportedAlgorithmError):
        verify_jws(token, key.public_key)
    with pytest.raises(InvalidKeyCurveError):
        jws.deserialize_compact(token, SM2Key.import_key(key.public_key), ["SM2", "ES256"])


def test_sm2_header_with_sm2_signature_but_p256_key_is_rejected(key: SM2PrivateKey) -> None:
    token = sign_jws(PAYLOAD, key)
    with pytest.raises(InvalidKeyCurveError):
        jws.deserialize_compact(token, ECKey.generate_key("P-256"), ["SM2"])


def test_alg_none_is_always_rejected(key: SM2PrivateKey) -> None:
    token = compact({"alg": "none"}, PAYLOAD, b"")
    with pytest.raises(UnsupportedAlgorithmError):
        verify_jws(token, key.public_key)
    forged = compact({"alg": "none"}, PAYLOAD, unb64(sign_jws(PAYLOAD, key).split(".")[2]))
    with pytest.raises(UnsupportedAlgorithmError):
        verify_jws(forged, key.public_key)


def test_hs256_with_public_key_bytes_is_rejected(key: SM2PrivateKey) -> None:
    public = key.public_key
    for secret in (public.to_pem(), public.to_der(), public.encoded_point()):
        head = b64(json.dumps({"alg": "HS256"}).encode())
        signing_input = f"{head}.{b64(PAYLOAD)}".encode()
        mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
        token = f"{signing_input.decode()}.{b64(mac)}"
        with pytest.raises(UnsupportedAlgorithmError):
            verify_jws(token, key.public_key)
        with pytest.raises(InvalidKeyTypeError):
            jws.deserialize_compact(token, SM2Key.import_key(key.public_key), ["SM2", "HS256"])


def test_sign_jws_only_signs_sm2(key: SM2PrivateKey) -> None:
    with pytest.raises(ValueError, match="SM2"):
        sign_jws(PAYLOAD, key, {"alg": "RS256"})


def test_sm2_algorithm_refuses_other_key_types(rsa_key: RSAKey) -> None:
    for other in (rsa_key, ECKey.generate_key("P-256"), OctKey.generate_key(256)):
        with pytest.raises(JoseError):
            jws.serialize_compact({"alg": "SM2"}, PAYLOAD, other, algorithms=["SM2"])


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_joserfc_still_works_for_standard_algorithms(rsa_key: RSAKey) -> None:
    for alg, private in (
        ("RS256", rsa_key),
        ("ES256", ECKey.generate_key("P-256")),
        ("EdDSA", OKPKey.generate_key("Ed25519")),
    ):
        token = jws.serialize_compact({"alg": alg}, PAYLOAD, private, algorithms=[alg])
        assert jws.deserialize_compact(token, private, algorithms=[alg]).payload == PAYLOAD
        claims = jwt.decode(jwt.encode({"alg": alg}, {"sub": "x"}, private, [alg]), private, [alg])
        assert claims.claims == {"sub": "x"}


# --------------------------------------------------------------------------- JWK


def test_jwk_form(key: SM2PrivateKey) -> None:
    jwk = sm2_jwk_from_key(key, kid="2025-01")
    assert jwk == {
        "kty": "EC",
        "crv": "SM2",
        "x": b64(key.public_key.xy_bytes()[0]),
        "y": b64(key.public_key.xy_bytes()[1]),
        "alg": "SM2",
        "use": "sig",
        "kid": "2025-01",
    }
    assert len(unb64(jwk["x"])) == len(unb64(jwk["y"])) == 32
    assert "d" not in jwk
    assert len(unb64(sm2_jwk_from_key(key, private=True)["d"])) == 32


def test_jwk_import_with_and_without_d(key: SM2PrivateKey) -> None:
    public = import_sm2_key(sm2_jwk_from_key(key))
    private = import_sm2_key(sm2_jwk_from_key(key, private=True))
    assert isinstance(public, SM2PublicKey) and public == key.public_key
    assert isinstance(private, SM2PrivateKey) and private == key
    assert SM2Key.import_key(sm2_jwk_from_key(key, private=True)).is_private
    assert not SM2Key.import_key(sm2_jwk_from_key(key)).is_private


def test_jwk_import_rejects_bad_members(key: SM2PrivateKey) -> None:
    good = sm2_jwk_from_key(key, private=True)
    other = sm2_jwk_from_key(SM2PrivateKey.generate(), private=True)
    x_bytes = unb64(good["x"])
    bad_cases = [
        {**good, "crv": "P-256"},
        {**good, "kty": "OKP"},
        {**good, "alg": "ES256"},
        {**good, "x": b64(x_bytes[1:])},
        {**good, "x": good["x"] + "A"},
        {**good, "x": "!!"},
        {**good, "x": b64(bytes(32))},
        {**good, "d": other["d"]},
        {**good, "d": b64(bytes(32))},
        {k: v for k, v in good.items() if k != "y"},
    ]
    for jwk in bad_cases:
        with pytest.raises(InvalidKeyError):
            import_sm2_key(jwk)


def test_thumbprint_rfc7638(key: SM2PrivateKey) -> None:
    jwk = sm2_jwk_from_key(key)
    canonical = json.dumps(
        {"crv": "SM2", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":")
    ).encode()
    assert sm2_jwk_thumbprint(jwk) == b64(hashlib.sha256(canonical).digest())
    assert sm2_jwk_thumbprint(key) == sm2_jwk_thumbprint(key.public_key) == jwk["kid"]
    assert sm2_jwk_thumbprint({**jwk, "kid": "x", "use": "enc"}) == jwk["kid"]
    assert sm2_jwk_thumbprint(jwk, "sm3") == b64(sm3(canonical))
    assert SM2Key.import_key(key.public_key).thumbprint() == jwk["kid"]


def test_sm2key_pem_der(key: SM2PrivateKey) -> None:
    wrapped = SM2Key.import_key(key)
    assert wrapped.as_pem(private=True) == key.to_pem()
    assert wrapped.as_pem() == key.public_key.to_pem()
    assert SM2Key.import_key(wrapped.as_der(private=True)).private_key == key
    assert SM2Key.import_key(wrapped.as_der()).public_key == key.public_key
    assert SM2Key.import_key(key.to_pem()).is_private


def test_sm3_half_hash() -> None:
    # SM3("abc") = 66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 ...
    assert sm3_half_hash("abc") == b64(bytes.fromhex("66c7f0f462eeedd9d1f2d46bdc10e4e2"))
    assert sm3_half_hash("abc") == "Zsfw9GLu7dnR8tRr3BDk4g"
    assert "=" not in sm3_half_hash("x" * 100)


# --------------------------------------------------------------------------- key sets


def test_key_set_selects_by_kid(key: SM2PrivateKey, rsa_key: RSAKey) -> None:
    other = SM2PrivateKey.generate()
    jwks = {
        "keys": [
            sm2_jwk_from_key(other),
            sm2_jwk_from_key(key),
            rsa_key.as_dict(),
            ECKey.generate_key("P-256").as_dict(),
            {"kty": "ML-DSA", "pub": "AAAA"},  # unknown kty: skipped per RFC 7517
        ]
    }
    keys = import_key_set(jwks)
    assert isinstance(keys, KeySet) and len(keys.keys) == 4
    kid = sm2_jwk_from_key(key)["kid"]
    assert verify_jws(sign_jws(PAYLOAD, key, {"kid": kid}), keys) == PAYLOAD
    with pytest.raises(InvalidKeyIdError):
        verify_jws(sign_jws(PAYLOAD, key, {"kid": "no-such-key"}), keys)
    with pytest.raises(BadSignatureError):
        verify_jws(sign_jws(PAYLOAD, key, {"kid": sm2_jwk_from_key(other)["kid"]}), keys)
    rsa_kid = rsa_key.thumbprint()
    with pytest.raises(InvalidKeyTypeError):
        verify_jws(sign_jws(PAYLOAD, key, {"kid": rsa_kid}), keys)


def test_key_set_needs_a_key() -> None:
    with pytest.raises(InvalidKeyError):
        import_key_set({"keys": [{"kty": "ML-DSA"}]})
