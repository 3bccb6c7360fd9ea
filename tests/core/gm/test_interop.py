"""Interop with third-party SM2 peers: the ``openssl`` CLI and npm ``sm-crypto``.

OpenSSL 3.0 invocations that work (the distinguishing id must be given
explicitly; without ``distid`` OpenSSL 3.0 does not verify our signatures)::

    openssl pkeyutl -sign   -rawin -digest sm3 -inkey priv.pem -in msg -out sig.der \\
        -pkeyopt distid:1234567812345678
    openssl pkeyutl -verify -rawin -digest sm3 -pubin -inkey pub.pem -in msg \\
        -sigfile sig.der -pkeyopt distid:1234567812345678
    openssl dgst -sm3 -verify pub.pem -sigopt distid:1234567812345678 -signature sig.der msg

sm-crypto runs in node through tests/interop/sm2_crypto.mjs; a missing
``node_modules`` is installed with ``npm ci`` (pinned by package-lock.json).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from core.gm.jose import sign_jws, verify_jws
from core.gm.sm2 import (
    BACKEND_NAMES,
    DEFAULT_UID,
    SM2PrivateKey,
    SM2PublicKey,
    available_backends,
    signature_from_der,
    signature_to_der,
)
from tests.interop import node

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[3]
INTEROP_DIR = REPO / "tests" / "interop"
DISTID = f"distid:{DEFAULT_UID.decode()}"
MESSAGE = b"eyJhbGciOiJTTTIifQ.eyJzdWIiOiJ0LTAwNDIifQ"
PAYLOAD = b'{"sub":"t-0042"}'
SM2_HEADER = b'{"alg":"SM2"}'


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param not in available_backends():
        pytest.skip(f"SM2 backend {request.param} is not available here")
    return request.param


# --------------------------------------------------------------------------- openssl


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("the openssl command line is not installed")
    return path


def run_openssl(openssl: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [openssl, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def openssl_verify(
    openssl: str,
    tmp_path: Path,
    public: SM2PublicKey,
    message: bytes,
    signature: bytes,
    distid: str = DISTID,
) -> bool:
    (tmp_path / "pub.pem").write_bytes(public.to_pem())
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig.der").write_bytes(signature_to_der(signature))
    pkeyutl = run_openssl(
        openssl,
        "pkeyutl",
        "-verify",
        "-rawin",
        "-digest",
        "sm3",
        "-pubin",
        "-inkey",
        tmp_path / "pub.pem",
        "-in",
        tmp_path / "msg",
        "-sigfile",
        tmp_path / "sig.der",
        "-pkeyopt",
        distid,
    )
    dgst = run_openssl(
        openssl,
        "dgst",
        "-sm3",
        "-verify",
        tmp_path / "pub.pem",
        "-sigopt",
        distid,
        "-signature",
        tmp_path / "sig.der",
        tmp_path / "msg",
    )
    assert (pkeyutl.returncode == 0) == (dgst.returncode == 0), (pkeyutl.stdout, dgst.stdout)
    if pkeyutl.returncode == 0:
        assert "Signature Verified Successfully" in pkeyutl.stdout
        assert "Verified OK" in dgst.stdout
    return pkeyutl.returncode == 0


def test_our_signature_verifies_in_openssl(openssl: str, tmp_path: Path, backend: str) -> None:
    key = SM2PrivateKey.generate(backend=backend)
    signature = key.sign(MESSAGE)
    assert openssl_verify(openssl, tmp_path, key.public_key, MESSAGE, signature)
    assert not openssl_verify(openssl, tmp_path, key.public_key, MESSAGE + b"x", signature)
    assert not openssl_verify(
        openssl, tmp_path, key.public_key, MESSAGE, signature, "distid:1234567812345679"
    )


def test_our_non_default_uid_verifies_in_openssl(
    openssl: str, tmp_path: Path, backend: str
) -> None:
    key = SM2PrivateKey.generate(backend=backend)
    signature = key.sign(MESSAGE, uid=b"teacher-0042@edu.example")
    assert openssl_verify(
        openssl, tmp_path, key.public_key, MESSAGE, signature, "distid:teacher-0042@edu.example"
    )
    assert not openssl_verify(openssl, tmp_path, key.public_key, MESSAGE, signature)


def test_openssl_key_and_signature_verify_with_us(
    openssl: str, tmp_path: Path, backend: str
) -> None:
    priv_pem, pub_pem = tmp_path / "priv.pem", tmp_path / "pub.pem"
    assert run_openssl(openssl, "genpkey", "-algorithm", "SM2", "-out", priv_pem).returncode == 0
    assert run_openssl(openssl, "pkey", "-in", priv_pem, "-pubout", "-out", pub_pem).returncode == 0
    private = SM2PrivateKey.from_pem(priv_pem.read_bytes(), backend=backend)
    public = SM2PublicKey.from_pem(pub_pem.read_bytes(), backend=backend)
    assert private.public_key == public
    assert private.to_pem() == priv_pem.read_bytes()  # byte-identical PKCS#8
    assert public.to_pem() == pub_pem.read_bytes()

    (tmp_path / "msg").write_bytes(MESSAGE)
    signed = run_openssl(
        openssl,
        "pkeyutl",
        "-sign",
        "-rawin",
        "-digest",
        "sm3",
        "-inkey",
        priv_pem,
        "-in",
        tmp_path / "msg",
        "-out",
        tmp_path / "sig.der",
        "-pkeyopt",
        DISTID,
    )
    assert signed.returncode == 0, signed.stderr
    signature = signature_from_der((tmp_path / "sig.der").read_bytes())
    assert public.verify(MESSAGE, signature)
    assert not public.verify(MESSAGE + b"x", signature)
    assert not public.verify(MESSAGE, signature, uid=b"1234567812345679")


def test_openssl_reads_our_private_key(openssl: str, tmp_path: Path, backend: str) -> None:
    key = SM2PrivateKey.generate(backend=backend)
    (tmp_path / "priv.pem").write_bytes(key.to_pem())
    derived = run_openssl(openssl, "pkey", "-in", tmp_path / "priv.pem", "-pubout")
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.encode() == key.public_key.to_pem()


# --------------------------------------------------------------------------- sm-crypto (node)


def sm_crypto(request: dict) -> dict:
    return node.run_json("sm2_crypto.mjs", stdin=request)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def node_public(key: SM2PublicKey) -> str:
    return key.encoded_point().hex()


def test_our_jws_verifies_in_sm_crypto(backend: str) -> None:
    key = SM2PrivateKey.generate(backend=backend)
    head, body, signature = sign_jws(PAYLOAD, key).split(".")
    signing_input = f"{head}.{body}".encode()
    sig_hex = unb64(signature).hex()
    request = {
        "op": "verify",
        "msg_hex": signing_input.hex(),
        "signature": sig_hex,
        "public": node_public(key.public_key),
    }
    assert sm_crypto(request)["valid"] is True
    assert sm_crypto({**request, "msg_hex": (signing_input + b"x").hex()})["valid"] is False
    assert sm_crypto({**request, "user_id": "1234567812345679"})["valid"] is False


def test_sm_crypto_jws_verifies_with_us(backend: str) -> None:
    peer = sm_crypto({"op": "keypair"})
    public = SM2PublicKey.from_encoded_point(bytes.fromhex(peer["public"]), backend=backend)
    private = SM2PrivateKey.from_private_bytes(bytes.fromhex(peer["private"]), backend=backend)
    assert private.public_key == public

    signing_input = f"{b64(SM2_HEADER)}.{b64(PAYLOAD)}"
    signed = sm_crypto(
        {
            "op": "sign",
            "msg_hex": signing_input.encode().hex(),
            "private": peer["private"],
            "public": peer["public"],
        }
    )
    signature = bytes.fromhex(signed["signature"].rjust(128, "0"))
    assert verify_jws(f"{signing_input}.{b64(signature)}", public) == PAYLOAD
    assert not public.verify(signing_input.encode() + b"x", signature)
    assert not public.verify(signing_input.encode(), signature, uid=b"1234567812345679")

    other_uid = sm_crypto(
        {
            "op": "sign",
            "msg_hex": signing_input.encode().hex(),
            "private": peer["private"],
            "public": peer["public"],
            "user_id": "teacher-0042@edu.example",
        }
    )
    other_signature = bytes.fromhex(other_uid["signature"].rjust(128, "0"))
    assert public.verify(signing_input.encode(), other_signature, uid=b"teacher-0042@edu.example")
    assert not public.verify(signing_input.encode(), other_signature)
