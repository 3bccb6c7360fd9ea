"""Subject identifiers (OpenID Connect Core 8): what an app knows a person by.

- ``public``: ``Account.sub``, one opaque random id per account, the same for every app.
- ``pairwise`` (an app registered with ``subject_type: pairwise``; privacy for minors):
  one random id per *sector* (``directory.sectors``: the host all the app's redirect URIs
  share, a native app's URI scheme, or the host of its ``sector_identifier_uri``) and
  account, made at the first sign-in and kept for good in
  ``pairwise_subject``, so apps of different sectors cannot match their users with each
  other. It is random, not derived from a key: it survives a master-key change, and only
  this table links it to the account. Pairwise ids start with ``PAIRWISE_PREFIX``, so a
  public ``sub`` (32 hex digits) never costs a lookup here.

A pairwise app also gets its own ``sid`` per session (``presented_sid``): the session id
would otherwise join the ids of two sectors signed in to in one browser session.

Tokens carry the id the app knows; everything inside the provider (sessions, grants,
refresh-token rows) keeps the account's public ``sub`` and translates with
``presented`` (out) and ``public_sub`` (in).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Connection, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.keyring import keyed_mac
from core.settings import Settings
from directory.models import Account

PAIRWISE_PREFIX = "pw-"


class PairwiseSubject(Base):
    __tablename__ = "pairwise_subject"
    __table_args__ = (UniqueConstraint("sector", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sector: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    sub: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def presented(session: Session, sector: str | None, account_id: int, public: str) -> str:
    """The ``sub`` an app of ``sector`` knows the account by (``None``: public subjects);
    a pairwise one is made on first use."""
    if sector is None:
        return public
    found = _pairwise(session, sector, account_id)
    if found is not None:
        return found
    value = PAIRWISE_PREFIX + secrets.token_hex(16)
    try:
        with session.begin_nested():  # two first sign-ins at once: the other one wins
            session.add(PairwiseSubject(sector=sector, account_id=account_id, sub=value))
    except IntegrityError:
        found = _pairwise(session, sector, account_id)
        assert found is not None
        return found
    return value


def presented_sid(settings: Settings, sector: str | None, sid: str) -> str:
    """The session id (``sid``) a pairwise app sees: one per session and sector, so that
    apps of different sectors cannot join their users on the shared ``sid`` either. Keyed
    (HMAC-SM3), so it cannot be computed from the session's own ``sid``; sessions last days,
    so a master-key change only costs running sessions a back-channel match."""
    if sector is None:
        return sid
    return keyed_mac(settings, "pairwise-sid/v1", f"{sector}|{sid}")[:32]


def known(session: Session, sector: str | None, account_id: int, public: str) -> str | None:
    """Like ``presented``, but never makes one: ``None`` when the app has never been told
    a pairwise id for this account."""
    return public if sector is None else _pairwise(session, sector, account_id)


def public_sub(session: Session | Connection, sub: str,
               sector: str | None = None) -> str | None:
    """The account's public ``sub`` for a ``sub`` we issued (public or pairwise; with
    ``sector``, only a pairwise one of that sector: an app must not learn whether another
    sector's id is the person in front of it)."""
    if not sub.startswith(PAIRWISE_PREFIX):
        return sub
    query = select(Account.sub).join(
        PairwiseSubject, PairwiseSubject.account_id == Account.id).where(
        PairwiseSubject.sub == sub)
    if sector is not None:
        query = query.where(PairwiseSubject.sector == sector)
    return session.scalar(query)


def _pairwise(session: Session, sector: str, account_id: int) -> str | None:
    return session.scalar(select(PairwiseSubject.sub).where(
        PairwiseSubject.sector == sector, PairwiseSubject.account_id == account_id))
