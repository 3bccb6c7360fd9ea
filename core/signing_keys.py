"""Token signing keys (SM2, RS256, ES256, EdDSA): storage, rotation, JWKS, signing.

Life of a key, all derived from two timestamps per key and two settings:

- **pending**: created by ``idp keys rotate``; published in the JWKS for
  ``IDP_KEY_PUBLISH_SECONDS`` before it signs anything, so relying parties that
  cache the JWKS already know it when the first token arrives.
- **active**: the newest key of its algorithm whose ``active_from`` has passed.
- **retired**: replaced by a newer active key; still published for
  ``IDP_KEY_RETIRE_SECONDS`` after its successor took over (longer than any
  token it signed lives), then pruned.

The first key of an algorithm on a fresh installation is active at once (no
relying party can hold an older JWKS). ``kid`` is the RFC 7638 thumbprint.
Private keys are stored as private JWKs sealed with SM4-GCM under the master
key (``core.field_crypto``), bound to their kid.

:class:`KeyRing` is the in-process, read-mostly view: decrypted keys, the two
published JWKS documents and their ETags, reloaded every ``reload_seconds``.
Signing is a compact JWS built here directly (header and payload JSON, one
signature): it is the token endpoint's hot path.

Two JWKS documents exist because some standard JOSE libraries (joserfc 1.8,
hence authlib clients) reject a whole JWKS that contains a key with an unknown
``crv`` such as ``SM2``: ``standard`` holds RS256, ES256 and EdDSA keys only and
is the discovery ``jwks_uri``; ``all`` adds the SM2 keys for SM2-aware clients.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core import json_input
from core.db import Base, UTCDateTime, utcnow
from core.field_crypto import EncryptedColumn, field_cipher, register
from core.gm import jose as gm_jose
from core.gm.errors import GMError
from core.gm.sm4 import FieldCipher
from core.settings import Settings

log = logging.getLogger("idp.keys")
SM2 = "SM2"
STANDARD_ALGS = ("RS256", "ES256", "EdDSA")
ALL_ALGS = (SM2, *STANDARD_ALGS)


class SigningKey(Base):
    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10), index=True)
    public_jwk: Mapped[str] = mapped_column(Text)
    private_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    active_from: Mapped[datetime] = mapped_column(UTCDateTime())


PRIVATE_JWK = register(EncryptedColumn(SigningKey, "private_enc", "signing_key/private", "kid"))


def generate(alg: str) -> Any:
    """A new private joserfc key for ``alg``."""
    if alg == SM2:
        return gm_jose.SM2Key.generate_key(private=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, private=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", private=True)
    raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {', '.join(ALL_ALGS)}")


def _public_dict(key: Any, alg: str, kid: str) -> dict[str, str]:
    return {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}


def _import_private(alg: str, data: dict[str, Any]) -> Any:
    if alg == SM2:
        return gm_jose.SM2Key.import_key(data)
    return JWKRegistry.import_key(data)


def create_key(
    session: Session, settings: Settings, alg: str, *, active_from: datetime | None = None
) -> SigningKey:
    key = generate(alg)
    kid = key.thumbprint()  # RFC 7638 (SM2Key: crv, kty, x, y)
    row = SigningKey(
        kid=kid, alg=alg, created_at=utcnow(),
        public_jwk=json.dumps(_public_dict(key, alg, kid), sort_keys=True),
        active_from=active_from or utcnow(),
    )
    private = json.dumps(dict(key.as_dict(private=True)), sort_keys=True)
    row.private_enc = field_cipher(settings).encrypt(
        private, context=PRIVATE_JWK.associated_data(row)
    )
    session.add(row)
    session.flush()
    return row


def ensure_keys(session: Session, settings: Settings) -> list[SigningKey]:
    """Create an immediately active key for every algorithm that has none."""
    present = set(session.scalars(select(SigningKey.alg).distinct()))
    return [create_key(session, settings, alg) for alg in settings.signing_algs
            if alg not in present]


def rotate(session: Session, settings: Settings, alg: str) -> SigningKey:
    """Create the next key of ``alg``: published now, signing after the publish period."""
    starts = utcnow() + timedelta(seconds=settings.key_publish_seconds)
    return create_key(session, settings, alg, active_from=starts)


def revoke(session: Session, settings: Settings, kid: str) -> SigningKey | None:
    """Withdraw a key at once (its private key leaked): it leaves the JWKS and verifies
    nothing more, in every worker within its minute of key reload. When it was its
    algorithm's active key, a successor signs from now on (no publish period: waiting
    would leave the algorithm without a key, and relying parties fetch a JWKS again for
    an unknown ``kid``); that successor is returned. ``LookupError``: no such key."""
    row = session.get(SigningKey, kid)
    if row is None:
        raise LookupError(f"no signing key {kid}")
    rows = list(session.scalars(select(SigningKey).where(SigningKey.alg == row.alg)))
    known = statuses(rows, settings, utcnow())
    was_active = any(s.kid == kid and s.state == "active" for s in known)
    # A key's retirement runs from its successor's start: with this one gone (and a new
    # one starting now), an expired predecessor would count as retired again and come
    # back to the JWKS. Expired keys of the algorithm go with it.
    gone = {kid} | {s.kid for s in known if s.state == "expired"}
    for each in rows:
        if each.kid in gone:
            session.delete(each)
    session.flush()
    if was_active and row.alg in settings.signing_algs:
        return create_key(session, settings, row.alg)
    return None


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    alg: str
    state: str  # pending | active | retired | expired
    active_from: datetime
    retired_at: datetime | None
    published_until: datetime | None


def statuses(rows: list[SigningKey], settings: Settings, now: datetime) -> list[KeyStatus]:
    """Each key's state, derived from the ``active_from`` of it and its successor."""
    result = []
    retire_after = timedelta(seconds=settings.key_retire_seconds)
    by_alg: dict[str, list[SigningKey]] = {}
    for row in sorted(rows, key=lambda r: (r.active_from, r.created_at)):
        by_alg.setdefault(row.alg, []).append(row)
    for keys in by_alg.values():
        started = [k for k in keys if k.active_from <= now]
        current = started[-1] if started else None
        for index, row in enumerate(keys):
            successor = next((k for k in keys[index + 1:] if k.active_from <= now), None)
            retired_at = successor.active_from if successor else None
            until = retired_at + retire_after if retired_at else None
            if row.active_from > now:
                state = "pending"
            elif row is current:
                state = "active"
            else:
                state = "retired" if until and until > now else "expired"
            result.append(KeyStatus(row.kid, row.alg, state, row.active_from, retired_at, until))
    return result


def prune(session: Session, settings: Settings) -> list[str]:
    """Delete keys that are no longer published; return their kids."""
    rows = list(session.scalars(select(SigningKey)))
    expired = [s.kid for s in statuses(rows, settings, utcnow()) if s.state == "expired"]
    for row in rows:
        if row.kid in expired:
            session.delete(row)
    return expired


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64decode(part: str) -> bytes:
    """Strict base64url without padding (RFC 7515 2): one spelling per value, so a token
    has one text (no "=", no "+/", nothing skipped, no stray bits in the last character)."""
    if not _B64URL.fullmatch(part):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    if _b64(data) != part:
        raise ValueError("not canonical base64url")
    return data


def _jwks_document(public: list[dict[str, Any]]) -> tuple[bytes, str]:
    body = json.dumps({"keys": public}, separators=(",", ":"), sort_keys=True).encode()
    return body, '"' + hashlib.new("sm3", body).hexdigest()[:32] + '"'


@dataclass
class _Loaded:
    signing: dict[str, tuple[str, Any, str]]  # alg -> (kid, key, header prefix)
    verify: dict[str, tuple[str, Any]]  # kid -> (alg, key), every published key
    jwks: dict[str, tuple[bytes, str]]  # "standard" | "all" -> (body, etag)
    next_change: float  # monotonic time at which a pending key becomes active
    unreadable: list[str]  # kids of published keys the master keys do not open


def _open(cipher: FieldCipher, row: SigningKey) -> Any | None:
    """The private key of ``row``, or None (logged, never the key) when it cannot be
    opened: sealed under a master key this process does not have, or damaged."""
    try:
        private = json.loads(cipher.decrypt(row.private_enc,
                                            context=PRIVATE_JWK.associated_data(row)))
        return _import_private(row.alg, private)
    except (GMError, ValueError, TypeError, KeyError) as exc:
        if row.kid not in _REPORTED:  # once per process: reloads come every minute, and
            _REPORTED.add(row.kid)    # at once for any unknown kid a caller sends
            log.error("a signing key cannot be opened and is left out",
                      extra={"kid": row.kid, "alg": row.alg, "error": type(exc).__name__})
        return None


_REPORTED: set[str] = set()  # kids of unreadable keys already logged


class NoSigningKey(Exception):
    """No active key for the asked algorithm (run ``idp keys rotate``)."""


class KeyRing:
    """The keys of this process, reloaded from the database now and then."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], reload_seconds: float = 60
    ) -> None:
        self._settings, self._sessions, self._reload = settings, sessions, reload_seconds
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._loaded_at = 0.0

    def _state(self) -> _Loaded:
        now = time.monotonic()
        loaded = self._loaded
        if loaded is None or now - self._loaded_at > self._reload or now >= loaded.next_change:
            with self._lock:
                if self._loaded is loaded:
                    self._loaded, self._loaded_at = self._load(), time.monotonic()
            loaded = self._loaded
        assert loaded is not None
        return loaded

    def reload(self) -> None:
        with self._lock:
            self._loaded, self._loaded_at = self._load(), time.monotonic()

    def _load(self) -> _Loaded:
        with self._sessions() as session:
            rows = list(session.scalars(select(SigningKey)))
        now = utcnow()
        cipher = field_cipher(self._settings)
        signing: dict[str, tuple[str, Any, str]] = {}
        verify: dict[str, tuple[str, Any]] = {}
        public: list[dict[str, Any]] = []
        pending_starts = [r.active_from for r in rows if r.active_from > now]
        by_kid = {r.kid: r for r in rows}
        unreadable: list[str] = []
        for status in statuses(rows, self._settings, now):
            if status.state == "expired":
                continue
            row = by_kid[status.kid]
            key = _open(cipher, row)
            if key is None:
                unreadable.append(row.kid)  # left out: it neither signs nor verifies
                continue
            verify[row.kid] = (row.alg, key)
            public.append(json.loads(row.public_jwk))
            if status.state == "active":
                header = {"alg": row.alg, "kid": row.kid}
                signing[row.alg] = (row.kid, key, json.dumps(header, separators=(",", ":")))
        standard = [k for k in public if k.get("alg") != SM2]
        next_change = min(pending_starts, default=None)
        return _Loaded(
            signing, verify,
            {"standard": _jwks_document(standard), "all": _jwks_document(public)},
            time.monotonic() + (next_change - now).total_seconds() if next_change
            else float("inf"),
            unreadable,
        )

    def problem(self) -> str | None:
        """Why this process cannot serve, for the readiness check: keys that do not open,
        and among them the active key of RS256 or of the default ID-token algorithm
        (``IDP_ID_TOKEN_ALG_DEFAULT``), which most apps' tokens need (a wrong
        ``IDP_MASTER_KEY`` or id; a worker still on the old master key after keys were made
        under a new one); or None. Another algorithm's key that does not open is logged
        and left out: its apps get 503s, the others are served."""
        state = self._state()
        if not state.unreadable:
            return None
        needed = {"RS256", self._settings.id_token_alg_default} & set(self._settings.signing_algs)
        missing = sorted(alg for alg in needed if alg not in state.signing)
        if missing:
            return f"cannot sign {', '.join(missing)}: the master keys do not open its key"
        return None

    def jwks(self, which: str = "standard") -> tuple[bytes, str]:
        """The published JWKS (``standard`` or ``all``) as bytes, and its ETag."""
        return self._state().jwks[which]

    def has_active(self, alg: str) -> bool:
        return alg in self._state().signing

    def sign(self, payload: dict[str, Any], alg: str, typ: str | None = None) -> str:
        """A compact JWS of ``payload`` signed with the active key of ``alg``."""
        try:
            _kid, key, header = self._state().signing[alg]
        except KeyError:
            raise NoSigningKey(f"no active {alg} signing key; run: idp keys rotate {alg}") from None
        if typ:
            header = header[:-1] + f',"typ":"{typ}"}}'
        signing_input = (_b64(header.encode()) + "." + _b64(
            json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        )).encode()
        signature = JWSRegistry.algorithms[alg].sign(signing_input, key)
        return signing_input.decode() + "." + _b64(signature)

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(header, claims) of a compact JWS signed by one of our published keys, else None.

        The ``alg`` must be the key's own (no algorithm confusion); claims are not checked.
        """
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json_input.loads(_b64decode(header_b64))
            claims = json_input.loads(_b64decode(payload_b64))
            signature = _b64decode(signature_b64)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        found = self.verification_key(str(header.get("kid", "")))
        if found is None or found[0] != header.get("alg"):
            return None
        algorithm = JWSRegistry.algorithms[found[0]]
        if not algorithm.verify(f"{header_b64}.{payload_b64}".encode(), signature, found[1]):
            return None
        return header, claims

    def verification_key(self, kid: str) -> tuple[str, Any] | None:
        """(alg, key) of a published key, for checking our own tokens."""
        state = self._state()
        found = state.verify.get(kid)
        if found is None and time.monotonic() - self._loaded_at > 1:
            self.reload()  # a key created by another process moments ago
            found = self._state().verify.get(kid)
        return found
