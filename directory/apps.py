"""The registry of school applications (OIDC clients; later CAS services, SAML SPs).

An ``App`` is registered by an org unit and approved before use. Its OIDC client
metadata follows RFC 7591 / OpenID Connect Dynamic Client Registration names
(``redirect_uris``, ``grant_types``, ``token_endpoint_auth_method``,
``id_token_signed_response_alg`` ...). Client secrets are generated here with
256 bits of entropy and stored only as ``HMAC-SM3(key, secret)``: checking one
costs a MAC, not a password hash, because the token endpoint checks it on every
request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.keyring import keyed_mac
from core.settings import Settings
from core.web.middleware import csp_source
from directory.sectors import check_pairwise, sector_of


class AppStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    suspended = "suspended"


AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
ID_TOKEN_ALGS = ("SM2", "RS256", "ES256", "EdDSA")
# What a client may sign its private_key_jwt assertions with: the ID-token algorithms and
# "Ed25519", RFC 9864's fully-specified name for EdDSA with Ed25519 (oauth4webapi 3 signs
# with it)
ASSERTION_ALGS = (*ID_TOKEN_ALGS, "Ed25519")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
ACCESS_TOKEN_FORMATS = ("jwt", "opaque")
LIST_MEMBERS = ("redirect_uris", "post_logout_redirect_uris", "grant_types", "response_types",
                "default_acr_values", "resource_identifiers", "resource_clients")
# Members that are the registry's own, not the app's to set in its metadata.
RESERVED_MEMBERS = frozenset({
    "client_id", "client_secret", "client_secret_mac", "client_secret_expires_at",
    "client_id_issued_at", "registration_access_token", "registration_client_uri",
    "client_name", "status", "first_party", "has_client_secret"})
CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}\Z")
DEFAULT_PORTS = {"https": 443, "http": 80}  # what a URL without a port means
TEXT_MEMBERS = ("scope", "token_endpoint_auth_method", "id_token_signed_response_alg",
                "access_token_signed_response_alg", "access_token_format", "subject_type",
                "userinfo_signed_response_alg", "request_object_signing_alg")


class App(Base):
    __tablename__ = "app"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    status: Mapped[str] = mapped_column(String(20), default=AppStatus.pending.value)
    # who decided the status last: the path of the console administrator's unit, "" the
    # operators (idp apps status), NULL nobody since registration
    status_set_at: Mapped[str | None] = mapped_column(String(400))
    # who registered it in the console ("account:<id>", the audit log's actor; NULL: the
    # operators): they never approve it themselves. Not a foreign key: erasing a departed
    # administrator must not take their unit's apps with them.
    registered_by: Mapped[str | None] = mapped_column(String(64))
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    client_secret_mac: Mapped[str | None] = mapped_column(String(64))
    # OIDC client metadata (RFC 7591 member names), JSON object
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Consent(Base):
    """Scopes a person granted to an app, and with which APIs (RFC 8707) it may use them;
    revocable, history kept by ``revoked_at``."""

    __tablename__ = "consent"
    __table_args__ = (UniqueConstraint("account_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    # JSON {API identifier: the scope values allowed for tokens for it}; NULL: none
    apis: Mapped[str | None] = mapped_column(Text)
    # JSON {API identifier: the client_id of the app that held it then}; NULL: none known
    api_owners: Mapped[str | None] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class ClientMetadata:
    """The parts of an app the OIDC provider reads on every request (immutable, cacheable)."""

    client_id: str
    name: str
    status: str
    first_party: bool
    client_secret_mac: str | None
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    response_types: tuple[str, ...] = ("code",)
    token_endpoint_auth_method: str = "client_secret_basic"
    token_endpoint_auth_signing_alg: str | None = None
    id_token_signed_response_alg: str = "RS256"
    access_token_format: str = "jwt"  # jwt (RFC 9068) | opaque
    access_token_signed_response_alg: str = "RS256"
    userinfo_signed_response_alg: str | None = None  # None: UserInfo answers plain JSON
    scope: str = "openid profile"
    jwks: dict[str, Any] | None = None
    subject_type: str = "public"
    sector_identifier_uri: str | None = None  # pairwise: the sector is its host
    # RFC 7662 2.1: a protected resource (an API, a gateway) may introspect the access
    # tokens of every app; any other client only its own tokens.
    protected_resource: bool = False
    # RFC 8707 (idp.oidc.resources): a protected resource's identifiers, its tokens' aud
    resource_identifiers: tuple[str, ...] = ()
    # OIDC Back-Channel Logout 1.0 (idp.oidc.backchannel_logout)
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    # OIDC Front-Channel Logout 1.0 (idp.oidc.frontchannel_logout)
    frontchannel_logout_uri: str | None = None
    frontchannel_logout_session_required: bool = False
    # RFC 9126 6: the authorization endpoint takes only this app's pushed requests
    require_pushed_authorization_requests: bool = False
    # RFC 9101 (idp.oidc.request_objects): the alg its request objects must be signed
    # with (None: any of ASSERTION_ALGS), and whether every request must be one
    request_object_signing_alg: str | None = None
    require_signed_request_object: bool = False
    # RFC 9449 5.2: every token request of this app must carry a DPoP proof
    dpop_bound_access_tokens: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def allowed_scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())

    @property
    def sector(self) -> str | None:
        return sector_of(self.subject_type, self.redirect_uris, self.sector_identifier_uri)

    def to_public_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_name": self.name,
                "redirect_uris": list(self.redirect_uris),
                "grant_types": list(self.grant_types),
                "token_endpoint_auth_method": self.token_endpoint_auth_method,
                "id_token_signed_response_alg": self.id_token_signed_response_alg,
                "scope": self.scope}


_FIELDS = {f for f in ClientMetadata.__dataclass_fields__} - {
    "client_id", "name", "status", "first_party", "client_secret_mac", "extra"}


def metadata_of(app: App) -> ClientMetadata:
    data = json.loads(app.metadata_json or "{}")
    known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in _FIELDS}
    extra = {k: v for k, v in data.items() if k not in _FIELDS}
    return ClientMetadata(client_id=app.client_id, name=app.name, status=app.status,
                          first_party=app.first_party, client_secret_mac=app.client_secret_mac,
                          extra=extra, **known)


def secret_mac(settings: Settings, secret: str) -> str:
    return keyed_mac(settings, "client-secret/v1", secret)


def check_secret(settings: Settings, client: ClientMetadata, secret: str) -> bool:
    if not client.client_secret_mac or len(secret) > 512:
        return False
    return hmac.compare_digest(client.client_secret_mac, secret_mac(settings, secret))


def _check_uri_text(member: str, uri: str) -> None:
    if not uri or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in uri) or len(uri) > 2000:
        raise ValueError(f"{member}: {uri!r} holds spaces or control characters")


def _check_backchannel_uri(uri: Any) -> None:
    """An http(s) URL without fragment that an HTTP client can send to (its host encodes
    as IDNA)."""
    import httpx

    member = "backchannel_logout_uri"
    if not isinstance(uri, str):
        raise ValueError(f"{member} must be an http(s) URL without fragment")
    _check_uri_text(member, uri)
    parts = urlsplit(uri)
    try:
        url = httpx.URL(uri)
        url.host.encode("idna")
    except (httpx.InvalidURL, ValueError):  # UnicodeError: a label empty or too long
        raise ValueError(f"{member}: {uri!r} is not a URL that can be called") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or "#" in uri:
        raise ValueError(f"{member} must be an http(s) URL without fragment")


def _check_frontchannel_uri(uri: Any, redirect_uris: list[str]) -> None:
    """Front-Channel Logout 1.0 section 2: an absolute http(s) URL without fragment whose
    scheme, host and port are those of a registered redirect URI (the browser loads it in
    a frame of the signed-out page)."""
    member = "frontchannel_logout_uri"
    if not isinstance(uri, str):
        raise ValueError(f"{member} must be an http(s) URL without fragment")
    _check_uri_text(member, uri)
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname or "#" in uri:
        raise ValueError(f"{member} must be an http(s) URL without fragment")
    if csp_source(uri) is None or parts.netloc.endswith(":"):  # the page's frame-src names it
        raise ValueError(f"{member}: {uri!r} has user info or a host a page cannot frame")
    if _origin(uri) not in {_origin(r) for r in redirect_uris}:
        raise ValueError(f"{member} must have the scheme, host and port of a redirect URI")


def _origin(uri: str) -> tuple[str, str, int | None]:
    parts = urlsplit(uri)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is no number
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


RESOURCE_MAX_LENGTH = 500
RESOURCE_IDENTIFIERS_MAX = 20
RESOURCE_CLIENTS_MAX = 500  # the apps that may ask for an API's tokens (none: every app)


# RFC 3986 3 (an absolute URI, no query, no fragment): ASCII only, "%" with two hex digits
_RESOURCE_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/@!$&'()*+,;=\[\]]|%[0-9A-Fa-f]{2})*")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def is_resource_identifier(value: str) -> bool:
    """An absolute URI (RFC 3986 4.3) without query or fragment; an http(s) one names a
    host, with a port that is a number when it names one."""
    if not value or len(value) > RESOURCE_MAX_LENGTH or not _RESOURCE_URI.fullmatch(value):
        return False
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError: a port that is no number, or out of range
    except ValueError:  # also a malformed IPv6 host
        return False
    if parts.scheme not in DEFAULT_PORTS:
        return True
    return bool(parts.hostname) and not parts.netloc.endswith(":") and (
        port is not None or ":" not in parts.netloc.rpartition("]")[2])


def normal_resource_identifier(value: str) -> str:
    """RFC 3986 6.2.2 and 6.2.3: the case of the scheme and host (and of a URN's NID),
    percent-encoding (unreserved characters decoded, hex in capitals), dot segments, a
    default or empty port, an http(s) URI's empty path. Two identifiers that differ only
    in these name the same API for a resource server that compares URIs."""
    parts = urlsplit(value)
    scheme, rest = parts.scheme.lower(), _normal_percent(value[len(parts.scheme) + 1:])
    if scheme == "urn":
        nid, _, nss = rest.partition(":")
        return f"urn:{nid.lower()}:{nss}"
    if scheme not in DEFAULT_PORTS:
        return f"{scheme}:{rest}"
    parts = urlsplit(f"{scheme}:{rest}")
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    port = parts.port if parts.port != DEFAULT_PORTS[scheme] else None
    user = f"{parts.netloc.rpartition('@')[0]}@" if "@" in parts.netloc else ""
    return f"{scheme}://{user}{host}{f':{port}' if port else ''}" + _without_dots(
        parts.path or "/")


def _normal_percent(text: str) -> str:
    def one(found: re.Match[str]) -> str:
        char = chr(int(found[1], 16))
        return char if char in _UNRESERVED else "%" + found[1].upper()

    return re.sub(r"%([0-9A-Fa-f]{2})", one, text)


def _without_dots(path: str) -> str:
    """RFC 3986 5.2.4, for an absolute path."""
    kept: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
        if segment in (".", "..") and index == len(segments) - 1:
            kept.append("")  # "/a/." is "/a/"
    return "/" + "/".join(kept)


def _check_resource_identifiers(data: dict[str, Any]) -> None:
    """RFC 8707 (``idp.oidc.resources``): an API's identifiers, the values apps send as
    ``resource`` and find in its tokens' ``aud``."""
    identifiers = data.get("resource_identifiers", [])
    if not identifiers:
        if data.get("resource_clients"):
            raise ValueError("resource_clients need resource_identifiers (an API)")
        return
    if data.get("protected_resource") is not True:
        raise ValueError("resource_identifiers need protected_resource: true (an API)")
    if len(identifiers) > RESOURCE_IDENTIFIERS_MAX or len(set(identifiers)) != len(identifiers):
        raise ValueError(f"resource_identifiers: at most {RESOURCE_IDENTIFIERS_MAX}, each once")
    clients = data.get("resource_clients", [])
    if len(clients) > RESOURCE_CLIENTS_MAX or not all(CLIENT_ID.fullmatch(c) for c in clients):
        raise ValueError(f"resource_clients: at most {RESOURCE_CLIENTS_MAX} client_ids")
    for identifier in identifiers:
        if not is_resource_identifier(identifier):
            raise ValueError(f"resource_identifiers: {identifier[:100]!r} is not an absolute "
                             "URI without query and fragment")
        if normal_resource_identifier(identifier) != identifier:
            raise ValueError(f"resource_identifiers: write {identifier[:100]!r} in its "
                             f"normal form, {normal_resource_identifier(identifier)[:100]!r}")


SIGNED_BY_US = ("id_token_signed_response_alg", "userinfo_signed_response_alg",
                "access_token_signed_response_alg")


def check_signing_algs(settings: Settings, metadata: dict[str, Any]) -> None:
    """ValueError when the app asks for tokens signed with an algorithm this deployment
    keeps no key for (``IDP_SIGNING_ALGS``): each of its sign-ins would fail."""
    for member in SIGNED_BY_US:  # absent: what ClientMetadata makes of it (RS256 / None)
        alg = metadata.get(member, ClientMetadata.__dataclass_fields__[member].default)
        if alg and alg not in settings.signing_algs:
            raise ValueError(f"{member}: this service signs with "
                             f"{', '.join(settings.signing_algs)} only (IDP_SIGNING_ALGS)")


def check_resource_identifiers_free(session: Session, settings: Settings,
                                    metadata: dict[str, Any],
                                    client_id: str | None = None) -> None:
    """Each identifier names one API: ValueError when another app (not ``client_id``)
    registered one of these, or one is the issuer (the audience of UserInfo's tokens)."""
    wanted = set(metadata.get("resource_identifiers", []))  # each in its normal form
    if normal_resource_identifier(settings.issuer) in wanted:
        raise ValueError("resource_identifiers: the issuer is this provider's own")
    for app, held in apis_with_identifiers(session):
        taken = wanted & set(held["resource_identifiers"])
        if taken and app.client_id != client_id:
            raise ValueError(f"resource_identifiers: {sorted(taken)[0][:100]!r} is another "
                             "app's")


def apis_with_identifiers(session: Session, *, approved_only: bool = False
                          ) -> Iterator[tuple[App, dict[str, Any]]]:
    """The apps whose metadata names ``resource_identifiers`` (RFC 8707 APIs), with their
    metadata: a text match narrows the rows, the JSON decides."""
    query = select(App).where(App.metadata_json.contains("resource_identifiers"))
    if approved_only:
        query = query.where(App.status == AppStatus.approved.value)
    for app in session.scalars(query):
        metadata = json.loads(app.metadata_json or "{}")
        if metadata.get("resource_identifiers"):
            yield app, metadata


MAX_AGE_LIMIT = 9_999_999_999  # what max_age may be at the authorization endpoint (10 digits)
MIN_RSA_BITS = 2048  # RFC 7518 3.3: "A key of size 2048 bits or larger MUST be used"
PRIVATE_KEY_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def rsa_bits(modulus: Any) -> int:
    """The size of an RSA JWK's ``n`` (0 when it cannot be read)."""
    try:
        return int.from_bytes(base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4)),
                              "big").bit_length()
    except (TypeError, ValueError, binascii.Error):
        return 0


def key_problem(jwk: Any) -> str | None:
    """Why a client's key cannot check its signatures, or None: ``jwks`` holds the client's
    *public* keys (RFC 7591 2), so no private members and no symmetric key, and an RSA key
    has at least 2048 bits (RFC 7518 3.3)."""
    if not isinstance(jwk, dict):
        return "a key must be a JSON object"
    if PRIVATE_KEY_MEMBERS & set(jwk) or jwk.get("kty") == "oct":
        return "a key holds private or symmetric key material: give public keys only"
    if jwk.get("kty") == "RSA" and rsa_bits(jwk.get("n")) < MIN_RSA_BITS:
        return f"an RSA key must have at least {MIN_RSA_BITS} bits"
    return None


def _check_jwks(jwks: Any) -> None:
    from core.gm import jose as gm_jose

    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError("jwks must be a JSON Web Key Set: {\"keys\": [...]}")
    for number, jwk in enumerate(jwks["keys"], 1):
        if problem := key_problem(jwk):
            raise ValueError(f"jwks: key {number}: {problem}")
    try:
        gm_jose.import_key_set(jwks)
    except Exception as exc:  # joserfc raises many kinds for a key it cannot read
        raise ValueError(f"jwks: a key cannot be read ({exc.__class__.__name__})") from None


def _check_request_object_metadata(data: dict[str, Any]) -> None:
    """RFC 9101: request objects are checked with the app's ``jwks`` (never a MAC: the
    client secret is kept as a keyed hash only)."""
    alg = data.get("request_object_signing_alg")
    if alg and alg not in ASSERTION_ALGS:
        raise ValueError(f"request_object_signing_alg must be one of {', '.join(ASSERTION_ALGS)}")
    if (alg or data.get("require_signed_request_object")) and not data.get("jwks"):
        raise ValueError("signed request objects need the client's public keys in jwks")


def validate_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """Check registration metadata; ValueError names the first bad member."""
    for member in LIST_MEMBERS:
        value = data.get(member, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{member} must be a list of strings")
    for member in TEXT_MEMBERS:
        if not isinstance(data.get(member, ""), str):
            raise ValueError(f"{member} must be a string")
    reserved = sorted(RESERVED_MEMBERS & set(data))
    if reserved:
        raise ValueError(f"{', '.join(reserved)}: set by the registry, not in metadata")
    if "jwks" in data:
        _check_jwks(data["jwks"])

    for member in ("redirect_uris", "post_logout_redirect_uris"):
        for uri in data.get(member, []):
            _check_uri_text(member, uri)
            parts = urlsplit(uri)
            if parts.scheme not in ("https", "http") and "." not in parts.scheme:
                raise ValueError(f"{member}: {uri!r} is not an http(s) URL or app scheme")
            if "#" in uri:  # RFC 6749 3.1.2, an empty fragment ("cb#") too
                raise ValueError(f"{member} must not contain a fragment")
    method = data.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ValueError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if data.get("id_token_signed_response_alg", "RS256") not in ID_TOKEN_ALGS:
        raise ValueError(f"id_token_signed_response_alg must be one of {', '.join(ID_TOKEN_ALGS)}")
    unknown = set(data.get("grant_types", [])) - set(GRANT_TYPES)
    if unknown:
        raise ValueError(f"grant_types not supported: {', '.join(sorted(unknown))}")
    if method == "private_key_jwt" and not data.get("jwks"):
        raise ValueError("private_key_jwt needs the client's public keys in jwks")
    if data.get("access_token_signed_response_alg", "RS256") not in ID_TOKEN_ALGS:
        raise ValueError("access_token_signed_response_alg must be one of "
                         f"{', '.join(ID_TOKEN_ALGS)}")
    if data.get("userinfo_signed_response_alg") and (
            data["userinfo_signed_response_alg"] not in ID_TOKEN_ALGS):  # "": plain JSON
        raise ValueError("userinfo_signed_response_alg must be one of "
                         f"{', '.join(ID_TOKEN_ALGS)}")
    if data.get("access_token_format", "jwt") not in ACCESS_TOKEN_FORMATS:
        raise ValueError("access_token_format must be jwt or opaque")
    max_age = data.get("default_max_age")  # OIDC Registration 2; the request's max_age wins
    if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool)
                                or not 0 <= max_age <= MAX_AGE_LIMIT):
        raise ValueError(f"default_max_age must be a number of seconds, 0 to {MAX_AGE_LIMIT}")
    for flag in ("protected_resource", "backchannel_logout_session_required",
                 "frontchannel_logout_session_required",
                 "require_pushed_authorization_requests", "require_signed_request_object",
                 "dpop_bound_access_tokens"):
        if not isinstance(data.get(flag, False), bool):
            raise ValueError(f"{flag} must be true or false")
    if "backchannel_logout_uri" in data:
        _check_backchannel_uri(data["backchannel_logout_uri"])
    if "frontchannel_logout_uri" in data:
        _check_frontchannel_uri(data["frontchannel_logout_uri"], data.get("redirect_uris", []))
    _check_request_object_metadata(data)
    _check_resource_identifiers(data)
    signing_alg = data.get("token_endpoint_auth_signing_alg")
    if signing_alg is not None and signing_alg not in ASSERTION_ALGS:
        raise ValueError(f"token_endpoint_auth_signing_alg must be one of "
                         f"{', '.join(ASSERTION_ALGS)}")
    if set(data.get("response_types", ["code"])) != {"code"}:
        raise ValueError("response_types: only code is supported")
    check_pairwise(data)
    unsupported = sorted(k for k in UNSUPPORTED_METADATA if data.get(k))  # false/[]: fine
    if unsupported:  # accepted silently, the app would believe it had them
        raise ValueError(f"not supported: {', '.join(unsupported)}")
    return data


# Registration metadata (OIDC Dynamic Client Registration 2) for features this provider
# does not offer: refused at registration rather than stored and ignored.
UNSUPPORTED_METADATA = frozenset({
    "jwks_uri", "introspection_signed_response_alg",
    "userinfo_encrypted_response_alg", "userinfo_encrypted_response_enc",
    "id_token_encrypted_response_alg", "id_token_encrypted_response_enc",
    "request_object_encryption_alg", "request_object_encryption_enc", "request_uris",
    "authorization_signed_response_alg",
    "authorization_encrypted_response_alg", "tls_client_certificate_bound_access_tokens"})


def register_app(
    session: Session, settings: Settings, *, name: str, metadata: dict[str, Any],
    client_id: str | None = None, status: AppStatus = AppStatus.approved,
    first_party: bool = False, org_unit_id: int | None = None,
) -> tuple[App, str | None]:
    """Register an app; return it and its client secret (shown once; None if public).

    An app that names no ``id_token_signed_response_alg`` gets the platform's default
    (``IDP_ID_TOKEN_ALG_DEFAULT``, SM2), written into its metadata."""
    metadata = {"id_token_signed_response_alg": settings.id_token_alg_default, **metadata}
    validate_metadata(metadata)
    check_signing_algs(settings, metadata)
    check_resource_identifiers_free(session, settings, metadata)
    secret = None
    if metadata.get("token_endpoint_auth_method", "client_secret_basic") in (
        "client_secret_basic", "client_secret_post"
    ):
        secret = secrets.token_urlsafe(32)  # 256 bits
    app = App(client_id=client_id or "app_" + secrets.token_hex(10), name=name,
              status=status.value, first_party=first_party, org_unit_id=org_unit_id,
              client_secret_mac=secret_mac(settings, secret) if secret else None,
              metadata_json=json.dumps(metadata, ensure_ascii=False, sort_keys=True))
    session.add(app)
    session.flush()
    return app, secret


def new_secret(settings: Settings, app: App) -> str:
    """Give a confidential app a new client secret; return it (shown once)."""
    secret = secrets.token_urlsafe(32)
    app.client_secret_mac = secret_mac(settings, secret)
    return secret


def find_app(session: Session, client_id: str, *, for_update: bool = False) -> App | None:
    """The app; ``for_update``: its row locked until the transaction ends (PostgreSQL),
    so that two changes to it are taken one after the other, each seeing the other's."""
    query = select(App).where(App.client_id == client_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalar(query)
