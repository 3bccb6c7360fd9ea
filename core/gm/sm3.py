"""SM3 hash (GB/T 32905-2016) and the constructions built on it.

All three functions are thin wrappers over OpenSSL: ``hashlib`` when the
interpreter's OpenSSL exposes ``sm3``, otherwise ``cryptography``'s
``hashes.SM3`` (which always ships its own OpenSSL). Nothing here is a
hand-written compression function.

- ``sm3(data)``: 32-byte digest.
- ``hmac_sm3(key, data)``: HMAC (RFC 2104) with SM3, 32 bytes.
- ``pbkdf2_sm3(password, salt, iterations, length)``: PBKDF2 (RFC 8018) with
  HMAC-SM3 as the PRF.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

__all__ = ["SM3_DIGEST_SIZE", "hmac_sm3", "pbkdf2_sm3", "sm3"]

SM3_DIGEST_SIZE = 32


def _hashlib_has_sm3() -> bool:
    try:
        hashlib.new("sm3")
    except ValueError:
        return False
    return True


_HASHLIB_SM3 = _hashlib_has_sm3()


def sm3(data: bytes) -> bytes:
    """Return the SM3 digest of ``data``."""
    if _HASHLIB_SM3:
        return hashlib.new("sm3", data).digest()
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return HMAC-SM3(key, data)."""
    if _HASHLIB_SM3:
        return hmac.new(key, data, "sm3").digest()
    mac = crypto_hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def pbkdf2_sm3(password: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    """Derive ``length`` bytes with PBKDF2-HMAC-SM3."""
    if iterations < 1 or length < 1:
        raise ValueError("iterations and length must be positive")
    if _HASHLIB_SM3:
        return hashlib.pbkdf2_hmac("sm3", password, salt, iterations, length)
    kdf = PBKDF2HMAC(algorithm=hashes.SM3(), length=length, salt=salt, iterations=iterations)
    return kdf.derive(password)
