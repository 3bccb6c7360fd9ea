"""Service settings, read from ``IDP_*`` environment variables.

Defaults run locally with no other services: an SQLite file and the master key
under ``var/``, the in-process store. In ``production`` mode every secret must
be given explicitly and the service refuses to start without it.

Every problem is reported as a :class:`ConfigError` with a one-line message
that says what is wrong and how to fix it; the CLI prints it without a trace.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import os
import re
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "IDP_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Variables with our prefix that are not settings of the service itself.
# A comma-separated list in the environment (not JSON: NoDecode leaves the text to the
# field's own "before" validator, which splits it)
CommaList = Annotated[tuple[str, ...], NoDecode]
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a master key's id (core.gm.sm4's rule)
# The longest a token this service signs lives (idp.oidc.tokens: access and ID tokens);
# IDP_KEY_RETIRE_SECONDS may not be shorter (a test checks the two agree).
LONGEST_SIGNED_TOKEN_SECONDS = 3600


def _comma_list(value: object) -> object:
    """``"a, b"`` -> ``("a", "b")``; anything else as it is (for the field's own check)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value

_NOT_SETTINGS = {"IDP_TEST_DATABASE_URL", "IDP_TEST_REDIS_URL", "IDP_GM_VECTORS",
                 "IDP_FUZZ_EXAMPLES", "IDP_FUZZ_SEED", "IDP_SCREENSHOTS",
                 "IDP_BENCH_DATABASE_URL"}  # read by the tests and benchmarks, not the service


class ConfigError(Exception):
    """A setting is missing, unknown or malformed. The message is one line."""


class Mode(StrEnum):
    dev = "dev"
    production = "production"


class Settings(BaseSettings):
    """All settings of the service. Field ``x`` is read from ``IDP_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    mode: Mode = Mode.dev
    issuer: str = "http://127.0.0.1:8000"
    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = Field(default="", repr=False)  # empty: sqlite file var/idp.sqlite3
    database_pool_size: int = 10
    redis_url: str | None = Field(default=None, repr=False)  # unset: in-process MemoryStore
    store_prefix: str = "idp:"
    # Master key (32 bytes, base64url or hex). Every key for data at rest, cookies
    # and CSRF is derived from it. Dev: generated once into var/master.key.
    master_key: str | None = Field(default=None, repr=False)  # never in a repr or a log
    master_key_id: str = "k1"
    # Earlier master keys still needed to read old data: "id:key,id:key".
    old_master_keys: str = Field(default="", repr=False)
    default_locale: str = "zh-CN"
    log_level: str = "INFO"
    sm2_backend: str = "auto"  # auto | tongsuo | gmssl
    password_scheme: str = "argon2id"
    # Password hashes computed at once per process (core.passwords): 0 = the process's
    # cores divided by the web workers (WEB_CONCURRENCY, set by ``idp serve --workers``).
    password_hash_concurrency: int = Field(default=0, ge=0, le=256)
    # Token signing keys: the algorithms kept ready, how long a new key is published
    # before it signs, how long a replaced key stays published.
    signing_algs: CommaList = ("SM2", "RS256", "ES256", "EdDSA")
    # The ID-token algorithm an app registered on the platform gets when its registration
    # names none (directory.apps.register_app). A client whose stored metadata names none
    # is signed with RS256, as OpenID Connect requires.
    id_token_alg_default: Literal["SM2", "RS256", "ES256", "EdDSA"] = "SM2"
    # What a private_key_jwt assertion's aud may be (docs/oidc.md): "issuer" alone, as
    # draft-ietf-oauth-rfc7523bis requires, or also the token endpoint / the endpoint
    # called, as RFC 7523 and OIDC Core allowed. An assertion typed
    # client-authentication+jwt must name the issuer alone either way.
    client_assertion_audience: Literal["issuer", "issuer_or_endpoint"] = "issuer_or_endpoint"
    # DPoP (RFC 9449 8, 9; idp.oidc.dpop): "required": every proof carries a nonce this
    # provider gave (DPoP-Nonce), so a proof cannot be made in advance; "off": nonces are
    # not asked for (a proof that carries one still has it checked).
    dpop_nonce: Literal["off", "required"] = "off"
    # The reverse proxies / load balancers whose X-Forwarded-For and X-Forwarded-Proto are
    # believed (IP addresses or networks, comma-separated): the client's address is the
    # rightmost one in X-Forwarded-For that is not among them (per-IP limits, audit), and
    # https at the proxy makes cookies Secure. "*" is refused: anyone could choose their IP.
    trusted_proxies: CommaList = ("127.0.0.1", "::1")
    # A key is published before it signs (never negative: relying parties must be able to
    # know it first) and stays published after it stops signing at least as long as the
    # tokens it signed live (LONGEST_SIGNED_TOKEN_SECONDS), so none stops verifying early.
    key_publish_seconds: int = Field(default=86400, ge=0)
    key_retire_seconds: int = Field(default=172800, ge=LONGEST_SIGNED_TOKEN_SECONDS)
    # Roles whose members must sign in with a second factor (mfa.policy).
    mfa_required_roles: CommaList = (
        "city_admin", "district_admin", "school_admin", "teacher", "head_teacher")
    # SMS one-time codes (mfa.sms, docs/sms.md): console (dev default: a file under var/),
    # http (a JSON webhook; a small relay signs the cloud provider's API call) or none
    # (production default). Production refuses console.
    sms_gateway: str = ""
    sms_webhook_url: str = Field(default="", repr=False)  # a relay's URL may hold its key
    sms_webhook_token: str | None = Field(default=None, repr=False)  # "Authorization: Bearer"
    sms_webhook_body: str = ""  # JSON template; empty: mfa.sms_gateways.DEFAULT_BODY
    sms_webhook_timeout: float = 5.0

    @field_validator("issuer")
    @classmethod
    def _issuer_is_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://id.example.edu.cn")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("must not contain a query or fragment (OpenID Connect Discovery 3)")
        return value.rstrip("/")

    @field_validator("master_key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not KEY_ID.fullmatch(value):
            raise ValueError("must be 1 to 64 letters, digits, '-' or '_' (it is written into "
                             "every sealed value)")
        return value

    @field_validator("sm2_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in ("auto", "tongsuo", "gmssl"):
            raise ValueError("must be auto, tongsuo or gmssl")
        return value

    @field_validator("password_scheme")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value not in ("argon2id", "pbkdf2-sm3"):
            raise ValueError("must be argon2id or pbkdf2-sm3")
        return value

    @field_validator("sms_gateway")
    @classmethod
    def _known_sms_gateway(cls, value: str) -> str:
        if value not in ("", "console", "http", "none"):
            raise ValueError("must be console, http or none")
        return value

    @field_validator("mfa_required_roles", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> object:
        value = _comma_list(value)
        for item in value if isinstance(value, tuple | list) else ():
            try:
                ipaddress.ip_network(item)  # strict, as uvicorn reads it: 10.0.0.1/8 is no
                # network, and uvicorn would silently trust nobody
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (\"*\" is not "
                                 "allowed: clients could then choose their own address)"
                                 ) from None
        return value

    @field_validator("signing_algs", mode="before")
    @classmethod
    def _split_algs(cls, value: object) -> object:
        value = _comma_list(value)
        known = ("SM2", "RS256", "ES256", "EdDSA")
        if isinstance(value, tuple | list):
            unknown = [v for v in value if v not in known]
            if unknown or not value:
                raise ValueError(f"must be a comma-separated list of {', '.join(known)}")
            if "RS256" not in value:  # OIDC Core 15.1, Discovery 3: "RS256 MUST be included"
                raise ValueError("must include RS256 (OpenID Connect requires it, and an app "
                                 "that names no algorithm is signed with it)")
        return value

    @model_validator(mode="after")
    def _default_alg_is_kept_ready(self) -> Settings:
        if self.id_token_alg_default not in self.signing_algs:
            raise ValueError(f"id_token_alg_default {self.id_token_alg_default} is not among "
                             "signing_algs (apps would get ID tokens no key can sign)")
        return self

    # -- derived values ---------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'idp.sqlite3'}"

    @property
    def sms_enabled(self) -> bool:
        return self.sms_gateway not in ("", "none")

    @property
    def master_key_bytes(self) -> bytes:
        assert self.master_key is not None, "load_settings() always fills master_key"
        return decode_key(self.master_key, "IDP_MASTER_KEY")

    @property
    def old_master_key_bytes(self) -> dict[str, bytes]:
        return _parse_old_keys(self.old_master_keys)


@lru_cache(maxsize=64)  # on every seal and blind index: decode once
def decode_key(value: str, name: str) -> bytes:
    """Decode a 32-byte key given as hex or base64url; the message never shows it."""
    text = value.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.urlsafe_b64decode(
            text + "=" * (-len(text) % 4)
        )
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{name} must be 32 random bytes as 64 hex or 43 base64url characters")
    return raw


@lru_cache(maxsize=16)
def _parse_old_keys(text: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key_id, sep, value = item.partition(":")
        if not sep or not key_id:
            raise ConfigError("IDP_OLD_MASTER_KEYS must look like 'id:key,id:key'")
        if not KEY_ID.fullmatch(key_id):
            raise ConfigError("IDP_OLD_MASTER_KEYS: a key id is 1 to 64 letters, digits, "
                              "'-' or '_'")
        keys[key_id] = decode_key(value, f"IDP_OLD_MASTER_KEYS[{key_id}]")
    return keys


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    problems = []
    for var in sorted(environ):
        if var.startswith(ENV_PREFIX) and var not in known and var not in _NOT_SETTINGS:
            close = difflib.get_close_matches(var, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{var}{hint}")
    return problems


def _dev_secret(var_dir: Path, filename: str) -> str:
    """Read a dev secret from var/, creating it once with mode 0600."""
    path = var_dir / filename
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))
    return path.read_text().strip()


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "IDP_DATABASE_URL is not a database URL; use sqlite:///path/to/file.db "
            "or postgresql+psycopg://user@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"IDP_DATABASE_URL uses '{parsed.get_backend_name()}'; "
            "supported are sqlite and postgresql (postgresql+psycopg://...)"
        )


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, or raise ConfigError with one line."""
    env = dict(os.environ if environ is None else environ)
    unknown = _unknown_variables(env)
    if unknown:
        raise ConfigError("unknown setting " + ", ".join(unknown) + "; see README 'Configuration'")
    values = {
        key[len(ENV_PREFIX):].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in _NOT_SETTINGS
    }
    values.update(overrides)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{field}: {first['msg'].removeprefix('Value error, ')}") from None
    return _complete(settings)


def _complete(settings: Settings) -> Settings:
    if settings.database_url:
        _check_database_url(settings.database_url)
    redis_scheme = urlsplit(settings.redis_url or "").scheme
    if settings.redis_url and redis_scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("IDP_REDIS_URL must start with redis://, rediss:// or unix://")
    if settings.mode is Mode.production:
        missing = [
            name
            for name, value in (
                ("IDP_MASTER_KEY", settings.master_key),
                ("IDP_DATABASE_URL", settings.database_url),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"production mode needs {', '.join(missing)}; "
                "generate a key with: idp keys new-master-key"
            )
        if not settings.issuer.startswith("https://"):
            raise ConfigError("production mode needs an https:// IDP_ISSUER")
    settings = _complete_sms(settings)
    if not settings.master_key:
        settings = settings.model_copy(
            update={"master_key": _dev_secret(settings.var_dir, "master.key")}
        )
    settings.master_key_bytes  # noqa: B018 - validate now, not at first use
    if settings.master_key_id in settings.old_master_key_bytes:
        raise ConfigError(
            f"IDP_OLD_MASTER_KEYS names {settings.master_key_id}, the id of the current "
            "IDP_MASTER_KEY: a new master key needs a new id (IDP_MASTER_KEY_ID), or values "
            "sealed under the old one could not be told apart (docs/keys.md)")
    return settings


def _complete_sms(settings: Settings) -> Settings:
    gateway = settings.sms_gateway or ("none" if settings.mode is Mode.production else "console")
    if gateway == "console" and settings.mode is Mode.production:
        raise ConfigError("IDP_SMS_GATEWAY=console writes codes to a file and is for development "
                          "only; use http (with IDP_SMS_WEBHOOK_URL) or none in production")
    if gateway == "http":
        if urlsplit(settings.sms_webhook_url).scheme not in ("http", "https"):
            raise ConfigError("IDP_SMS_GATEWAY=http needs IDP_SMS_WEBHOOK_URL, an http(s) URL")
        if settings.sms_webhook_body:
            try:
                body = json.loads(settings.sms_webhook_body)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise ConfigError("IDP_SMS_WEBHOOK_BODY must be a JSON object (see docs/sms.md)")
        if not 0 < settings.sms_webhook_timeout <= 60:
            raise ConfigError("IDP_SMS_WEBHOOK_TIMEOUT must be between 0 and 60 seconds")
    return settings.model_copy(update={"sms_gateway": gateway})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (a FastAPI dependency; tests override it)."""
    return load_settings()
