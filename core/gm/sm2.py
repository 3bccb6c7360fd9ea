"""SM2 digital signatures (GB/T 32918.2-2016) and the choice of backend.

Conventions
-----------
- Curve: the recommended 256-bit curve of GB/T 32918.5 (constants below).
- Digest: ``e = SM3(Z_A || M)`` where
  ``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`` and
  ``ENTL_A`` is the *bit* length of ``ID_A`` as two big-endian bytes (``0x0080``
  for the default ID ``1234567812345678``, GM/T 0009).
- Signature value: raw ``r || s``, 32 bytes each, big-endian (64 bytes). DER
  (``SEQUENCE { INTEGER r, INTEGER s }``, what OpenSSL writes) converts with
  ``signature_to_der`` / ``signature_from_der``.
- Verification is strict and never raises for a bad signature: anything but
  exactly 64 bytes with ``1 <= r, s < n`` is ``False``. Malformed *keys* raise
  ``InvalidKeyError`` when they are parsed, so an ``SM2PublicKey`` always holds
  a point on the curve.
- Keys serialise like ``openssl genpkey -algorithm SM2``: PKCS#8 ``PRIVATE
  KEY`` / SubjectPublicKeyInfo ``PUBLIC KEY`` with algorithm ``id-ecPublicKey``
  and named curve ``1.2.156.10197.1.301``. SEC1 ``EC PRIVATE KEY`` is also
  read. Encrypted PEM is not (decrypt it with ``openssl pkey`` first).

Backends
--------
Signing and verification run in a backend (``SM2Backend``):

- ``tongsuo`` (``core.gm.sm2_tongsuo``): native, on tongsuopy; ~3,000 ops/s.
- ``gmssl`` (``core.gm.sm2_gmssl``): the portable pure-Python reference.

``IDP_SM2_BACKEND`` = ``auto`` (default: ``tongsuo`` if it imports and passes
the known-answer self-test, else ``gmssl``) | ``tongsuo`` | ``gmssl``. The
choice is made once per process (``active_backend()`` names it); every key may
also be bound to an explicit backend with ``backend="gmssl"`` etc.

Hand-written arithmetic here is limited to the on-curve equation check (one
line; neither backend exposes point validation for raw coordinates). Scalar
multiplication always comes from a backend; the fixed-``k`` signer used by the
published test vector (``sign_digest_with_k``) reuses gmssl's arithmetic.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
import re
import secrets
from typing import Any, Protocol

from Cryptodome.Util.asn1 import (
    DerBitString,
    DerObjectId,
    DerOctetString,
    DerSequence,
)
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from core.gm.errors import GMError, InvalidKeyError
from core.gm.sm3 import sm3

__all__ = [
    "BACKEND_ENV_VAR",
    "DEFAULT_UID",
    "SIGNATURE_SIZE",
    "SM2Backend",
    "SM2PrivateKey",
    "SM2PublicKey",
    "active_backend",
    "available_backends",
    "compute_e",
    "compute_z",
    "get_backend",
    "is_on_curve",
    "sign_digest_with_k",
    "signature_from_der",
    "signature_to_der",
]

log = logging.getLogger(__name__)

# GB/T 32918.5-2017, recommended curve parameters (cofactor h = 1).
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

COORDINATE_SIZE = 32
SIGNATURE_SIZE = 64
DEFAULT_UID = b"1234567812345678"

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2_CURVE = "1.2.156.10197.1.301"

BACKEND_ENV_VAR = "IDP_SM2_BACKEND"
BACKEND_NAMES = ("tongsuo", "gmssl")


# --------------------------------------------------------------------------- curve, Z_A, e


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(COORDINATE_SIZE, "big")


def is_on_curve(x: int, y: int) -> bool:
    """True if (x, y) is an affine point of the SM2 curve.

    Hand-written because the backends only validate points inside their own key
    objects. With cofactor 1 every such point is in the prime-order group, and
    the point at infinity has no affine form, so this is the whole public-key
    validation of GB/T 32918.1 section 6.2.
    """
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


_CURVE_BYTES = b"".join(_int_bytes(v) for v in (A, B, GX, GY))


def compute_z(public_xy: tuple[int, int], uid: bytes = DEFAULT_UID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)."""
    entl = len(uid) * 8
    if entl > 0xFFFF:
        raise ValueError("SM2 user id is longer than 8191 bytes")
    x, y = public_xy
    return sm3(entl.to_bytes(2, "big") + uid + _CURVE_BYTES + _int_bytes(x) + _int_bytes(y))


def compute_e(public_xy: tuple[int, int], message: bytes, uid: bytes = DEFAULT_UID) -> bytes:
    """The signed digest e = SM3(Z_A || M), 32 bytes."""
    return sm3(compute_z(public_xy, uid) + message)


# --------------------------------------------------------------------------- signature format


def signature_to_der(signature: bytes) -> bytes:
    """Raw 64-byte ``r || s`` -> DER ``SEQUENCE { r, s }`` (as OpenSSL writes it)."""
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError("SM2 signature must be 64 bytes (r || s)")
    r = int.from_bytes(signature[:COORDINATE_SIZE], "big")
    s = int.from_bytes(signature[COORDINATE_SIZE:], "big")
    return encode_dss_signature(r, s)


def signature_from_der(der: bytes) -> bytes:
    """DER ``SEQUENCE { r, s }`` -> raw 64-byte ``r || s``; ``ValueError`` if malformed."""
    r, s = decode_dss_signature(der)
    if not (0 <= r < 2**256 and 0 <= s < 2**256):
        raise ValueError("SM2 signature integers exceed 256 bits")
    return _int_bytes(r) + _int_bytes(s)


def _split_signature(signature: bytes) -> tuple[int, int] | None:
    """(r, s) if ``signature`` is exactly 64 bytes with 1 <= r, s < n, else None."""
    if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_SIZE:
        return None
    r = int.from_bytes(signature[:COORDINATE_SIZE], "big")
    s = int.from_bytes(signature[COORDINATE_SIZE:], "big")
    if not (1 <= r < N and 1 <= s < N):
        return None
    return r, s


# --------------------------------------------------------------------------- backends


class SM2Backend(Protocol):
    """What a backend provides. Inputs are already validated by this module."""

    name: str

    def derive_public(self, d: int) -> tuple[int, int]:
        """Public point d*G."""
        ...

    def load_private(self, d: int, x: int, y: int) -> Any:
        """Backend key object for signing, cached on the ``SM2PrivateKey``."""
        ...

    def load_public(self, x: int, y: int) -> Any:
        """Backend key object for verifying, cached on the ``SM2PublicKey``."""
        ...

    def sign(self, native: Any, public_xy: tuple[int, int], message: bytes, uid: bytes) -> bytes:
        """Raw 64-byte ``r || s`` over SM3(Z_A || message) with a fresh secret k."""
        ...

    def verify(
        self,
        native: Any,
        public_xy: tuple[int, int],
        message: bytes,
        signature: bytes,
        uid: bytes,
    ) -> bool:
        """Check a 64-byte signature whose r and s are already known to be in [1, n)."""
        ...


@functools.cache
def _load_backend(name: str) -> SM2Backend:
    if name == "tongsuo":
        from core.gm.sm2_tongsuo import BACKEND
    elif name == "gmssl":
        from core.gm.sm2_gmssl import BACKEND
    else:
        raise GMError(f"unknown SM2 backend {name!r} (expected one of {BACKEND_NAMES})")
    return BACKEND


# GB/T 32918.5-2017 signature example, used as the backends' known-answer test.
_KAT_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
_KAT_XY = (
    0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
    0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
)
_KAT_MESSAGE = b"message digest"
_KAT_SIGNATURE = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


def self_test(backend: SM2Backend) -> bool:
    """Known-answer test: the backend derives the published public key, verifies the
    published signature, rejects it for another message, and round-trips its own."""
    try:
        if backend.derive_public(_KAT_D) != _KAT_XY:
            return False
        public = backend.load_public(*_KAT_XY)
        private = backend.load_private(_KAT_D, *_KAT_XY)
        ok = backend.verify(public, _KAT_XY, _KAT_MESSAGE, _KAT_SIGNATURE, DEFAULT_UID)
        bad = backend.verify(public, _KAT_XY, b"message digesT", _KAT_SIGNATURE, DEFAULT_UID)
        own = backend.sign(private, _KAT_XY, _KAT_MESSAGE, DEFAULT_UID)
        return ok and not bad and backend.verify(public, _KAT_XY, _KAT_MESSAGE, own, DEFAULT_UID)
    except Exception:  # a broken native library must not take the process down
        log.exception("SM2 backend %s raised during its self-test", backend.name)
        return False


@functools.cache
def _checked_backend(name: str) -> SM2Backend:
    backend = _load_backend(name)
    if not self_test(backend):
        raise GMError(f"SM2 backend {name!r} failed its known-answer self-test")
    return backend


@functools.cache
def _auto_backend() -> SM2Backend:
    try:
        return _checked_backend("tongsuo")
    except (ImportError, GMError) as error:
        log.warning("native SM2 backend unavailable (%s); using pure-Python gmssl", error)
        return _checked_backend("gmssl")


def get_backend(name: str | None = None) -> SM2Backend:
    """Backend by name; ``None`` reads ``IDP_SM2_BACKEND`` (default ``auto``)."""
    if name is None:
        name = os.environ.get(BACKEND_ENV_VAR, "auto")
    name = name.strip().lower() or "auto"
    if name == "auto":
        return _auto_backend()
    if name not in BACKEND_NAMES:
        raise GMError(f"unknown SM2 backend {name!r} (expected auto or one of {BACKEND_NAMES})")
    try:
        return _checked_backend(name)
    except ImportError as error:
        raise GMError(f"SM2 backend {name!r} cannot be imported: {error}") from error


def active_backend() -> str:
    """Name of the backend that keys created without ``backend=`` use."""
    return get_backend().name


def available_backends() -> list[str]:
    """Backends that import and pass the self-test in this process."""
    names = []
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
        except GMError:
            continue
        names.append(name)
    return names


# --------------------------------------------------------------------------- DER / PEM


_PEM = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.+?)\r?\n-----END \1-----",
    re.DOTALL,
)


def _pem_decode(data: bytes | str) -> tuple[str, bytes]:
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    match = _PEM.search(data)
    if match is None:
        raise InvalidKeyError("not a PEM document")
    if b"Proc-Type:" in match.group(2):
        raise InvalidKeyError("encrypted PEM is not supported; decrypt it with `openssl pkey`")
    body = b"".join(match.group(2).split())
    try:
        return match.group(1).decode("ascii"), base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKeyError("PEM body is not valid base64") from None


def _pem_encode(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _algorithm_identifier() -> DerSequence:
    return DerSequence([DerObjectId(OID_EC_PUBLIC_KEY), DerObjectId(OID_SM2_CURVE)])


def _check_algorithm_identifier(der: bytes) -> None:
    algorithm = DerSequence().decode(der, nr_elements=2, strict=True)
    if DerObjectId().decode(algorithm[0], strict=True).value != OID_EC_PUBLIC_KEY:
        raise InvalidKeyError("key algorithm is not id-ecPublicKey")
    if DerObjectId().decode(algorithm[1], strict=True).value != OID_SM2_CURVE:
        raise InvalidKeyError("key curve is not SM2 (1.2.156.10197.1.301)")


def _decode_point(encoded: bytes) -> tuple[int, int]:
    if len(encoded) != 1 + 2 * COORDINATE_SIZE or encoded[0] != 0x04:
        raise InvalidKeyError("SM2 public point must be uncompressed (04 || x || y)")
    x = int.from_bytes(encoded[1 : 1 + COORDINATE_SIZE], "big")
    y = int.from_bytes(encoded[1 + COORDINATE_SIZE :], "big")
    return x, y


def _encode_spki(x: int, y: int) -> bytes:
    point = b"\x04" + _int_bytes(x) + _int_bytes(y)
    return DerSequence([_algorithm_identifier(), DerBitString(point)]).encode()


def _decode_spki(der: bytes) -> tuple[int, int]:
    spki = DerSequence().decode(der, nr_elements=2, strict=True)
    _check_algorithm_identifier(spki[0])
    return _decode_point(DerBitString().decode(spki[1], strict=True).value)


def _encode_ec_private_key(d: int, x: int, y: int) -> bytes:
    """SEC1 ECPrivateKey without parameters (they live in the PKCS#8 wrapper)."""
    point = b"\x04" + _int_bytes(x) + _int_bytes(y)
    return DerSequence([1, DerOctetString(_int_bytes(d)), DerBitString(point, explicit=1)]).encode()


def _decode_ec_private_key(der: bytes, *, need_curve: bool) -> tuple[int, tuple[int, int] | None]:
    """SEC1 ECPrivateKey -> (d, embedded public point or None)."""
    seq = DerSequence().decode(der, strict=True)
    if len(seq) < 2 or seq[0] != 1:
        raise InvalidKeyError("not an ECPrivateKey (version 1)")
    secret = DerOctetString().decode(seq[1], strict=True).payload
    if not 0 < len(secret) <= COORDINATE_SIZE:
        raise InvalidKeyError("SM2 private scalar must be at most 32 bytes")
    public: tuple[int, int] | None = None
    has_curve = False
    for item in seq[2:]:
        if item[0] == 0xA0:
            curve = DerObjectId(explicit=0).decode(item, strict=True).value
            if curve != OID_SM2_CURVE:
                raise InvalidKeyError("key curve is not SM2 (1.2.156.10197.1.301)")
            has_curve = True
        elif item[0] == 0xA1:
            public = _decode_point(DerBitString(explicit=1).decode(item, strict=True).value)
    if need_curve and not has_curve:
        raise InvalidKeyError("EC PRIVATE KEY does not name the SM2 curve")
    return int.from_bytes(secret, "big"), public


def _encode_pkcs8(d: int, x: int, y: int) -> bytes:
    inner = _encode_ec_private_key(d, x, y)
    return DerSequence([0, _algorithm_identifier(), DerOctetString(inner)]).encode()


def _decode_pkcs8(der: bytes) -> tuple[int, tuple[int, int] | None]:
    seq = DerSequence().decode(der, strict=True)
    if len(seq) < 3 or seq[0] not in (0, 1):
        raise InvalidKeyError("not a PKCS#8 PrivateKeyInfo")
    _check_algorithm_identifier(seq[1])
    inner = DerOctetString().decode(seq[2], strict=True).payload
    return _decode_ec_private_key(inner, need_curve=False)


# Cryptodome's DER decoder signals malformed input with these.
_DER_ERRORS = (ValueError, TypeError, IndexError, EOFError)


def _parse_private_der(der: bytes) -> tuple[int, tuple[int, int] | None]:
    try:
        return _decode_pkcs8(der)
    except InvalidKeyError:
        raise
    except _DER_ERRORS:
        pass
    try:
        return _decode_ec_private_key(der, need_curve=True)
    except InvalidKeyError:
        raise
    except _DER_ERRORS:
        raise InvalidKeyError("not a PKCS#8 or SEC1 SM2 private key") from None


# --------------------------------------------------------------------------- keys


def _coordinate(value: bytes | int, what: str) -> int:
    if isinstance(value, int):
        return value
    if len(value) != COORDINATE_SIZE:
        raise InvalidKeyError(f"SM2 {what} must be {COORDINATE_SIZE} bytes")
    return int.from_bytes(value, "big")


class SM2PublicKey:
    """An SM2 public key (a validated curve point) bound to a backend."""

    __slots__ = ("_backend", "_native", "x", "y")

    def __init__(self, x: int, y: int, *, backend: str | None = None) -> None:
        if not is_on_curve(x, y):
            raise InvalidKeyError("SM2 public key is not a point on the SM2 curve")
        self.x = x
        self.y = y
        self._backend = get_backend(backend)
        self._native: Any = None

    @classmethod
    def from_public_xy(
        cls, x: bytes | int, y: bytes | int, *, backend: str | None = None
    ) -> SM2PublicKey:
        """From affine coordinates (32-byte big-endian strings or ints)."""
        return cls(_coordinate(x, "x coordinate"), _coordinate(y, "y coordinate"), backend=backend)

    @classmethod
    def from_encoded_point(cls, data: bytes, *, backend: str | None = None) -> SM2PublicKey:
        """From the uncompressed point ``04 || x || y`` (65 bytes)."""
        return cls(*_decode_point(bytes(data)), backend=backend)

    @classmethod
    def from_der(cls, der: bytes, *, backend: str | None = None) -> SM2PublicKey:
        """From a DER SubjectPublicKeyInfo."""
        try:
            x, y = _decode_spki(bytes(der))
        except InvalidKeyError:
            raise
        except _DER_ERRORS:
            raise InvalidKeyError("not an SM2 SubjectPublicKeyInfo") from None
        return cls(x, y, backend=backend)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, backend: str | None = None) -> SM2PublicKey:
        """From a ``PUBLIC KEY`` PEM (``openssl pkey -pubout``)."""
        label, der = _pem_decode(pem)
        if label != "PUBLIC KEY":
            raise InvalidKeyError(f"expected a PUBLIC KEY PEM, got {label!r}")
        return cls.from_der(der, backend=backend)

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def xy(self) -> tuple[int, int]:
        return self.x, self.y

    def xy_bytes(self) -> tuple[bytes, bytes]:
        """(x, y) as 32-byte big-endian strings."""
        return _int_bytes(self.x), _int_bytes(self.y)

    def encoded_point(self) -> bytes:
        """Uncompressed point ``04 || x || y``."""
        return b"\x04" + _int_bytes(self.x) + _int_bytes(self.y)

    def to_der(self) -> bytes:
        return _encode_spki(self.x, self.y)

    def to_pem(self) -> bytes:
        return _pem_encode("PUBLIC KEY", self.to_der()).encode("ascii")

    def with_backend(self, backend: str) -> SM2PublicKey:
        return SM2PublicKey(self.x, self.y, backend=backend)

    def verify(self, message: bytes, signature: bytes, uid: bytes = DEFAULT_UID) -> bool:
        """True only for a valid 64-byte ``r || s`` over SM3(Z_A(uid) || message)."""
        if _split_signature(signature) is None:
            return False
        if self._native is None:
            self._native = self._backend.load_public(self.x, self.y)
        return self._backend.verify(
            self._native, (self.x, self.y), bytes(message), bytes(signature), bytes(uid)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SM2PublicKey):
            return NotImplemented
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"SM2PublicKey(x={self.x:064x}, backend={self.backend!r})"


class SM2PrivateKey:
    """An SM2 private key (scalar d in [1, n-2]) bound to a backend."""

    __slots__ = ("_backend", "_d", "_native", "_public_key")

    def __init__(
        self,
        d: int,
        *,
        backend: str | None = None,
        _public_xy: tuple[int, int] | None = None,
    ) -> None:
        # GB/T 32918.1 section 6.1: d in [1, n-2] (d = n-1 has no (1 + d)^-1).
        if not 1 <= d <= N - 2:
            raise InvalidKeyError("SM2 private key is out of range [1, n-2]")
        self._backend = get_backend(backend)
        self._d = d
        x, y = self._backend.derive_public(d)
        if _public_xy is not None and _public_xy != (x, y):
            raise InvalidKeyError("embedded public key does not match the private key")
        self._public_key = SM2PublicKey(x, y, backend=self._backend.name)
        self._native: Any = None

    @classmethod
    def generate(cls, *, backend: str | None = None) -> SM2PrivateKey:
        """A fresh key with d drawn uniformly from [1, n-2] by ``secrets``."""
        return cls(1 + secrets.randbelow(N - 2), backend=backend)

    @classmethod
    def from_private_bytes(cls, d: bytes, *, backend: str | None = None) -> SM2PrivateKey:
        """From the 32-byte big-endian private scalar."""
        if not isinstance(d, bytes | bytearray) or len(d) != COORDINATE_SIZE:
            raise InvalidKeyError(f"SM2 private key must be {COORDINATE_SIZE} bytes")
        return cls(int.from_bytes(d, "big"), backend=backend)

    @classmethod
    def from_der(cls, der: bytes, *, backend: str | None = None) -> SM2PrivateKey:
        """From DER PKCS#8 PrivateKeyInfo or SEC1 ECPrivateKey (naming the SM2 curve)."""
        d, public_xy = _parse_private_der(bytes(der))
        return cls(d, backend=backend, _public_xy=public_xy)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, backend: str | None = None) -> SM2PrivateKey:
        """From ``PRIVATE KEY`` (``openssl genpkey -algorithm SM2``) or ``EC PRIVATE KEY``."""
        label, der = _pem_decode(pem)
        if label == "ENCRYPTED PRIVATE KEY":
            raise InvalidKeyError("encrypted PKCS#8 is not supported; decrypt it first")
        if label not in ("PRIVATE KEY", "EC PRIVATE KEY"):
            raise InvalidKeyError(f"expected a PRIVATE KEY PEM, got {label!r}")
        return cls.from_der(der, backend=backend)

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def public_key(self) -> SM2PublicKey:
        return self._public_key

    def private_bytes(self) -> bytes:
        """The 32-byte big-endian private scalar. Handle with care."""
        return _int_bytes(self._d)

    def to_der(self) -> bytes:
        """DER PKCS#8 PrivateKeyInfo, byte-compatible with OpenSSL."""
        return _encode_pkcs8(self._d, self._public_key.x, self._public_key.y)

    def to_pem(self) -> bytes:
        return _pem_encode("PRIVATE KEY", self.to_der()).encode("ascii")

    def with_backend(self, backend: str) -> SM2PrivateKey:
        return SM2PrivateKey(self._d, backend=backend)

    def sign(self, message: bytes, uid: bytes = DEFAULT_UID) -> bytes:
        """Raw 64-byte ``r || s`` over SM3(Z_A(uid) || message), fresh random k."""
        if self._native is None:
            self._native = self._backend.load_private(self._d, *self._public_key.xy)
        return self._backend.sign(self._native, self._public_key.xy, bytes(message), bytes(uid))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SM2PrivateKey):
            return NotImplemented
        return secrets.compare_digest(self.private_bytes(), other.private_bytes())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        public_x = f"{self._public_key.x:064x}"
        return f"SM2PrivateKey(<private>, public_x={public_x}, backend={self.backend!r})"

    def __reduce__(self) -> Any:
        raise TypeError("SM2PrivateKey is not picklable")


def sign_digest_with_k(private_key: SM2PrivateKey, e: bytes, k: int) -> bytes:
    """Sign the digest ``e`` with a *caller-chosen* k. Test vectors only.

    A fixed or predictable k reveals the private key; production code signs with
    ``SM2PrivateKey.sign``. Uses gmssl's arithmetic (no backend accepts a k).
    """
    from gmssl.sm2 import CryptSM2

    if not 1 <= k < N:
        raise ValueError("k must be in [1, n-1]")
    signer = CryptSM2(private_key=private_key.private_bytes().hex(), public_key="")
    signature = signer.sign(e, f"{k:064x}")
    if signature is None:
        raise ValueError("this k yields r = 0, r + k = n or s = 0; choose another")
    return bytes.fromhex(signature)
