"""JWS algorithm ``"SM2"`` and SM2 JSON Web Keys for joserfc 1.8.

Conventions
-----------
- JWS header ``"alg": "SM2"``. The signature is SM2 (GB/T 32918.2) over the
  JWS Signing Input ``ASCII(BASE64URL(header) || "." || BASE64URL(payload))``
  with SM3 and Z_A of the default user id ``1234567812345678``; its value is the
  raw 64-byte ``r || s``, base64url. Verifiers accept exactly 64 bytes with
  ``1 <= r, s < n`` (enforced in ``core.gm.sm2``).
- JWK: ``{"kty": "EC", "crv": "SM2", "x": ..., "y": ..., "alg": "SM2",
  "use": "sig", "kid": ...}``; x, y (and the private ``d``) are 32-byte
  big-endian base64url. The RFC 7638 thumbprint covers ``crv, kty, x, y``
  (SHA-256 unless another digest is asked for).
- ``at_hash`` / ``c_hash`` for SM2-signed ID tokens: ``sm3_half_hash``
  (left-most 128 bits of SM3, base64url without padding).

How this plugs into joserfc
---------------------------
joserfc's ``ECKey`` maps ``crv`` to ``cryptography`` curve classes, and
``cryptography`` has no SM2 curve, so ``ECKey`` cannot hold an SM2 key. We
therefore define ``SM2Key``, a subclass of ``ECKey`` (kty ``"EC"``, crv
``"SM2"``) whose raw value is a ``core.gm.sm2.SM2PrivateKey`` /
``SM2PublicKey`` and whose binding (``SM2KeyBinding``) converts JWK dicts and
PEM/DER. Subclassing ``ECKey`` is what lets joserfc's ``guess_key`` accept it.
``SM2Algorithm`` is registered with ``JWSRegistry.register`` as *not
recommended*, so joserfc only accepts ``"SM2"`` where the caller lists it in
``algorithms=[...]``; ``sign_jws``/``verify_jws`` always pass
``algorithms=["SM2"]``.

Algorithm confusion is closed on both sides: ``SM2Algorithm`` refuses any key
that is not an ``SM2Key``, and joserfc's own algorithms refuse an ``SM2Key``
(``ES*`` compare ``curve_name``; ``RS*``/``PS*``/``HS*``/``EdDSA`` compare
``kty``). ``"none"`` is never accepted by ``verify_jws``.

``JWKRegistry`` (``kty`` -> class) is left untouched, so ``JWKRegistry``
still imports ``"EC"`` JWKs as ``ECKey``; use ``import_sm2_key`` or
``import_key_set`` (which routes ``crv: "SM2"`` to ``SM2Key``) for SM2 JWKs.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any, Literal, Self

from joserfc import jws
from joserfc._keys import JWKRegistry, KeySet
from joserfc._rfc7517.models import NativeKeyBinding
from joserfc._rfc7518.ec_key import ECKey
from joserfc._rfc7638 import calculate_thumbprint
from joserfc.errors import (
    InvalidExchangeKeyError,
    InvalidKeyCurveError,
    InvalidKeyTypeError,
)
from joserfc.jwk import KeyFlexible
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

from core.gm.errors import InvalidKeyError
from core.gm.sm2 import COORDINATE_SIZE, SM2PrivateKey, SM2PublicKey
from core.gm.sm3 import sm3

__all__ = [
    "ALG",
    "CRV",
    "SM2_ALGORITHM",
    "SM2Algorithm",
    "SM2Key",
    "SM2KeyBinding",
    "as_sm2_key",
    "import_key_set",
    "import_sm2_key",
    "sign_jws",
    "sm2_jwk_from_key",
    "sm2_jwk_thumbprint",
    "sm3_half_hash",
    "verify_jws",
]

ALG = "SM2"
CRV = "SM2"
KTY = "EC"

AnySM2Key = SM2PrivateKey | SM2PublicKey


def _b64(data: bytes) -> str:
    return urlsafe_b64encode(data).decode("ascii")


def _b64_32(value: Any, member: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidKeyError(f"JWK member {member!r} must be a base64url string")
    try:
        data = urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidKeyError(f"JWK member {member!r} is not base64url") from None
    if len(data) != COORDINATE_SIZE:
        raise InvalidKeyError(f"JWK member {member!r} must encode {COORDINATE_SIZE} bytes")
    return data


# --------------------------------------------------------------------------- JWK <-> keys


def import_sm2_key(jwk: Mapping[str, Any], *, backend: str | None = None) -> AnySM2Key:
    """SM2 JWK dict -> ``SM2PrivateKey`` (when ``d`` is present) or ``SM2PublicKey``."""
    if jwk.get("kty") != KTY or jwk.get("crv") != CRV:
        raise InvalidKeyError('not an SM2 JWK (need "kty": "EC", "crv": "SM2")')
    if jwk.get("alg", ALG) != ALG:
        raise InvalidKeyError('SM2 JWK "alg" must be "SM2" when present')
    public = SM2PublicKey.from_public_xy(
        _b64_32(jwk.get("x"), "x"), _b64_32(jwk.get("y"), "y"), backend=backend
    )
    if "d" not in jwk:
        return public
    private = SM2PrivateKey.from_private_bytes(_b64_32(jwk["d"], "d"), backend=backend)
    if private.public_key != public:
        raise InvalidKeyError("JWK x/y do not match its private key d")
    return private


def _key_members(key: AnySM2Key, private: bool) -> dict[str, str]:
    public = key.public_key if isinstance(key, SM2PrivateKey) else key
    x, y = public.xy_bytes()
    members = {"kty": KTY, "crv": CRV, "x": _b64(x), "y": _b64(y)}
    if private:
        if not isinstance(key, SM2PrivateKey):
            raise ValueError("a public key has no private member d")
        members["d"] = _b64(key.private_bytes())
    return members


def sm2_jwk_thumbprint(
    jwk_or_key: Mapping[str, Any] | AnySM2Key,
    digest: Literal["sha256", "sha384", "sha512", "sm3"] = "sha256",
) -> str:
    """RFC 7638 thumbprint over ``crv, kty, x, y`` (base64url of the digest)."""
    if isinstance(jwk_or_key, SM2PrivateKey | SM2PublicKey):
        members: Mapping[str, Any] = _key_members(jwk_or_key, private=False)
    else:
        members = jwk_or_key
    required = {name: members[name] for name in ("crv", "kty", "x", "y")}
    return calculate_thumbprint(required, digest)  # type: ignore[arg-type]  # hashlib name


def sm2_jwk_from_key(
    key: AnySM2Key,
    *,
    kid: str | None = None,
    private: bool = False,
) -> dict[str, str]:
    """Public (or, with ``private=True``, private) SM2 JWK; ``kid`` defaults to the
    RFC 7638 SHA-256 thumbprint."""
    jwk = _key_members(key, private)
    jwk.update({"alg": ALG, "use": "sig", "kid": kid or sm2_jwk_thumbprint(key)})
    return jwk


# --------------------------------------------------------------------------- joserfc key type


class SM2KeyBinding(NativeKeyBinding):
    """Converts between joserfc's dict/bytes forms and ``core.gm.sm2`` keys."""

    @classmethod
    def convert_raw_key_to_dict(cls, raw_key: Any, private: bool) -> dict[str, str]:  # type: ignore[override]
        members = _key_members(raw_key, private)
        del members["kty"]  # joserfc adds kty itself
        return members

    @classmethod
    def import_from_dict(cls, value: Any) -> AnySM2Key:
        return import_sm2_key({"kty": KTY, **value})

    @classmethod
    def import_from_bytes(cls, value: bytes, password: str | bytes | None = None) -> AnySM2Key:
        if password is not None:
            raise InvalidKeyError("encrypted SM2 keys are not supported")
        if value.lstrip().startswith(b"-----BEGIN"):
            first_line = value.lstrip().split(b"\n", 1)[0]
            if b"PRIVATE KEY" in first_line:
                return SM2PrivateKey.from_pem(value)
            return SM2PublicKey.from_pem(value)
        try:
            return SM2PrivateKey.from_der(value)
        except InvalidKeyError:
            return SM2PublicKey.from_der(value)

    @staticmethod
    def as_bytes(  # type: ignore[override]
        key: SM2Key,
        encoding: Literal["PEM", "DER"] | None = None,
        private: bool = False,
        password: str | None = None,
    ) -> bytes:
        if password is not None:
            raise ValueError("encrypted SM2 key export is not supported")
        raw = key.private_key if private else key.public_key
        if raw is None:
            raise ValueError("This key is not a private key.")
        return raw.to_der() if encoding == "DER" else raw.to_pem()


class SM2Key(ECKey):
    """joserfc key type for SM2: ``kty`` "EC", ``crv`` "SM2"."""

    binding = SM2KeyBinding  # type: ignore[assignment]

    @property
    def is_private(self) -> bool:
        return isinstance(self.raw_value, SM2PrivateKey)

    @property  # type: ignore[override]
    def public_key(self) -> SM2PublicKey:  # type: ignore[override]
        raw = self.raw_value
        return raw.public_key if isinstance(raw, SM2PrivateKey) else raw  # type: ignore[return-value]

    @property
    def private_key(self) -> SM2PrivateKey | None:  # type: ignore[override]
        raw = self.raw_value
        return raw if isinstance(raw, SM2PrivateKey) else None

    @property
    def curve_name(self) -> str:
        return CRV

    @property
    def curve_key_size(self) -> int:
        return 256

    def exchange_derive_key(self, key: Any) -> bytes:
        raise InvalidExchangeKeyError("SM2 JWKs are for signatures only")

    @classmethod
    def import_key(  # type: ignore[override]
        cls,
        value: Any,
        parameters: Any = None,
        password: str | bytes | None = None,
    ) -> Self:
        """From an ``SM2PrivateKey``/``SM2PublicKey``, an SM2 JWK dict, or PEM/DER."""
        if isinstance(value, SM2PrivateKey | SM2PublicKey):
            return cls(value, value, parameters)  # type: ignore[arg-type]
        return super().import_key(value, parameters, password)

    @classmethod
    def generate_key(  # type: ignore[override]
        cls,
        crv: str | None = CRV,
        parameters: Any = None,
        private: bool = True,
        auto_kid: bool = False,
    ) -> Self:
        if crv not in (None, CRV):
            raise InvalidKeyCurveError(f"SM2Key only supports crv {CRV!r}")
        raw = SM2PrivateKey.generate()
        key = cls.import_key(raw if private else raw.public_key, parameters)
        if auto_kid:
            key.ensure_kid()
        return key


def as_sm2_key(key: SM2Key | AnySM2Key) -> SM2Key:
    """Wrap a ``core.gm.sm2`` key for joserfc (an ``SM2Key`` passes through)."""
    if isinstance(key, SM2Key):
        return key
    if isinstance(key, SM2PrivateKey | SM2PublicKey):
        return SM2Key.import_key(key)
    raise InvalidKeyError("expected an SM2 key")


# --------------------------------------------------------------------------- JWS algorithm


class SM2Algorithm(jws.JWSAlgModel):
    """JWS ``"SM2"``: SM2 with SM3 and the default user id, raw 64-byte r || s."""

    name = ALG
    description = "SM2 signature with SM3 (GB/T 32918.2, default user id 1234567812345678)"
    recommended = False  # only where the caller lists it in algorithms=[...]
    key_type = KTY
    algorithm_security = 256

    def check_key(self, key: Any) -> None:
        super().check_key(key)
        if not isinstance(key, SM2Key):
            raise InvalidKeyCurveError(f"Algorithm {ALG!r} requires an EC key with crv {CRV!r}")

    def sign(self, msg: bytes, key: SM2Key) -> bytes:
        return key.get_op_key("sign").sign(msg)

    def verify(self, msg: bytes, sig: bytes, key: SM2Key) -> bool:
        return key.get_op_key("verify").verify(msg, sig)


SM2_ALGORITHM = SM2Algorithm()
JWSRegistry.register(SM2_ALGORITHM)
KeySet.algorithm_keys[ALG] = [KTY]


def import_key_set(jwks: Mapping[str, Any]) -> KeySet:
    """A joserfc ``KeySet`` from a JWKS dict, with ``crv: "SM2"`` keys as ``SM2Key``.

    Keys whose ``kty`` joserfc does not know are skipped (RFC 7517 section 5).
    """
    keys: list[Any] = []
    for data in jwks.get("keys", []):
        if data.get("kty") == KTY and data.get("crv") == CRV:
            keys.append(SM2Key.import_key(dict(data)))
            continue
        try:
            keys.append(JWKRegistry.import_key(dict(data)))
        except InvalidKeyTypeError:
            continue
    if not keys:
        raise InvalidKeyError("JWKS contains no usable keys")
    return KeySet(keys)


# --------------------------------------------------------------------------- helpers


def sign_jws(
    payload: bytes,
    key: SM2Key | SM2PrivateKey,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Compact JWS with ``alg`` "SM2" over ``payload``; ``headers`` adds e.g. ``kid``, ``typ``."""
    protected = dict(headers or {})
    if protected.setdefault("alg", ALG) != ALG:
        raise ValueError('sign_jws only produces "alg": "SM2"')
    return jws.serialize_compact(protected, payload, as_sm2_key(key), algorithms=[ALG])


def verify_jws(token: str | bytes, key: SM2Key | AnySM2Key | KeySet) -> bytes:
    """Verify a compact JWS that must use ``alg`` "SM2"; return its payload.

    Raises a ``joserfc.errors.JoseError`` subclass (``BadSignatureError``,
    ``UnsupportedAlgorithmError`` for any other alg including "none",
    ``InvalidKeyIdError`` for an unknown kid in a ``KeySet``, ...).
    """
    resolved: KeyFlexible = key if isinstance(key, KeySet) else as_sm2_key(key)
    return jws.deserialize_compact(token, resolved, algorithms=[ALG]).payload


def sm3_half_hash(value: str) -> str:
    """OIDC ``at_hash``/``c_hash`` for SM2-signed tokens: base64url(left 128 bits of SM3)."""
    return _b64(sm3(value.encode("ascii"))[:16])
