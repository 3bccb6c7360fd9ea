"""The tokens a user grant yields: access token, ID token (``openid``), refresh token."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fastapi import Request

from core.db import Database
from core.settings import Settings
from directory import subjects
from directory.apps import ClientMetadata
from directory.people import holds
from idp.oidc import dpop, refresh_tokens
from idp.oidc.access_tokens import revoke_access_jti
from idp.oidc.claims import id_token_claims
from idp.oidc.errors import invalid_grant
from idp.oidc.tokens import Grant, issue_access_token, issue_id_token


@dataclass(frozen=True)
class IssuedTokens:
    body: dict[str, Any]  # the token response
    jti: str  # of the access token
    family: str | None  # of the refresh token


def issue_tokens(request: Request, client: ClientMetadata, grant: Grant, *,
                 code: str | None = None, family: str | None = None,
                 refresh_grant: Grant | None = None,
                 refresh_expires: datetime | None = None,
                 since: float | None = None, audience: str | None = None) -> IssuedTokens:
    """Issue the tokens of ``grant``; ``family`` continues a refresh-token family whose
    tokens keep ``refresh_grant`` (RFC 6749 6: a rotated token keeps its scope);
    ``since``: when the code was issued, refused (``invalid_grant``) when the account no
    longer holds what began then (suspended, or signed out everywhere since: a reset);
    ``audience``: the API the access token is for (RFC 8707; None: the issuer)."""
    state = request.app.state
    openid = "openid" in grant.scope.split()
    claims = id_token_claims(state.db, state.settings, grant, since) if openid else None
    if since is not None and grant.account_id is not None and (
            claims is None if openid else not holds(state.db, grant.account_id, since)):
        raise invalid_grant("the account can no longer sign in, or was signed out")
    shown = _as_the_app_knows_it(state.db, state.settings, client, grant)
    jkt = dpop.key_of(request)
    access = issue_access_token(state.keys, state.store, state.settings.issuer, client, shown,
                                jkt, audience)
    body: dict[str, Any] = {"access_token": access.token,
                            "token_type": "DPoP" if jkt else "Bearer",
                            "expires_in": access.expires_in, "scope": grant.scope}
    if openid:
        body["id_token"] = issue_id_token(state.keys, state.settings.issuer, client, shown,
                                          claims, access_token=access.token, code=code)
    # RFC 9449 5: a public app's refresh tokens are bound to the proof's key; a
    # confidential app's are bound to its credentials (it may change its DPoP key)
    kept = replace(refresh_grant or grant, jkt=jkt if client.is_public else None)
    if "refresh_token" in client.grant_types:
        body["refresh_token"], family = refresh_tokens.issue(
            state.db, state.settings, client, kept, family=family,
            expires_at=refresh_expires, access=(access.jti, access.expires_in))
    # Checked once the tokens exist: a session that ended before (a code redeemed after
    # the sign-out) or while they were made (sessions.end revokes only what it finds)
    # leaves no token of a grant that lives with it (no offline_access).
    if refresh_tokens.session_ended(state.store, kept):
        revoke_access_jti(state.store, access.jti, access.expires_in)
        if family:
            refresh_tokens.revoke_family(state.db, state.store, family)
        raise invalid_grant("the sign-in this grant came from has ended")
    return IssuedTokens(body, access.jti, family)


def _as_the_app_knows_it(db: Database, settings: Settings, client: ClientMetadata,
                         grant: Grant) -> Grant:
    """The grant with the ``sub`` and ``sid`` this app knows (pairwise for an app that
    registered it; ``directory.subjects``); the grant itself keeps the public ones."""
    if client.sector is None or grant.sub is None or grant.account_id is None:
        return grant
    with db.session() as session:
        sub = subjects.presented(session, client.sector, grant.account_id, grant.sub)
    sid = subjects.presented_sid(settings, client.sector, grant.sid) if grant.sid else None
    return replace(grant, sub=sub, sid=sid)
