"""Portable SM2 backend on ``gmssl.sm2.CryptSM2`` (pure Python, ~140 signs/s).

gmssl is the reference we can always install; this wrapper keeps its pitfalls
from reaching callers:

- Its default signing nonce comes from ``random`` (not a CSPRNG): we always
  pass k drawn with ``secrets``.
- Its constructor strips *every* leading ``"0"``/``"4"`` character of a public
  key that starts with ``"04"`` (``str.lstrip("04")``), corrupting keys whose x
  starts with those digits: we set ``public_key`` after construction.
- Its ``verify`` reads the first 128 hex digits and ignores the rest, and does
  not range-check r and s: ``core.gm.sm2`` checks length and 1 <= r, s < n
  before calling us.
- Its ``sign_with_sm3`` hard-codes the default user id: we compute
  ``e = SM3(Z_A || M)`` ourselves (``core.gm.sm2.compute_e``, OpenSSL SM3) for
  any uid and call the plain ``sign``/``verify`` on e.
"""

from __future__ import annotations

import secrets
from typing import Any

from gmssl.sm2 import CryptSM2

from core.gm.sm2 import GX, GY, N, compute_e

__all__ = ["BACKEND", "GmsslBackend"]

_GENERATOR_HEX = f"{GX:064x}{GY:064x}"


def _crypt(d: int | None, x: int, y: int) -> CryptSM2:
    crypt = CryptSM2(private_key=None if d is None else f"{d:064x}", public_key="")
    crypt.public_key = f"{x:064x}{y:064x}"  # after construction: see module docstring
    return crypt


class GmsslBackend:
    name = "gmssl"

    def derive_public(self, d: int) -> tuple[int, int]:
        # CryptSM2 has no public "derive public key"; _kg is its scalar multiplication.
        point = CryptSM2(private_key=None, public_key="")._kg(d, _GENERATOR_HEX)
        return int(point[:64], 16), int(point[64:], 16)

    def load_private(self, d: int, x: int, y: int) -> Any:
        return _crypt(d, x, y)

    def load_public(self, x: int, y: int) -> Any:
        return _crypt(None, x, y)

    def sign(self, native: Any, public_xy: tuple[int, int], message: bytes, uid: bytes) -> bytes:
        e = compute_e(public_xy, message, uid)
        while True:
            k = 1 + secrets.randbelow(N - 1)
            signature = native.sign(e, f"{k:064x}")
            if signature is not None:  # None: r = 0, r + k = n or s = 0; draw another k
                return bytes.fromhex(signature)

    def verify(
        self,
        native: Any,
        public_xy: tuple[int, int],
        message: bytes,
        signature: bytes,
        uid: bytes,
    ) -> bool:
        e = compute_e(public_xy, message, uid)
        try:
            return bool(native.verify(signature.hex(), e))
        except (TypeError, ValueError):
            # s*G + t*P at infinity makes gmssl index into None: not a valid signature.
            return False


BACKEND = GmsslBackend()
