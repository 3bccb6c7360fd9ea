"""SM4 block cipher (GB/T 32907-2016) in GCM mode, and field encryption at rest.

Primitive (``cryptography``/OpenSSL ``Cipher(algorithms.SM4(key), modes.GCM(iv))``):

- ``sm4_gcm_encrypt(key, nonce, plaintext, aad) -> ciphertext || tag`` with a
  16-byte key, a 12-byte nonce and a 16-byte tag appended.
- ``sm4_gcm_decrypt(key, nonce, data, aad) -> plaintext`` raising
  ``DecryptionError`` when the tag does not match.
- ``sm4_encrypt_block(key, block)``: one raw ECB block, *only* for checking the
  published GB/T 32907 vector. Never use it to protect data.

Field encryption (``FieldCipher``): each value is sealed into a compact,
self-describing token::

    sm4gcm.<key_id>.<base64url(nonce || ciphertext || tag), no padding>

The caller's ``context`` (e.g. ``b"person/national_id/42"``: table, column,
row id) is the GCM associated data, so a token copied to another row or column
fails to decrypt. Nonces are 12 random bytes from ``secrets``; with random
nonces a single key should seal well under 2**32 values, which is why tokens
carry their key id and ``needs_rotation`` exists.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core.gm.errors import DecryptionError, InvalidKeyError

__all__ = [
    "FIELD_SCHEME",
    "SM4_BLOCK_SIZE",
    "SM4_GCM_NONCE_SIZE",
    "SM4_GCM_TAG_SIZE",
    "SM4_KEY_SIZE",
    "FieldCipher",
    "sm4_encrypt_block",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
]

SM4_KEY_SIZE = 16
SM4_BLOCK_SIZE = 16
SM4_GCM_NONCE_SIZE = 12
SM4_GCM_TAG_SIZE = 16
FIELD_SCHEME = "sm4gcm"

_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != SM4_KEY_SIZE:
        raise InvalidKeyError(f"SM4 key must be {SM4_KEY_SIZE} bytes")


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != SM4_GCM_NONCE_SIZE:
        raise ValueError(f"SM4-GCM nonce must be {SM4_GCM_NONCE_SIZE} bytes")


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt with SM4-GCM; return ``ciphertext || tag`` (tag: 16 bytes)."""
    _check_key(key)
    return _gcm_encrypt(algorithms.SM4(bytes(key)), nonce, plaintext, aad)


def _gcm_encrypt(algorithm: algorithms.SM4, nonce: bytes, plaintext: bytes, aad: bytes
                 ) -> bytes:
    _check_nonce(nonce)
    encryptor = Cipher(algorithm, modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext + encryptor.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """Decrypt ``ciphertext || tag``; raise ``DecryptionError`` if it does not authenticate."""
    _check_key(key)
    _check_nonce(nonce)
    if len(data) < SM4_GCM_TAG_SIZE:
        raise DecryptionError("SM4-GCM data is shorter than its tag")
    ciphertext, tag = data[:-SM4_GCM_TAG_SIZE], data[-SM4_GCM_TAG_SIZE:]
    decryptor = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise DecryptionError(
            "SM4-GCM authentication failed (wrong key, wrong context or tampered data)"
        ) from None


def sm4_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Encrypt exactly one 16-byte block (raw ECB). For the published test vector only."""
    _check_key(key)
    if len(block) != SM4_BLOCK_SIZE:
        raise ValueError(f"SM4 block must be {SM4_BLOCK_SIZE} bytes")
    encryptor = Cipher(algorithms.SM4(bytes(key)), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FieldCipher:
    """Seal and open database field values with SM4-GCM under rotating keys.

    ``keys`` maps a key id (``[A-Za-z0-9_-]{1,64}``) to a 16-byte SM4 key;
    ``current_key_id`` names the key used by ``encrypt``. Older keys stay in the
    map so existing tokens still decrypt until re-encrypted.
    """

    __slots__ = ("_current_key_id", "_keys", "_sealing")

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise InvalidKeyError("field key id must match [A-Za-z0-9_-]{1,64}")
            _check_key(key)
        if current_key_id not in keys:
            raise InvalidKeyError("current key id is not among the configured keys")
        self._keys = {key_id: bytes(key) for key_id, key in keys.items()}
        self._current_key_id = current_key_id
        # The current key as a cipher algorithm, made once: bulk sealing (imports) is hot.
        self._sealing = algorithms.SM4(self._keys[current_key_id])

    def __reduce__(self) -> tuple:
        return FieldCipher, (self._keys, self._current_key_id)

    def __repr__(self) -> str:
        return f"FieldCipher(key_ids={sorted(self._keys)!r}, current={self._current_key_id!r})"

    @property
    def current_key_id(self) -> str:
        return self._current_key_id

    def encrypt(self, plaintext: str | bytes, *, context: bytes) -> str:
        """Seal ``plaintext`` (str is UTF-8 encoded) bound to ``context``; return a token."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
        nonce = secrets.token_bytes(SM4_GCM_NONCE_SIZE)
        sealed = _gcm_encrypt(self._sealing, nonce, data, context)
        return f"{FIELD_SCHEME}.{self._current_key_id}.{_b64url_encode(nonce + sealed)}"

    def decrypt(self, token: str, *, context: bytes) -> bytes:
        """Open a token made by ``encrypt`` with the same ``context``; raise ``DecryptionError``."""
        key_id, body = self._split(token)
        key = self._keys.get(key_id)
        if key is None:
            raise DecryptionError("field token names a key id that is not configured")
        nonce, sealed = body[:SM4_GCM_NONCE_SIZE], body[SM4_GCM_NONCE_SIZE:]
        return sm4_gcm_decrypt(key, nonce, sealed, context)

    def key_id_of(self, token: str) -> str:
        """Return the key id a token was sealed with (raises ``DecryptionError`` if malformed)."""
        return self._split(token)[0]

    def needs_rotation(self, token: str) -> bool:
        """True when the token was sealed under a key other than the current one."""
        return self.key_id_of(token) != self._current_key_id

    @staticmethod
    def _split(token: str) -> tuple[str, bytes]:
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != FIELD_SCHEME or not _KEY_ID.fullmatch(parts[1]):
            raise DecryptionError("not an sm4gcm field token")
        try:
            body = _b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            raise DecryptionError("field token body is not base64url") from None
        if len(body) < SM4_GCM_NONCE_SIZE + SM4_GCM_TAG_SIZE:
            raise DecryptionError("field token body is too short")
        return parts[1], body
