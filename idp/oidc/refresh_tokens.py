"""Refresh tokens: rotation, families and reuse detection (OAuth 2.0 Security BCP 4.14).

Every refresh returns a new refresh token and retires the one presented; all
tokens descending from one authorization form a *family*. Presenting a retired
token again means it was stolen (or the client is broken): the whole family is
revoked. Marking a token used is a conditional ``UPDATE ... WHERE used_at IS
NULL``, so of two concurrent refreshes exactly one wins and the other is
treated as reuse. A refresh token is bound to its client; with
``offline_access`` it lives ``OFFLINE_SECONDS``, otherwise it lives with the SSO
session it was issued in: revoked (with its access token) when that session ends
by a sign-out, a new sign-in in its browser or a suspension, refused once it idles
out (``sessions.is_live``), and expiring at the latest when the session could
(``sessions.MAX_SECONDS``). Only ``HMAC-SM3`` of each token is stored.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any, NoReturn

from fastapi import Request
from sqlalchemy import ForeignKey, String, Text, delete, func, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from starlette.concurrency import run_in_threadpool

from core.db import Base, Database, UTCDateTime, utcnow
from core.keyring import keyed_mac
from core.settings import Settings
from core.store import Store
from directory.apps import ClientMetadata
from directory.people import holds
from idp import sessions
from idp.oidc import dpop, resources, scopes
from idp.oidc.access_tokens import revoke_access_jti
from idp.oidc.errors import OAuthError, invalid_grant, invalid_request
from idp.oidc.tokens import Grant

OFFLINE_SECONDS = 30 * 24 * 3600


class RefreshToken(Base):
    __tablename__ = "refresh_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_mac: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    grant_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the access token issued together with this refresh token: revoking the family
    # deny-lists it too (RFC 7009 2.1), while it may still be live
    access_jti: Mapped[str | None] = mapped_column(String(64))
    access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the SSO session (its sid) a token without offline_access lives and dies with;
    # None for an offline_access token, which outlives sign-outs (OIDC Core 11)
    session_sid: Mapped[str | None] = mapped_column(String(64), index=True)


def mac(settings: Settings, token: str) -> str:
    return keyed_mac(settings, "refresh-token/v1", token)


def issue(db: Database, settings: Settings, client: ClientMetadata, grant: Grant,
          family: str | None = None, expires_at: datetime | None = None,
          access: tuple[str, int] | None = None) -> tuple[str, str]:
    """A new refresh token (and its family id) for ``grant``; ``access``: the ``jti`` and
    lifetime in seconds of the access token issued with it."""
    if grant.account_id is None:
        raise ValueError("refresh tokens are for user grants")
    token = secrets.token_urlsafe(32)
    family = family or secrets.token_hex(16)
    now = utcnow()
    expires_at = expires_at or _expiry(grant, now)
    with db.engine.begin() as connection:  # one Core INSERT: this runs on every sign-in
        connection.execute(_INSERT, {
            "token_mac": mac(settings, token), "family": family, "client_id": client.client_id,
            "account_id": grant.account_id, "grant_json": json.dumps(grant.to_json()),
            "created_at": now, "expires_at": expires_at,
            "access_jti": access[0] if access else None,
            "access_expires_at": now + timedelta(seconds=access[1]) if access else None,
            "session_sid": _session_sid(grant)})
    return token, family


_INSERT = insert(RefreshToken.__table__)


def _expiry(grant: Grant, now: datetime) -> datetime:
    """``offline_access``: ``OFFLINE_SECONDS`` from now; otherwise when the SSO session
    ends at the latest (a code minted on a session's sixth day brings a token that ends
    with it, not seven days later)."""
    if "offline_access" in grant.scope.split():
        return now + timedelta(seconds=OFFLINE_SECONDS)
    latest = now + timedelta(seconds=sessions.MAX_SECONDS)
    if grant.session_ends_at is None:
        return latest
    return min(latest, datetime.fromtimestamp(grant.session_ends_at, tz=now.tzinfo))


def prune(sessions: sessionmaker[Session], before: datetime, *, batch: int = 1000) -> int:
    """Delete the families whose every token expired before ``before`` (``idp db prune``).
    A family goes whole: a used token kept while its family lives is what detects its
    reuse. Families are walked once, in order of their (indexed) id, ``batch`` at a time,
    each batch its own transaction: a living family is read once, not again by every
    batch, and the table is never locked for the whole run. Returns how many tokens were
    deleted."""
    removed, after = 0, ""
    while True:
        with sessions.begin() as session:
            scanned = session.execute(
                select(RefreshToken.family, func.max(RefreshToken.expires_at))
                .where(RefreshToken.family > after).group_by(RefreshToken.family)
                .order_by(RefreshToken.family).limit(batch)).all()
            ended = [family for family, last in scanned if last < before]
            if ended:  # and still ended: a family has no new token once all expired
                removed += session.execute(delete(RefreshToken).where(
                    RefreshToken.family.in_(ended),
                    ~RefreshToken.family.in_(select(RefreshToken.family).where(
                        RefreshToken.family.in_(ended), RefreshToken.expires_at >= before))
                )).rowcount or 0
        if len(scanned) < batch:
            return removed
        after = scanned[-1][0]


def revoke_family(db: Database, store: Store, family: str) -> None:
    """Revoke every refresh token of ``family`` and deny-list the access tokens issued
    with them that may still be live (twice: ``revoke_again``)."""
    _revoke_twice(db, store, RefreshToken.family == family)


def _revoke_twice(db: Database, store: Store, *where: Any) -> None:
    """A revocation of its own transaction, then its second pass (``revoke_again``)."""
    revoke_again(db, store, *where)
    revoke_again(db, store, *where)


def revoke_again(db: Database, store: Store, *where: Any) -> None:
    """The second pass of a revocation, once its transaction has committed. A rotation
    (``rotate``) inserts its new token, commits, then checks whether the family was revoked
    meanwhile. Under READ COMMITTED a first pass whose UPDATE began before that insert
    committed does not see the new row, and a check made before the first pass committed
    does not see the revocation: the new token (and its access token) would live on. This
    pass, begun after the first one committed, sees every row inserted before it began;
    a rotation that inserts later makes its check later still, and sees the revocation."""
    with db.session() as session:
        live = revoke_in(session, *where)
    deny_access_tokens(store, live)


def _session_sid(grant: Grant) -> str | None:
    """The SSO session ``grant``'s refresh tokens live with; None with ``offline_access``."""
    return None if "offline_access" in grant.scope.split() else grant.sid


def session_ended(store: Store, grant: Grant) -> bool:
    """Whether ``grant``'s refresh tokens would live with a session that has ended (a code
    redeemed, or a token refreshed, after a sign-out, or once the session idled out or
    reached its maximum age)."""
    sid = _session_sid(grant)
    return sid is not None and not sessions.is_live(store, grant.account_id or 0, sid)


def revoke_session(db: Database, store: Store, sid: str) -> None:
    """The SSO session ``sid`` ended: revoke the refresh tokens that live with it (those
    without ``offline_access``) and deny-list their access tokens."""
    _revoke_twice(db, store, RefreshToken.session_sid == sid)


def revoke_in(session: Session, *where: Any) -> list[tuple[str, datetime]]:
    """Revoke the refresh tokens ``where`` selects, in ``session``'s transaction; return
    the access tokens issued with them that may still be live (``deny_access_tokens``
    once the transaction is committed)."""
    now = utcnow()
    session.execute(update(RefreshToken).where(
        *where, RefreshToken.revoked_at.is_(None)).values(revoked_at=now))
    return [(jti, expires) for jti, expires in session.execute(
        select(RefreshToken.access_jti, RefreshToken.access_expires_at).where(
            *where, RefreshToken.access_expires_at > now))]


def deny_access_tokens(store: Store, live: list[tuple[str, datetime]]) -> None:
    now = utcnow()
    for jti, expires_at in live:
        revoke_access_jti(store, jti, (expires_at - now).total_seconds())


def find(db: Database, settings: Settings, token: str) -> RefreshToken | None:
    if not token or len(token) > 200:
        return None
    with db.sessions() as session:
        return session.scalar(select(RefreshToken).where(
            RefreshToken.token_mac == mac(settings, token)))


def _claim(db: Database, row: RefreshToken) -> bool:
    """Mark ``row`` used; False when another request used it first or it was revoked
    meanwhile (a revocation between the checks and this claim must stick)."""
    with db.session() as session:
        result = session.execute(update(RefreshToken).where(
            RefreshToken.id == row.id, RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None)).values(used_at=utcnow()))
        return result.rowcount == 1


def _family_revoked(db: Database, family: str) -> bool:
    with db.sessions() as session:
        return session.scalar(select(RefreshToken.id).where(
            RefreshToken.family == family, RefreshToken.revoked_at.is_not(None)
        ).limit(1)) is not None


def _unclaim(db: Database, row: RefreshToken) -> None:
    with db.session() as session:
        session.execute(update(RefreshToken).where(RefreshToken.id == row.id).values(
            used_at=None))


def account_may_continue(db: Database, row: RefreshToken) -> bool:
    """The token's account may still sign in and has not signed out everywhere (a password
    change or reset, a lost phone) since the token was issued."""
    return holds(db, row.account_id, row.created_at.timestamp())


def _narrowed(grant: Grant, form: dict[str, str], client: ClientMetadata) -> Grant:
    """The grant with the scope a refresh asks for, within what the app's registration
    allows now (a scope the operators took from the app since the grant is dropped): values
    the provider does not know are ignored, as at the authorization endpoint (an app may
    send its whole scope again), and so is an ``offline_access`` the grant does not hold:
    the authorization endpoint ignored it without the person's consent (OIDC Core 11), and
    an app sending back what it asked for must not fail for that."""
    held = {s for s in grant.scope.split() if s in client.allowed_scopes}
    if held != set(grant.scope.split()):  # the operators took a scope from the app since:
        if not held:  # it goes from the new tokens (the answer's scope says so)
            raise invalid_grant("the client may no longer hold this grant's scopes")
        grant = Grant.from_json({**grant.to_json(), "scope": " ".join(
            s for s in grant.scope.split() if s in held)})
    asked = form.get("scope")
    if asked is None:
        return grant
    try:
        wanted = [s for s in scopes.values(asked)
                  if (s in client.allowed_scopes or s in scopes.USER_SCOPES)
                  and (s != "offline_access" or s in held)]
    except ValueError as malformed:
        raise OAuthError("invalid_scope", str(malformed)) from None
    if not wanted:
        return grant
    if not set(wanted) <= held:
        raise OAuthError("invalid_scope", "a refresh cannot widen the scope")
    return Grant.from_json({**grant.to_json(), "scope": " ".join(wanted)})


def rotate(request: Request, form: dict[str, str], client: ClientMetadata) -> dict[str, Any]:
    from idp.oidc.grants import issue_tokens

    state = request.app.state
    token = form.get("refresh_token")
    if not token:
        raise invalid_request("refresh_token is required")
    row = find(state.db, state.settings, token)
    if row is None or row.revoked_at is not None:
        raise invalid_grant("the refresh token is invalid or revoked")
    if row.client_id != client.client_id:
        raise invalid_grant("the refresh token was issued to another client")
    original = Grant.read(json.loads(row.grant_json))
    if original.jkt and original.jkt != dpop.key_of(request):  # RFC 9449 5: before reuse
        raise invalid_grant("the refresh token is bound to a DPoP key: send a proof made "
                            "with it")  # is judged or it is spent: without the key, a thief
    if row.used_at is not None:  # can neither spend it nor revoke its family
        _reused(state, row)
    if row.expires_at <= utcnow():
        raise invalid_grant("the refresh token has expired")
    if not account_may_continue(state.db, row):
        revoke_family(state.db, state.store, row.family)
        raise invalid_grant("the account can no longer sign in, or was signed out")
    offline = ("offline_access" in original.scope.split()  # and the app may still hold it
               and "offline_access" in client.allowed_scopes)
    audience = resources.audience(state.resources, resources.for_one_token(  # RFC 8707: one
        state.resources, form, client.client_id), original.resources,  # of the grant's
        client.client_id, original.resource_owners)
    # OIDC Core 12.2: a refreshed ID token has no nonce
    refreshed = Grant.from_json({**_narrowed(original, form, client).to_json(), "nonce": None})
    # Spent only now, when nothing about the request can fail any more (RFC 6749 6: the
    # old token goes once a new one is issued): a refused scope leaves the token usable.
    if not _claim(state.db, row):
        again = find(state.db, state.settings, token)
        if again is None or again.revoked_at is not None:  # revoked meanwhile
            raise invalid_grant("the refresh token is invalid or revoked")
        _reused(state, row)
    try:
        body = issue_tokens(request, client, refreshed, family=row.family,
                            refresh_grant=original, audience=audience,
                            refresh_expires=None if offline else row.expires_at).body
    except Exception:
        _unclaim(state.db, row)  # nothing was issued (a store or database failure)
        raise
    if _family_revoked(state.db, row.family):  # revoked while the new token was made: the
        revoke_family(state.db, state.store, row.family)  # new one (and its access token)
        raise invalid_grant("the refresh token is invalid or revoked")  # goes with it
    return body


def _reused(state: Any, row: RefreshToken) -> NoReturn:
    revoke_family(state.db, state.store, row.family)
    raise invalid_grant("the refresh token was already used; its whole family is revoked")


async def refresh(request: Request, form: dict[str, str],
                  client: ClientMetadata) -> dict[str, Any]:
    return await run_in_threadpool(rotate, request, form, client)
