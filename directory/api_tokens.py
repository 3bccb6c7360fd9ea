"""Bearer tokens for machine clients of the directory (SCIM provisioning, the JSON API).

A token is issued once (``idp demo`` or ``idp tokens issue``), shown once, and
stored only as ``HMAC-SM3(key, token)``: checking it costs one MAC, and a
database leak reveals no usable token. Each token is scoped to an org subtree
(``OrgUnit.path`` prefix) and to permissions (``scim``, ``directory:read``,
``security:unlock``, ``security:mfa-reset``, ``security:password-reset``); everything
outside the subtree is invisible to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import HTTPException, Request
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow
from core.keyring import keyed_mac
from core.settings import Settings
from core.web.errors import Problem
from directory.administrators import administers_since, holds_appointment_up_to
from directory.models import Account, OrgUnit, PersonStatus
from directory.scopes import Scope

TOKEN_PREFIX = "idp_"
LAST_USED_EVERY = timedelta(hours=1)  # last_used_at is written at most this often
MAX_DAYS = 3650  # the longest a token with an end may last (None: until revoked)
PERMISSIONS = frozenset({"scim", "directory:read", "security:unlock", "security:mfa-reset",
                         "security:password-reset"})


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_mac: Mapped[str] = mapped_column(String(64), unique=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    permissions: Mapped[str] = mapped_column(String(200))  # space-separated
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when it stops working (the admin console's tokens: 30 to 365 days); NULL: when revoked
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the audit actor who issued it (``account:<id>`` in the console, ``cli:<user>``
    # on the command line); NULL: issued before this was recorded
    issued_by: Mapped[str | None] = mapped_column(String(200))
    # the console's tokens: the newest of the appointments (``Affiliation`` ids) that gave
    # the issuer the powers the token acts with; it works while one of those goes on
    # (``issuer_administers``). No foreign key: a row gone (a person erased) is an
    # appointment that has ended. NULL: the operators' tokens, and those issued before
    # migration 0023 (checked by the day, ``administers_since``)
    last_appointment_id: Mapped[int | None] = mapped_column()

    org_unit: Mapped[OrgUnit] = relationship()


def token_mac(settings: Settings, token: str) -> str:
    return keyed_mac(settings, "api-token/v1", token)


def issue(
    session: Session, settings: Settings, *, name: str, scope: OrgUnit, permissions: set[str],
    issued_by: str | None = None, days: int | None = None,
    last_appointment_id: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token, valid ``days`` days (None: until revoked); the clear value is
    returned once and never stored. ``last_appointment_id``: see the column."""
    unknown = permissions - PERMISSIONS
    if unknown or not permissions:
        raise ValueError(f"permissions must be among {sorted(PERMISSIONS)}")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise ValueError(f"a token is valid for 1 to {MAX_DAYS} days")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_mac=token_mac(settings, token), org_unit=scope,
                   permissions=" ".join(sorted(permissions)), issued_by=issued_by,
                   last_appointment_id=last_appointment_id,
                   expires_at=None if days is None else utcnow() + timedelta(days=days))
    session.add(row)
    session.flush()
    return row, token


def issued_detail(row: ApiToken, unit: OrgUnit) -> dict[str, str]:
    """The ``api_token.issue`` audit event's detail: what the token may do, never the
    token."""
    return {"name": row.name, "scope": unit.code, "permissions": row.permissions,
            **({"expires": row.expires_at.isoformat(timespec="seconds")}
               if row.expires_at else {})}


def issued_in_console(row: ApiToken) -> bool:
    """Issued by an administrator in the admin console (``account:<id>``), not by the
    operators: such a token carries the console's powers and no more."""
    return (row.issued_by or "").startswith("account:")


def issuer_administers(session: Session, row: ApiToken) -> bool:
    """A token issued in the console acts with its issuer's powers, so only while they
    hold them: one of the appointments (an administrator's role, not the helpdesk's, at the
    token's unit or above) that gave them those powers when they issued it, their account
    open and their person active. When the role ends, or the person leaves or is suspended, the
    token stops with it (as Okta's API tokens do): an administrator who is let go keeps no
    way in through a token they issued. A suspension lifted brings it back; a role given
    again, even the same day, does not (a new appointment). The operators' tokens (``idp
    tokens issue``) answer to no one's role."""
    if not issued_in_console(row):
        return True
    _kind, _, account_id = (row.issued_by or "").partition(":")
    account = session.get(Account, int(account_id)) if account_id.isdigit() else None
    if account is None or account.disabled or (
            account.person.status != PersonStatus.active.value):
        return False
    if row.last_appointment_id is not None:
        return holds_appointment_up_to(session, account.id, row.org_unit.path,
                                       row.last_appointment_id)
    issued_on = row.created_at.astimezone().date()  # roles are dated in the server's zone
    return administers_since(session, account.id, row.org_unit.path, issued_on)


def issuers_administer(session: Session, rows: Iterable[ApiToken]) -> dict[int, bool]:
    """``issuer_administers`` of each row, by id, each distinct question asked once: a
    list of a unit's tokens, most issued by a few administrators, costs a few queries,
    not three a token."""
    asked: dict[tuple[object, ...], bool] = {}
    answers: dict[int, bool] = {}
    for row in rows:
        question = (row.issued_by, row.org_unit_id, row.last_appointment_id,
                    None if row.last_appointment_id else row.created_at.astimezone().date())
        if question not in asked:
            asked[question] = issuer_administers(session, row)
        answers[row.id] = asked[question]
    return answers


def live(row: ApiToken, now: datetime | None = None) -> bool:
    """Not revoked, not expired."""
    return row.revoked_at is None and (row.expires_at is None
                                       or row.expires_at > (now or utcnow()))


@dataclass(frozen=True)
class TokenScope(Scope):
    """What a request authenticated by an API token may see and do."""

    token_id: int
    name: str
    console: bool = False  # issued in the admin console: the console's powers only

    @property
    def actor(self) -> str:
        """Who acted, for the audit log: the token's id, as its ``api_token.issue`` event
        names it (names need not be unique: two "helpdesk" tokens are two actors)."""
        return f"api-token:{self.token_id}"


def authenticate(session: Session, settings: Settings, token: str) -> TokenScope | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_mac == token_mac(settings, token)))
    now = utcnow()
    if row is None or not live(row, now) or row.org_unit.status != "active":
        return None  # a closed unit's tokens end with it
    if not issuer_administers(session, row):
        return None  # answered as an unknown token: 401
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        row.last_used_at = now  # so that unused tokens can be found and revoked
    return TokenScope(row.org_unit.path, row.org_unit_id, frozenset(row.permissions.split()),
                      row.id, row.name, issued_in_console(row))


def require(request: Request, session: Session, settings: Settings, permission: str,
            realm: str) -> TokenScope:
    """The scope of the request's bearer token, which must carry ``permission``.

    No or an unknown token: 401 with ``WWW-Authenticate``; a token without the
    permission: 403 problem+json."""
    token = bearer_token(request)
    scope = authenticate(session, settings, token) if token else None
    if scope is None:
        raise HTTPException(401, "A valid bearer API token is required.",
                            headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
    if permission not in scope.permissions:
        raise Problem(403, "Forbidden", f"The token lacks the {permission} permission.")
    return scope


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
