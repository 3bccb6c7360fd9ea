"""Audit retention: pruning old events keeps the rest of the chain verifiable, and leaves
its own trace; removing rows any other way is still caught."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update

from core.audit import AuditEvent, AuditHead, prune, record, verify_chain
from core.db import Database, utcnow


def _events(db: Database, count: int, *, days_ago: int = 0) -> None:
    with db.session() as session:
        for i in range(count):
            record(session, actor=f"account:{i}", action="login.password", outcome="success")
        if days_ago:
            session.execute(update(AuditEvent).values(at=utcnow() - timedelta(days=days_ago)))


def test_pruning_keeps_the_rest_verifiable(db: Database) -> None:
    _events(db, 5, days_ago=400)
    _events(db, 3)
    with db.session() as session:
        removed = prune(session, utcnow() - timedelta(days=365), actor="cli:ops")
    assert removed == 5
    with db.session() as session:
        report = verify_chain(session)
        assert report.ok and report.rows == 4, report  # 3 kept + the pruning's own event
        head = session.get(AuditHead, 1)
        assert head.first_seq == 6
        last = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
        assert last.action == "audit.prune" and '"removed": 5' in last.detail
    with db.session() as session:  # nothing more to prune
        assert prune(session, utcnow() - timedelta(days=365), actor="cli:ops") == 0
    _events(db, 1)
    with db.session() as session:
        assert verify_chain(session).ok


def test_other_removals_are_still_caught(db: Database) -> None:
    _events(db, 4, days_ago=400)
    _events(db, 3)
    with db.session() as session:
        prune(session, utcnow() - timedelta(days=365), actor="cli:ops")
    with db.session() as session:  # the first kept row removed by hand
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and "row 5 is missing" in report.problem


def test_a_moved_anchor_is_caught(db: Database) -> None:
    _events(db, 4, days_ago=400)
    _events(db, 2)
    with db.session() as session:
        prune(session, utcnow() - timedelta(days=365), actor="cli:ops")
        session.execute(update(AuditHead).values(first_seq=6))  # hide row 5 as if pruned
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok  # row 6 does not chain from the anchor's hash
