"""Native SM2 backend on ``tongsuopy`` (Tongsuo, an OpenSSL 1.1.1 fork).

Facts this module relies on (checked by ``core.gm.sm2.self_test`` at startup
and by tests/core/gm/test_vectors.py against GB/T 32918.5):

- A key built from numbers on ``ec.SM2()`` is an ``EVP_PKEY_SM2`` key, and
  ``key.sign(data, ec.ECDSA(hashes.SM3()))`` (``EVP_DigestSign``) computes
  ``e = SM3(Z_A || M)`` itself, with the *default* user id
  ``1234567812345678``: it verifies the published (r, s) of the standard's
  example. Signatures are DER; this module converts to and from raw r || s.
- tongsuopy has no API to set another user id (no ``EVP_PKEY_CTX_set1_id``
  binding). For a non-default uid we compute e ourselves
  (``core.gm.sm2.compute_e``) and sign/verify that digest with
  ``EVP_PKEY_sign`` / ``EVP_PKEY_verify``, which for SM2 keys treat their input
  as e. Those two calls go through tongsuopy's *private* cffi binding
  (``backend._lib``); the default-uid path uses only its public API.

Native key objects are created once per ``SM2PrivateKey``/``SM2PublicKey`` and
cached there; OpenSSL key objects are safe to share between threads for
signing and verifying.
"""

from __future__ import annotations

from typing import Any

from tongsuopy.backends.tongsuo.backend import backend as _openssl
from tongsuopy.crypto import hashes
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.exceptions import InvalidSignature

from core.gm.sm2 import DEFAULT_UID, compute_e, signature_from_der, signature_to_der

__all__ = ["BACKEND", "TongsuoBackend"]

_SM3_WITH_SM2 = ec.ECDSA(hashes.SM3())
_MAX_DER_SIGNATURE = 80  # SEQUENCE of two INTEGERs of at most 33 bytes each, plus headers


def _pkey_sign_digest(native: Any, e: bytes) -> bytes:
    lib, ffi = _openssl._lib, _openssl._ffi
    ctx = ffi.gc(lib.EVP_PKEY_CTX_new(native._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
    _openssl.openssl_assert(ctx != ffi.NULL)
    _openssl.openssl_assert(lib.EVP_PKEY_sign_init(ctx) == 1)
    size = ffi.new("size_t *", _MAX_DER_SIGNATURE)
    buffer = ffi.new("unsigned char[]", _MAX_DER_SIGNATURE)
    _openssl.openssl_assert(lib.EVP_PKEY_sign(ctx, buffer, size, e, len(e)) == 1)
    return ffi.buffer(buffer)[: size[0]]


def _pkey_verify_digest(native: Any, der: bytes, e: bytes) -> bool:
    lib, ffi = _openssl._lib, _openssl._ffi
    ctx = ffi.gc(lib.EVP_PKEY_CTX_new(native._evp_pkey, ffi.NULL), lib.EVP_PKEY_CTX_free)
    _openssl.openssl_assert(ctx != ffi.NULL)
    _openssl.openssl_assert(lib.EVP_PKEY_verify_init(ctx) == 1)
    result = lib.EVP_PKEY_verify(ctx, der, len(der), e, len(e))
    _openssl._consume_errors()
    return result == 1


class TongsuoBackend:
    name = "tongsuo"

    def derive_public(self, d: int) -> tuple[int, int]:
        numbers = ec.derive_private_key(d, ec.SM2()).public_key().public_numbers()
        return numbers.x, numbers.y

    def load_private(self, d: int, x: int, y: int) -> Any:
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SM2())
        return ec.EllipticCurvePrivateNumbers(d, public).private_key()

    def load_public(self, x: int, y: int) -> Any:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SM2()).public_key()

    def sign(self, native: Any, public_xy: tuple[int, int], message: bytes, uid: bytes) -> bytes:
        if uid == DEFAULT_UID:
            der = native.sign(message, _SM3_WITH_SM2)
        else:
            der = _pkey_sign_digest(native, compute_e(public_xy, message, uid))
        return signature_from_der(der)

    def verify(
        self,
        native: Any,
        public_xy: tuple[int, int],
        message: bytes,
        signature: bytes,
        uid: bytes,
    ) -> bool:
        der = signature_to_der(signature)
        if uid != DEFAULT_UID:
            return _pkey_verify_digest(native, der, compute_e(public_xy, message, uid))
        try:
            native.verify(der, message, _SM3_WITH_SM2)
        except InvalidSignature:
            return False
        return True


BACKEND = TongsuoBackend()
