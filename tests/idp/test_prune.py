"""What ends for good is deleted: refresh-token families whose every token expired
(``idp db prune``), audit events past the retention period (``idp audit prune``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.audit import AuditEvent, verify_chain
from core.db import Database, utcnow
from idp.cli import app
from idp.oidc.refresh_tokens import RefreshToken, prune


@pytest.fixture
def cli_env(db: Database, settings, monkeypatch, tmp_path) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)


def _token(session, family: str, expires_days: int, account_id: int, n: int) -> None:
    now = utcnow()
    session.add(RefreshToken(token_mac=f"mac-{family}-{n}", family=family, client_id="app",
                             account_id=account_id, grant_json="{}", created_at=now,
                             expires_at=now + timedelta(days=expires_days)))


def test_db_prune_deletes_ended_families_only(cli_env, db: Database, make_person) -> None:
    person = make_person()
    with db.session() as session:
        _token(session, "ended", -400, person.account_id, 1)
        _token(session, "ended", -370, person.account_id, 2)
        _token(session, "living", -400, person.account_id, 1)  # used long ago,
        _token(session, "living", 20, person.account_id, 2)   # its family still lives
    result = CliRunner().invoke(app, ["db", "prune"])
    assert result.exit_code == 0 and "removed 2 expired refresh tokens" in result.output, \
        result.output
    with db.session() as session:
        left = session.scalars(select(RefreshToken.token_mac).order_by(RefreshToken.id)).all()
    assert left == ["mac-living-1", "mac-living-2"]  # the old one still detects reuse


def test_families_are_walked_in_batches(db: Database, make_person) -> None:
    """Ended and living families interleaved, one family per batch: each ended one goes."""
    person = make_person()
    with db.session() as session:
        for n, family in enumerate("abcdefg"):
            _token(session, family, -400 if n % 2 == 0 else 20, person.account_id, 1)
        _token(session, "b", -400, person.account_id, 2)
    assert prune(db.sessions, utcnow() - timedelta(days=1), batch=1) == 4
    assert prune(db.sessions, utcnow() - timedelta(days=1), batch=2) == 0
    with db.session() as session:
        left = session.scalars(select(RefreshToken.token_mac).order_by(RefreshToken.id)).all()
    assert left == ["mac-b-1", "mac-d-1", "mac-f-1", "mac-b-2"]


def test_audit_prune_keeps_the_legal_minimum(cli_env, db: Database) -> None:
    too_short = CliRunner().invoke(app, ["audit", "prune", "--keep-days", "30"])
    assert too_short.exit_code == 2 and "180" in too_short.output
    done = CliRunner().invoke(app, ["audit", "prune", "--keep-days", "365"])
    assert done.exit_code == 0 and "removed 0 audit events" in done.output
    with db.session() as session:
        assert verify_chain(session).ok
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "audit.prune")) == 0  # nothing pruned: no event
