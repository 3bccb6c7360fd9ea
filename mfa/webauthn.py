"""Passkeys (WebAuthn level 2) on py_webauthn: registration, sign-in, removal.

The relying party id is the host of the issuer (``https://id.example.edu.cn`` ->
``id.example.edu.cn``) and the expected origin is the issuer's origin. Browsers
refuse an IP address as RP id, so a development server must be reached as
``http://localhost:PORT`` (a secure context), not ``http://127.0.0.1:PORT``.

Every passkey is a discoverable credential (``residentKey: required``), so a
person can sign in without typing a username: :func:`authentication_options`
with ``account_id=None`` sends an empty ``allowCredentials`` and
:func:`authenticate` finds the account from the credential id (and checks the
returned user handle, the account's anonymous ``sub``).

Challenges live in the store for ``CHALLENGE_SECONDS`` under the challenge
itself, bound to the account (or to nobody for a usernameless sign-in), and are
consumed with ``Store.take``: a response is accepted at most once.

Sign counters: a stored counter above zero that the authenticator does not
increase means the key may have been cloned; the sign-in is refused (and
audited). Authenticators that keep no counter always send 0 and are accepted.

**User verification.** The caller passes ``require_uv``. Administrators'
accounts (roles ``city_admin``, ``district_admin``, ``school_admin``, see
:func:`is_administrator`) MUST use it, for registration and sign-in; as a safety
net :func:`authenticate` and :func:`register` also require it by themselves for
such accounts, because a usernameless sign-in only learns the account from the
credential.

Failures raise :class:`PasskeyError` whose message is a plain-words English
msgid. The failure has already been audited in the caller's ``session``: catch
the error inside the transaction so the audit row is committed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from core.audit import Context, record
from core.db import utcnow
from core.settings import Settings
from core.store import Store
from core.web.i18n import N_
from directory import administrators
from directory.models import Account
from mfa.credentials import FactorKind, MfaCredential

# What an unreadable answer from the browser raises in py_webauthn: its own errors, and plain
# ``json.loads`` of clientDataJSON, which a deeply nested array ends in RecursionError
READ_ERRORS = (WebAuthnException, ValueError, KeyError, TypeError, RecursionError)
CHALLENGE_SECONDS = 300
RP_NAME = "City Education Unified Identity"
MAX_NAME = 100
_REG = "webauthn:reg:"
_AUTH = "webauthn:auth:"

EXPIRED = N_("The passkey request has expired. Please try again.")
UNREADABLE = N_("The passkey response could not be read. Please try again.")
NOT_ACCEPTED = N_("The passkey could not be verified. Please try again.")
UNKNOWN = N_("This passkey is not registered with us. Sign in with your password, or add "
             "the passkey on your security page first.")
WRONG_ACCOUNT = N_("This passkey belongs to another account.")
NO_UV = N_("Your device did not verify you (PIN, fingerprint or face). Administrators must "
           "use a passkey with verification.")
CLONED = N_("This passkey's counter went backwards, so it may have been copied. It cannot be "
            "used; please contact your school.")
ALREADY = N_("This passkey is already registered.")
NEED_NAME = N_("Please give the passkey a name.")


class PasskeyError(Exception):
    """A refused registration or sign-in; ``message`` is an English msgid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Verified:
    """A successful passkey sign-in."""

    account_id: int
    user_verified: bool
    credential_uid: str


def rp_id(settings: Settings) -> str:
    return urlsplit(settings.issuer).hostname or "localhost"


def origin(settings: Settings) -> str:
    parts = urlsplit(settings.issuer)
    return f"{parts.scheme}://{parts.netloc}"


def is_administrator(session: Session, account_id: int) -> bool:
    """True when the account's person administers an open unit now (the rule of
    ``directory.administrators``, which the console uses too)."""
    return bool(administrators.administered(session, account_id))


def passkeys(session: Session, account_id: int) -> list[MfaCredential]:
    """The account's passkeys, oldest first."""
    return list(session.scalars(select(MfaCredential).where(
        MfaCredential.account_id == account_id, MfaCredential.kind == FactorKind.webauthn.value,
        MfaCredential.confirmed_at.is_not(None)).order_by(MfaCredential.id)))


def _data(credential: MfaCredential) -> dict[str, Any]:
    return json.loads(credential.data or "{}")


def _descriptor(credential: MfaCredential) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in _data(credential).get("transports", []):
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(credential.credential_id or ""),
                                         transports=transports or None)


def _uv(require_uv: bool) -> UserVerificationRequirement:
    return (UserVerificationRequirement.REQUIRED if require_uv
            else UserVerificationRequirement.PREFERRED)


def _challenge_of(response_json: dict[str, Any] | str) -> str:
    """The challenge the browser signed, read from clientDataJSON (verified later)."""
    try:
        raw = json.loads(response_json) if isinstance(response_json, str) else response_json
        client_data = parse_client_data_json(
            base64url_to_bytes(raw["response"]["clientDataJSON"]))
        return bytes_to_base64url(client_data.challenge)
    except (*READ_ERRORS, AttributeError):
        raise PasskeyError(UNREADABLE) from None


def _fail(session: Session, actor: str, action: str, message: str, reason: str,
          context: Context | None, target: str = "", outcome: str = "failure") -> PasskeyError:
    record(session, actor=actor, action=action, outcome=outcome, target=target,
           context=context, detail={"reason": reason})
    return PasskeyError(message)


# -- registration -------------------------------------------------------------------------


def registration_options(session: Session, settings: Settings, store: Store, account_id: int,
                         user_name: str, display_name: str, require_uv: bool) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptions`` as JSON for ``navigator.credentials.create``."""
    account = session.get(Account, account_id)
    if account is None:
        raise PasskeyError(NOT_ACCEPTED)
    require_uv = require_uv or is_administrator(session, account_id)
    options = generate_registration_options(
        rp_id=rp_id(settings), rp_name=RP_NAME,
        user_id=account.sub.encode(), user_name=user_name or account.sub,
        user_display_name=display_name or user_name or account.sub,
        challenge=secrets.token_bytes(32), timeout=CHALLENGE_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, require_resident_key=True,
            user_verification=_uv(require_uv)),
        exclude_credentials=[_descriptor(c) for c in passkeys(session, account_id)],
    )
    store.set(_REG + bytes_to_base64url(options.challenge),
              json.dumps({"account_id": account_id, "require_uv": require_uv}).encode(),
              ttl=CHALLENGE_SECONDS)
    return json.loads(options_to_json(options))


def register(session: Session, settings: Settings, store: Store, account_id: int,
             response_json: dict[str, Any] | str, name: str, *,
             context: Context | None = None) -> MfaCredential:
    """Verify the browser's attestation and keep the new passkey (confirmed at once)."""
    actor, action = f"account:{account_id}", "mfa.webauthn.register"
    name = " ".join(name.split())[:MAX_NAME]
    if not name:
        raise PasskeyError(NEED_NAME)
    try:
        challenge = _challenge_of(response_json)
    except PasskeyError as exc:
        raise _fail(session, actor, action, exc.message, "unreadable", context) from None
    raw = store.take(_REG + challenge)
    if raw is None:
        raise _fail(session, actor, action, EXPIRED, "unknown or used challenge", context)
    bound = json.loads(raw)
    if bound["account_id"] != account_id:
        raise _fail(session, actor, action, EXPIRED, "challenge of another account", context)
    require_uv = bool(bound["require_uv"]) or is_administrator(session, account_id)
    try:
        credential = parse_registration_credential_json(response_json)
        verified = verify_registration_response(
            credential=credential, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp_id(settings), expected_origin=origin(settings),
            require_user_verification=require_uv)
    except READ_ERRORS as exc:
        uv_missing = "user verification" in str(exc).lower()
        raise _fail(session, actor, action, NO_UV if uv_missing else NOT_ACCEPTED,
                    str(exc)[:200], context) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if session.scalar(select(MfaCredential.id).where(
            MfaCredential.credential_id == credential_id)) is not None:
        raise _fail(session, actor, action, ALREADY, "duplicate credential id", context)
    transports = [t.value for t in (credential.response.transports or [])]
    row = MfaCredential(
        account_id=account_id, kind=FactorKind.webauthn.value, name=name,
        credential_id=credential_id, confirmed_at=utcnow(),
        data=json.dumps({
            "public_key": bytes_to_base64url(verified.credential_public_key),
            "sign_count": verified.sign_count,
            "transports": transports,
            "aaguid": verified.aaguid,
            "user_verified": verified.user_verified,
            "device_type": verified.credential_device_type.value,
            "backed_up": verified.credential_backed_up,
            "attachment": (credential.authenticator_attachment.value
                           if credential.authenticator_attachment else ""),
        }, sort_keys=True),
    )
    session.add(row)
    session.flush()
    record(session, actor=actor, action=action, outcome="success", target=f"mfa:{row.uid}",
           context=context, detail={"aaguid": verified.aaguid, "uv": verified.user_verified})
    return row


# -- authentication -----------------------------------------------------------------------


def authentication_options(settings: Settings, store: Store, account_id: int | None,
                           require_uv: bool, *,
                           credentials: Sequence[MfaCredential] = ()) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` as JSON for ``navigator.credentials.get``.

    ``account_id=None``: a usernameless sign-in (empty ``allowCredentials``);
    ``credentials`` may list the known account's passkeys for ``allowCredentials``.
    """
    options = generate_authentication_options(
        rp_id=rp_id(settings), challenge=secrets.token_bytes(32),
        timeout=CHALLENGE_SECONDS * 1000, user_verification=_uv(require_uv),
        allow_credentials=[_descriptor(c) for c in credentials] if account_id else [],
    )
    store.set(_AUTH + bytes_to_base64url(options.challenge),
              json.dumps({"account_id": account_id, "require_uv": require_uv}).encode(),
              ttl=CHALLENGE_SECONDS)
    return json.loads(options_to_json(options))


def authenticate(session: Session, settings: Settings, store: Store,
                 response_json: dict[str, Any] | str, require_uv: bool,
                 expected_account_id: int | None, *,
                 context: Context | None = None) -> Verified:
    """Verify an assertion; update the counter and last use; return who signed in."""
    action = "mfa.webauthn.authenticate"
    actor = f"account:{expected_account_id}" if expected_account_id else "unknown"
    try:
        challenge = _challenge_of(response_json)
        credential = parse_authentication_credential_json(response_json)
    except (PasskeyError, *READ_ERRORS):
        raise _fail(session, actor, action, UNREADABLE, "unreadable", context) from None
    raw = store.take(_AUTH + challenge)
    if raw is None:
        raise _fail(session, actor, action, EXPIRED, "unknown or used challenge", context)
    bound = json.loads(raw)
    if bound["account_id"] is not None and bound["account_id"] != expected_account_id:
        raise _fail(session, actor, action, EXPIRED, "challenge of another account", context)
    credential_id = bytes_to_base64url(credential.raw_id)
    row = session.scalar(select(MfaCredential).where(
        MfaCredential.credential_id == credential_id,
        MfaCredential.kind == FactorKind.webauthn.value,
        MfaCredential.confirmed_at.is_not(None)))
    if row is None:
        raise _fail(session, actor, action, UNKNOWN, "unknown credential", context)
    actor, target = f"account:{row.account_id}", f"mfa:{row.uid}"
    if expected_account_id is not None and row.account_id != expected_account_id:
        raise _fail(session, actor, action, WRONG_ACCOUNT, "credential of another account",
                    context, target)
    account = session.get(Account, row.account_id)
    handle = credential.response.user_handle
    if account is None or (handle and handle != account.sub.encode()):
        raise _fail(session, actor, action, NOT_ACCEPTED, "user handle mismatch", context,
                    target)
    require_uv = (require_uv or bool(bound["require_uv"])
                  or is_administrator(session, row.account_id))
    data = _data(row)
    stored_count = int(data.get("sign_count", 0))
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp_id(settings), expected_origin=origin(settings),
            credential_public_key=base64url_to_bytes(data["public_key"]),
            credential_current_sign_count=0,  # compared below, with its own message
            require_user_verification=require_uv)
    except READ_ERRORS as exc:
        uv_missing = "user verification" in str(exc).lower()
        raise _fail(session, actor, action, NO_UV if uv_missing else NOT_ACCEPTED,
                    str(exc)[:200], context, target) from None
    if stored_count > 0 and verified.new_sign_count <= stored_count:
        raise _fail(session, actor, action, CLONED,
                    f"sign count {verified.new_sign_count} <= {stored_count}: possible clone",
                    context, target, outcome="refused")
    data["sign_count"] = verified.new_sign_count
    row.data = json.dumps(data, sort_keys=True)
    row.last_used_at = utcnow()
    record(session, actor=actor, action=action, outcome="success", target=target,
           context=context, detail={"uv": verified.user_verified})
    session.flush()
    return Verified(row.account_id, verified.user_verified, row.uid)


# -- removal ------------------------------------------------------------------------------


def remove(session: Session, account_id: int, uid: str, *,
           context: Context | None = None) -> bool:
    """Delete one of the account's passkeys; False when there is no such passkey."""
    row = session.scalar(select(MfaCredential).where(
        MfaCredential.uid == uid, MfaCredential.account_id == account_id,
        MfaCredential.kind == FactorKind.webauthn.value))
    if row is None:
        return False
    session.delete(row)
    record(session, actor=f"account:{account_id}", action="mfa.webauthn.remove",
           outcome="success", target=f"mfa:{uid}", context=context)
    session.flush()
    return True
