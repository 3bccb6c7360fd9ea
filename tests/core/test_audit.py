from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update

from core.audit import AuditEvent, AuditHead, Context, record, verify_chain
from core.db import Database


def _append(db: Database, count: int) -> None:
    with db.session() as session:
        for i in range(count):
            record(session, actor=f"account:{i}", action="login", outcome="success",
                   target="client:demo", context=Context("127.0.0.1", "pytest", f"req{i}"),
                   detail={"amr": ["pwd"], "n": i})


def test_empty_chain_is_intact(db: Database) -> None:
    with db.session() as session:
        assert verify_chain(session).ok


def test_chain_of_rows_is_intact(db: Database) -> None:
    _append(db, 5)
    _append(db, 3)
    with db.session() as session:
        report = verify_chain(session)
    assert report.ok and report.rows == 8


def test_altered_row_is_named(db: Database) -> None:
    _append(db, 6)
    with db.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(outcome="failure"))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and report.seq == 4 and "row 4 was altered" in report.problem


def test_deleted_row_is_named(db: Database) -> None:
    _append(db, 6)
    with db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and report.rows == 2 and "row 3 is missing" in report.problem


def test_row_replaced_with_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    """An attacker who rewrites a row and recomputes its own hash still breaks the chain."""
    from core.audit import chain_hash

    _append(db, 5)
    with db.session() as session:
        row = session.get(AuditEvent, 2)
        row.actor = "account:someone-else"
        row.hash = chain_hash(row.prev_hash, row)
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and report.seq == 3 and "does not follow row 2" in report.problem


def test_rows_swapped_out_of_order_are_detected(db: Database) -> None:
    _append(db, 4)
    with db.session() as session:
        session.execute(text("UPDATE audit_event SET seq = 100 WHERE seq = 2"))
        session.execute(text("UPDATE audit_event SET seq = 2 WHERE seq = 3"))
        session.execute(text("UPDATE audit_event SET seq = 3 WHERE seq = 100"))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and report.seq == 2


def test_truncated_tail_is_detected(db: Database) -> None:
    _append(db, 5)
    with db.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and "head says row 5" in report.problem


def test_inserted_forged_row_is_detected(db: Database) -> None:
    _append(db, 3)
    with db.session() as session:
        last = session.get(AuditEvent, 3)
        session.add(AuditEvent(seq=4, at=last.at, actor="x", action="grant", target="",
                               outcome="success", ip="", user_agent="", request_id="",
                               detail="{}", prev_hash=last.hash, hash=b"\x00" * 32))
    with db.session() as session:
        report = verify_chain(session)
    assert not report.ok and report.seq == 4


def test_append_is_part_of_the_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        record(session, actor="a", action="x", outcome="success")
        raise RuntimeError("rolled back")
    with db.session() as session:
        assert session.get(AuditHead, 1).last_seq == 0
        assert verify_chain(session).rows == 0


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    import threading

    threads = [threading.Thread(target=_append, args=(db, 10)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.session() as session:
        report = verify_chain(session)
    assert report.ok and report.rows == 40


def test_a_lone_surrogate_in_a_detail_is_kept_as_its_escape(db: Database) -> None:
    """JSON from a browser may carry "\\ud800" into a refusal's reason: the event is
    written (its escape in the text), and the chain still verifies."""
    with db.session() as session:
        record(session, actor="login:unknown", action="mfa.webauthn.authenticate",
               outcome="failure", detail={"reason": "origin \ud800 refused"})
    with db.session() as session:
        stored = session.scalar(text("SELECT detail FROM audit_event"))
        assert "\\ud800" in stored
        assert verify_chain(session).ok
