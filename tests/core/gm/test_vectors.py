"""Every published vector in shared/vectors/gm.json, SM2 parts on both backends.

The vector file is found through ``IDP_GM_VECTORS`` or, by default, at
``<repo>/../shared/vectors/gm.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core.gm.sm2 import (
    BACKEND_NAMES,
    SM2PrivateKey,
    SM2PublicKey,
    available_backends,
    compute_e,
    compute_z,
    sign_digest_with_k,
)
from core.gm.sm3 import sm3
from core.gm.sm4 import sm4_encrypt_block

REPO = Path(__file__).resolve().parents[3]


def vectors_path() -> Path:
    """IDP_GM_VECTORS, else the shared copy beside the repo, else the copy kept in tests/data
    (the same published vectors, so a lone clone still runs them)."""
    override = os.environ.get("IDP_GM_VECTORS")
    if override:
        return Path(override)
    shared = REPO.parent / "shared" / "vectors" / "gm.json"
    return shared if shared.is_file() else REPO / "tests" / "data" / "gm.json"


def load_vectors() -> dict[str, Any]:
    path = vectors_path()
    if not path.is_file():
        raise FileNotFoundError(f"GM test vectors not found at {path}; set IDP_GM_VECTORS")
    return json.loads(path.read_text(encoding="utf-8"))


VECTORS = load_vectors()
SM2_SIGN = VECTORS["sm2_sign"]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param not in available_backends():
        pytest.skip(f"SM2 backend {request.param} is not available here")
    return request.param


@pytest.fixture
def vector_key(backend: str) -> SM2PrivateKey:
    return SM2PrivateKey.from_private_bytes(h(SM2_SIGN["private_key"]), backend=backend)


# --------------------------------------------------------------------------- curve


def test_curve_constants_match_the_standard() -> None:
    from core.gm import sm2

    curve = VECTORS["sm2_curve"]
    published = tuple(int(curve[name], 16) for name in ("p", "a", "b", "n", "gx", "gy"))
    assert published == (sm2.P, sm2.A, sm2.B, sm2.N, sm2.GX, sm2.GY)
    assert sm2.is_on_curve(sm2.GX, sm2.GY)


# --------------------------------------------------------------------------- SM3


@pytest.mark.parametrize("case", VECTORS["sm3"]["cases"], ids=lambda c: c["message_ascii"][:8])
def test_sm3(case: dict[str, str]) -> None:
    assert sm3(case["message_ascii"].encode("ascii")) == h(case["digest"])


# --------------------------------------------------------------------------- SM4


def test_sm4_single_block() -> None:
    sm4 = VECTORS["sm4"]
    assert sm4_encrypt_block(h(sm4["key"]), h(sm4["plaintext"])) == h(sm4["ciphertext"])


def test_sm4_one_million_encryptions() -> None:
    sm4 = VECTORS["sm4"]
    started = time.perf_counter()
    encryptor = Cipher(algorithms.SM4(h(sm4["key"])), modes.ECB()).encryptor()
    block = h(sm4["plaintext"])
    for _ in range(1_000_000):
        block = encryptor.update(block)
    elapsed = time.perf_counter() - started
    assert block == h(sm4["ciphertext_after_1000000_encryptions"])
    assert elapsed < 10, f"1,000,000 SM4 block encryptions took {elapsed:.1f} s"


# --------------------------------------------------------------------------- SM2


def test_sm2_public_key_derivation(vector_key: SM2PrivateKey) -> None:
    x, y = vector_key.public_key.xy_bytes()
    assert (x, y) == (h(SM2_SIGN["public_key_x"]), h(SM2_SIGN["public_key_y"]))


def test_sm2_z_a(vector_key: SM2PrivateKey) -> None:
    uid = SM2_SIGN["user_id_ascii"].encode("ascii")
    assert compute_z(vector_key.public_key.xy, uid) == h(SM2_SIGN["z_a"])


def test_sm2_e(vector_key: SM2PrivateKey) -> None:
    uid = SM2_SIGN["user_id_ascii"].encode("ascii")
    message = SM2_SIGN["message_ascii"].encode("ascii")
    assert compute_e(vector_key.public_key.xy, message, uid) == h(SM2_SIGN["e"])


def test_sm2_signature_with_fixed_k(vector_key: SM2PrivateKey) -> None:
    # No backend signs with a caller-chosen k; sign_digest_with_k reuses gmssl's
    # arithmetic on the key as loaded (and its public point derived) by `backend`.
    signature = sign_digest_with_k(vector_key, h(SM2_SIGN["e"]), int(SM2_SIGN["k"], 16))
    assert signature == h(SM2_SIGN["r"] + SM2_SIGN["s"])


def test_sm2_published_signature_verifies(backend: str) -> None:
    public = SM2PublicKey.from_public_xy(
        h(SM2_SIGN["public_key_x"]), h(SM2_SIGN["public_key_y"]), backend=backend
    )
    message = SM2_SIGN["message_ascii"].encode("ascii")
    uid = SM2_SIGN["user_id_ascii"].encode("ascii")
    signature = h(SM2_SIGN["r"] + SM2_SIGN["s"])
    assert public.verify(message, signature, uid)
    assert public.verify(message, signature)  # the vector uses the default id
    assert not public.verify(message + b".", signature, uid)
    assert not public.verify(message, signature, b"1234567812345679")


def test_sm2_own_signature_of_vector_message_verifies_everywhere(
    vector_key: SM2PrivateKey,
) -> None:
    message = SM2_SIGN["message_ascii"].encode("ascii")
    signature = vector_key.sign(message)
    for name in available_backends():
        assert vector_key.public_key.with_backend(name).verify(message, signature)


def test_tongsuo_digest_sign_applies_default_z_a() -> None:
    """tongsuopy's public API alone (EVP_DigestVerify on an SM2 key) hashes Z_A || M with
    the default id: it accepts the published (r, s) for the *message*, not for e."""
    if "tongsuo" not in available_backends():
        pytest.skip("SM2 backend tongsuo is not available here")
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from tongsuopy.crypto import hashes
    from tongsuopy.crypto.asymciphers import ec
    from tongsuopy.crypto.exceptions import InvalidSignature

    numbers = ec.EllipticCurvePublicNumbers(
        int(SM2_SIGN["public_key_x"], 16), int(SM2_SIGN["public_key_y"], 16), ec.SM2()
    )
    public = numbers.public_key()
    der = encode_dss_signature(int(SM2_SIGN["r"], 16), int(SM2_SIGN["s"], 16))
    public.verify(der, SM2_SIGN["message_ascii"].encode("ascii"), ec.ECDSA(hashes.SM3()))
    with pytest.raises(InvalidSignature):
        public.verify(der, h(SM2_SIGN["e"]), ec.ECDSA(hashes.SM3()))
