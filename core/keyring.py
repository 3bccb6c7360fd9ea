"""Keys derived from the master key, one per purpose.

The master key (``IDP_MASTER_KEY``) is the only secret an operator manages;
every other symmetric key is derived from it with HKDF over HMAC-SM3 and a
purpose label, so keys for different jobs are independent and a new master key
renews all of them. Labels are versioned (``csrf/v1``) so a purpose can rotate
on its own.
"""

from __future__ import annotations

import hmac
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings


def derive(master_key: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(
        algorithm=hashes.SM3(), length=length, salt=None, info=b"edu-idp/" + purpose.encode()
    ).derive(master_key)


@cache
def _derived(master_key: bytes, purpose: str, length: int) -> bytes:
    return derive(master_key, purpose, length)


def key_for(settings: Settings, purpose: str, length: int = 32) -> bytes:
    """The current key for ``purpose`` (cached per master key)."""
    return _derived(settings.master_key_bytes, purpose, length)


def keys_for(settings: Settings, purpose: str, length: int = 32) -> list[bytes]:
    """The key for ``purpose`` under the current master key, then under each old one
    (``IDP_OLD_MASTER_KEYS``): to recognise a MAC made before a master-key change."""
    masters = [settings.master_key_bytes, *settings.old_master_key_bytes.values()]
    return [_derived(master, purpose, length) for master in masters]


def keyed_mac(settings: Settings, purpose: str, value: str) -> str:
    """HMAC-SM3 (hex) of ``value`` under the key for ``purpose``: how high-entropy
    secrets (client secrets, refresh and API tokens, CSRF cookies) are stored or bound."""
    return hmac.new(key_for(settings, purpose), value.encode(), "sm3").hexdigest()
