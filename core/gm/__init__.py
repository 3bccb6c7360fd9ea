"""National cryptography kernel: SM2, SM3, SM4 and their JOSE binding.

This package owns every use of the Chinese national algorithms in the identity
provider, and nothing else:

- ``core.gm.sm3``: SM3 digest, HMAC-SM3, PBKDF2-HMAC-SM3 (OpenSSL via hashlib
  or ``cryptography``).
- ``core.gm.sm4``: SM4-GCM and ``FieldCipher`` for field encryption at rest
  (``sm4gcm.<key_id>.<base64url>`` tokens bound to a row/column context).
- ``core.gm.sm2``: SM2 signatures (SM3, Z_A, raw r || s), key import/export
  compatible with OpenSSL, and the backend choice (``IDP_SM2_BACKEND``):
  ``core.gm.sm2_tongsuo`` (native) or ``core.gm.sm2_gmssl`` (pure Python).
- ``core.gm.jose``: the JWS algorithm ``"SM2"`` and ``crv: "SM2"`` JWKs for
  joserfc, plus ``sm3_half_hash`` for ``at_hash``/``c_hash``. Importing it
  registers the algorithm with joserfc; it is not imported here, so importing
  ``core.gm`` has no side effects on joserfc.
- ``core.gm.errors``: ``GMError``, ``InvalidKeyError``, ``DecryptionError``.
"""

from core.gm.errors import DecryptionError, GMError, InvalidKeyError
from core.gm.sm2 import (
    DEFAULT_UID,
    SM2PrivateKey,
    SM2PublicKey,
    active_backend,
    compute_e,
    compute_z,
    signature_from_der,
    signature_to_der,
)
from core.gm.sm3 import hmac_sm3, pbkdf2_sm3, sm3
from core.gm.sm4 import FieldCipher, sm4_gcm_decrypt, sm4_gcm_encrypt

__all__ = [
    "DEFAULT_UID",
    "DecryptionError",
    "FieldCipher",
    "GMError",
    "InvalidKeyError",
    "SM2PrivateKey",
    "SM2PublicKey",
    "active_backend",
    "compute_e",
    "compute_z",
    "hmac_sm3",
    "pbkdf2_sm3",
    "signature_from_der",
    "signature_to_der",
    "sm3",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
]
