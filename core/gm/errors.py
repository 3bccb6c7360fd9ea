"""Exceptions raised by the national-cryptography kernel (``core.gm``).

Messages describe *what* went wrong, never *with what*: no key bytes, no
plaintext, no token contents are ever interpolated into an error message.
"""

from __future__ import annotations

__all__ = ["DecryptionError", "GMError", "InvalidKeyError"]


class GMError(Exception):
    """Base class for every error raised by ``core.gm``."""


class InvalidKeyError(GMError, ValueError):
    """A key is malformed, of the wrong size or type, or not on the SM2 curve."""


class DecryptionError(GMError):
    """Authenticated decryption failed: wrong key, wrong context, or tampered data."""
