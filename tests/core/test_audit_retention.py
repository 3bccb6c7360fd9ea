"""Audit retention: pruning old events keeps the rest of the chain verifiable and leaves
its own trace, never holds sign-ins up, and a front cut by hand is still caught; verify
is not fooled by a live service."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import migrate
from core.audit import AuditEvent, AuditHead, prune, record, verify_chain
from core.db import Database, utcnow
from tests.conftest import PG_ADMIN_URL
from tests.core.test_migrations import empty_engine  # noqa: F401

YEAR_AGO = timedelta(days=365)


def _events(db: Database, count: int, *, days_ago: int = 0) -> None:
    with db.session() as session:
        for i in range(count):
            record(session, actor=f"account:{i}", action="login.password", outcome="success")
        if days_ago:
            session.execute(update(AuditEvent).where(AuditEvent.at > utcnow() - timedelta(
                days=1)).values(at=utcnow() - timedelta(days=days_ago)))


def _verify(db: Database):
    with db.session() as session:
        return verify_chain(session)


def test_pruning_keeps_the_rest_verifiable(db: Database) -> None:
    _events(db, 5, days_ago=400)
    _events(db, 3)
    assert prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops") == 5
    report = _verify(db)
    assert report.ok and report.rows == 4, report  # 3 kept + the pruning's own event
    with db.session() as session:
        assert session.get(AuditHead, 1).first_seq == 6
        last = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
        assert last.action == "audit.prune" and '"first_seq": 6' in last.detail
    assert prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops") == 0  # nothing more
    _events(db, 1)
    assert _verify(db).ok


def test_other_removals_are_still_caught(db: Database) -> None:
    _events(db, 4, days_ago=400)
    _events(db, 3)
    prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops")
    with db.session() as session:  # the first kept row removed by hand
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    report = _verify(db)
    assert not report.ok and "row 5 is missing" in report.problem


def test_a_moved_anchor_is_caught(db: Database) -> None:
    _events(db, 4, days_ago=400)
    _events(db, 2)
    prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops")
    with db.session() as session:
        session.execute(update(AuditHead).values(first_seq=6))  # hide row 5 as if pruned
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    assert not _verify(db).ok  # row 6 does not chain from the anchor's hash


def test_a_front_cut_that_no_prune_made_is_caught(db: Database) -> None:
    """Delete the oldest rows and move the anchor with them: no audit.prune event says
    those rows were pruned."""
    _events(db, 6)
    with db.session() as session:
        anchor = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 3))
        session.execute(delete(AuditEvent).where(AuditEvent.seq <= 3))
        session.execute(update(AuditHead).values(first_seq=4, first_prev_hash=anchor))
    report = _verify(db)
    assert not report.ok and "no audit.prune event" in report.problem


def test_a_front_cut_past_a_real_prune_is_caught(db: Database) -> None:
    _events(db, 4, days_ago=400)
    _events(db, 5)
    prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops")  # rows 1..4, its event is 10
    with db.session() as session:
        anchor = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 10))
        session.execute(delete(AuditEvent).where(AuditEvent.seq <= 10))
        session.execute(update(AuditHead).values(first_seq=11, first_prev_hash=anchor))
    _events(db, 1)
    assert not _verify(db).ok


def test_verify_is_not_fooled_by_a_sign_in_during_the_walk(db: Database) -> None:
    _events(db, 12)
    appended: list[int] = []

    def a_sign_in_meanwhile(conn, cursor, statement, params, context, executemany):
        if not appended and "FROM audit_event" in statement:
            appended.append(1)
            with db.session() as other:
                record(other, actor="account:99", action="login.password", outcome="success")

    event.listen(db.engine, "before_cursor_execute", a_sign_in_meanwhile)
    try:
        report = _verify(db)
    finally:
        event.remove(db.engine, "before_cursor_execute", a_sign_in_meanwhile)
    assert appended and report.ok, report
    assert _verify(db).ok  # and the next walk takes the new event in


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL: lock_timeout")
def test_sign_ins_go_on_while_a_prune_deletes(db: Database) -> None:
    _events(db, 6, days_ago=400)
    outcome: list[str] = []
    deletes: list[int] = []

    def between_batches(conn, cursor, statement, params, context, executemany):
        if statement.startswith("DELETE FROM audit_event"):
            deletes.append(1)
            if len(deletes) == 2:  # the first batch is done
                with db.engine.connect() as other:
                    other.execute(text("SET lock_timeout = '2s'"))
                    with Session(bind=other) as session:
                        try:
                            record(session, actor="account:1", action="login.password",
                                   outcome="success")
                            session.rollback()
                            outcome.append("appended")
                        except Exception as exc:  # what kept it out
                            outcome.append(type(getattr(exc, "orig", exc)).__name__)

    event.listen(db.engine, "before_cursor_execute", between_batches)
    try:
        assert prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops", batch=2) == 6
    finally:
        event.remove(db.engine, "before_cursor_execute", between_batches)
    assert outcome == ["appended"], outcome
    assert _verify(db).ok


def test_an_interrupted_prune_is_finished_by_the_next(db: Database) -> None:
    _events(db, 6, days_ago=400)
    _events(db, 2)
    with db.session() as session:  # the first step done, the deletion never ran
        session.execute(update(AuditHead).values(first_seq=7, first_prev_hash=session.scalar(
            select(AuditEvent.hash).where(AuditEvent.seq == 6))))
        record(session, actor="cli:ops", action="audit.prune", outcome="success",
               detail={"first_seq": 7, "rows": 6, "before": "x"})
    assert _verify(db).ok
    assert prune(db.sessions, utcnow() - timedelta(days=1000), actor="cli:ops") == 6
    assert _verify(db).ok


def test_a_pruned_chain_verifies_after_a_rollback_and_redeploy(
        empty_engine: Engine) -> None:  # noqa: F811
    migrate.upgrade(empty_engine)
    sessions = sessionmaker(empty_engine)
    with sessions.begin() as session:
        for _ in range(3):
            record(session, actor="account:1", action="login.password", outcome="success")
    prune(sessions, utcnow() + timedelta(seconds=1), actor="cli:ops")
    migrate.downgrade(empty_engine, "0015")
    migrate.upgrade(empty_engine)
    with sessions() as session:
        report = verify_chain(session)
    assert report.ok, report


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL: SQLite writes wait for readers")
def test_verify_walks_on_past_a_prune_that_ends_meanwhile(db: Database) -> None:
    _events(db, 6, days_ago=400)
    _events(db, 3)
    pruned: list[int] = []

    def a_prune_meanwhile(conn, cursor, statement, params, context, executemany):
        if not pruned and "FROM audit_event" in statement and "seq >" in statement:
            pruned.append(0)  # the prune's own statements must not start another
            pruned[0] = prune(db.sessions, utcnow() - YEAR_AGO, actor="cli:ops")

    event.listen(db.engine, "before_cursor_execute", a_prune_meanwhile)
    try:
        report = _verify(db)
    finally:
        event.remove(db.engine, "before_cursor_execute", a_prune_meanwhile)
    assert pruned == [6] and report.ok, report
