"""Races a concurrency review found over HTTP on PostgreSQL, replayed here step by step:
the other request's write is made and committed at the worst moment of this one's
transaction. PostgreSQL only: SQLite runs one writer at a time."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from idp.oidc import refresh_tokens
from idp.oidc.refresh_tokens import RefreshToken
from tests.conftest import PG_ADMIN_URL
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

pytestmark = pytest.mark.skipif(
    not PG_ADMIN_URL, reason="needs IDP_TEST_DATABASE_URL: SQLite runs one writer at a time, "
    "so the interleaving cannot happen there")


def _family(client: TestClient, make_client, make_person, db) -> str:
    registered = make_client()
    code = flow.code_flow(client, registered.client_id, make_person()).params["code"]
    client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})
    with db.sessions() as session:
        return session.scalars(select(RefreshToken.family)).one()


def _insert_heir(db, family: str) -> None:
    """What a rotation's ``issue_tokens`` commits: a new token of the family."""
    with db.sessions() as session:
        parent = session.scalars(select(RefreshToken).where(
            RefreshToken.family == family)).first()
        values = {c.key: getattr(parent, c.key) for c in RefreshToken.__table__.columns
                  if c.key not in ("id", "used_at", "revoked_at")}
    with db.session() as session:
        session.add(RefreshToken(**{**values, "token_mac": secrets.token_hex(32),
                                    "access_jti": secrets.token_hex(16)}))


def test_a_token_inserted_while_its_family_is_revoked_is_revoked_too(
        client: TestClient, make_client, make_person, db, app, monkeypatch) -> None:
    family = _family(client, make_client, make_person, db)
    real, calls = refresh_tokens.revoke_in, []

    def revoke_in_then_a_rotation_commits(session, *where):
        live = real(session, *where)
        if not calls:  # the first pass's UPDATE has run; its transaction is still open
            _insert_heir(db, family)
        calls.append(1)
        return live

    monkeypatch.setattr(refresh_tokens, "revoke_in", revoke_in_then_a_rotation_commits)
    refresh_tokens.revoke_family(db, app.state.store, family)
    with db.sessions() as session:
        rows = session.scalars(select(RefreshToken).where(RefreshToken.family == family)).all()
    assert len(rows) == 2 and all(row.revoked_at is not None for row in rows)


def test_two_first_consents_at_once_both_hold(make_client, make_person, db, monkeypatch) -> None:
    """Two tabs allowing the same app at once: both inserted the consent row, the second
    commit broke the unique constraint and answered 500 (found over HTTP, 3 tries in 4)."""
    from idp.oidc import consent

    registered, person = make_client(first_party=False), make_person()
    real, calls = consent._row, []

    def row_then_the_other_tab_inserts(session, account_id, client_id, **kw):
        found = real(session, account_id, client_id, **kw)
        if not calls:  # this grant saw no row; the other tab's grant commits one now
            calls.append(1)
            real_grant(db, account_id, client_id, "openid email", None)
        return found

    real_grant = consent._grant
    monkeypatch.setattr(consent, "_row", row_then_the_other_tab_inserts)
    consent.grant(db, person.account_id, registered.client_id, "openid profile")
    monkeypatch.setattr(consent, "_row", real)
    assert consent.covers(db, person.account_id, registered.client_id, "openid profile email")
