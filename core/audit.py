"""Append-only audit log with an SM3 hash chain.

Each row stores ``hash = SM3(previous hash || canonical encoding of the row)``;
the first row chains from 32 zero bytes. The single ``audit_head`` row records
the last sequence number and hash, and is locked while a row is appended, so the
chain has one order even with many workers. :func:`verify_chain` walks the
chain and names the first row that was altered, deleted or inserted out of
order, and notices a truncated tail through the head row.

Retention: :func:`prune` deletes the events older than a date (``idp audit prune``, at
least :data:`MIN_RETENTION_DAYS` kept). The head then records the first kept row and the
hash it chains from, and the pruning is an event of the kept chain, so ``verify`` still
checks everything that is left, and a pruning leaves its trace.

Audit rows hold identifiers (account ids, client ids), never passwords, tokens
or personal data such as ID or phone numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.db import Base, UTCDateTime, utcnow
from core.gm.sm3 import sm3

GENESIS = bytes(32)


class AuditEvent(Base):
    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(String(20))
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """One row: the end of the chain, locked during every append, and where the kept part
    begins (``first_seq``, chaining from ``first_prev_hash``) once older rows were pruned."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    first_seq: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    first_prev_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))  # None: GENESIS


def canonical(event: AuditEvent) -> bytes:
    """The bytes that the hash covers: every field but the hashes, sorted JSON."""
    fields = {
        "seq": event.seq,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "detail": event.detail,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _text(value: str) -> str:
    """``value`` as text UTF-8 holds: a lone surrogate (``"\\ud800"``, which JSON from a
    browser may carry into a refusal's reason, e.g. py_webauthn quoting clientDataJSON's
    origin) is written as its escape, so the event is kept rather than the request
    failing with a 500."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def chain_hash(prev_hash: bytes, event: AuditEvent) -> bytes:
    return sm3(prev_hash + canonical(event))


@dataclass(frozen=True)
class Context:
    """Who and where: taken from the request by the web kit; ``capacity``: the role the
    actor acted in, where one person holds several (the console's ``helpdesk@<unit code>``
    or ``administrator@<unit code>``), written to the event's detail as ``as``."""

    ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    capacity: str = ""

    @classmethod
    def of(cls, request: Any) -> Context:
        """The context of a Starlette/FastAPI request (client address, agent, request id)."""
        return cls(request.client.host if request.client else "",
                   request.headers.get("user-agent", "")[:400],
                   getattr(request.state, "request_id", ""))


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str = "",
    context: Context | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits with the caller).

    Three Core statements, built once, on the session's connection (this runs on every
    sign-in; the ORM's bulk-update machinery and autoflush cost more than the SQL): a
    no-op ``UPDATE ... RETURNING`` that locks the head row (PostgreSQL) or takes SQLite's
    write lock *and* reads the head, so appends never interleave; the ``INSERT``; the
    head's new end. Pending ORM changes of the caller are flushed first, so the events
    keep their order with the caller's own writes."""
    context = context or Context()
    session.flush()  # the caller's pending ORM changes first (a no-op when clean)
    connection = session.connection()
    head = connection.execute(_LOCK_HEAD).first()
    last_seq, last_hash = head if head is not None else (0, GENESIS)
    event = AuditEvent(
        seq=last_seq + 1,
        at=utcnow(),
        actor=actor[:200],
        action=action[:100],
        target=target[:200],
        outcome=outcome[:20],
        ip=context.ip[:64],
        user_agent=context.user_agent[:400],
        request_id=context.request_id[:64],
        detail=_text(json.dumps({**(detail or {}),
                                 **({"as": context.capacity} if context.capacity else {})},
                                sort_keys=True, ensure_ascii=False)),
        prev_hash=last_hash,
    )
    event.hash = chain_hash(last_hash, event)
    connection.execute(_INSERT_EVENT, {c: getattr(event, c) for c in _EVENT_COLUMNS})
    if head is None:
        connection.execute(_INSERT_HEAD, {"last_seq": event.seq, "last_hash": event.hash})
    else:
        connection.execute(_MOVE_HEAD, {"last_seq": event.seq, "last_hash": event.hash})
    return event


_EVENT_COLUMNS = ("seq", "at", "actor", "action", "target", "outcome", "ip", "user_agent",
                  "request_id", "detail", "prev_hash", "hash")
_HEAD = AuditHead.__table__
_LOCK_HEAD = (update(_HEAD).where(_HEAD.c.id == 1).values(last_seq=_HEAD.c.last_seq)
              .returning(_HEAD.c.last_seq, _HEAD.c.last_hash))
_INSERT_EVENT = insert(AuditEvent.__table__)
_INSERT_HEAD = insert(_HEAD).values(id=1)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    problem: str = ""
    seq: int | None = None


def _walk(session: Session, *, after: int, batch: int = 5000) -> Iterator[AuditEvent]:
    last = after
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def _head(session: Session) -> tuple[int, bytes, int, bytes]:
    """(last seq, last hash, first kept seq, the hash it chains from), read afresh."""
    row = session.execute(select(AuditHead.last_seq, AuditHead.last_hash, AuditHead.first_seq,
                                 AuditHead.first_prev_hash).where(AuditHead.id == 1)).first()
    if row is None:
        return 0, GENESIS, 1, GENESIS
    return row.last_seq, row.last_hash, row.first_seq, row.first_prev_hash or GENESIS


def verify_chain(session: Session, *, restarts: int = 3) -> ChainReport:
    """Walk the chain from where the kept part begins; report the first row that breaks it.

    A live log is walked as it grows: events appended during the walk are walked too,
    until the end matches the head read after it, and a pruning that moved the kept
    part's beginning meanwhile starts the walk again from there. Rows missing before the
    kept part must have been pruned: an ``audit.prune`` event of the kept chain says so,
    or the front was cut by hand."""
    _last, _hash, first, prev_hash = _head(session)
    expected_seq, count, pruned_before = first, 0, 1
    while True:
        walked = count
        for event in _walk(session, after=expected_seq - 1):
            if event.seq != expected_seq:
                if restarts and _head(session)[2] > expected_seq:  # pruned meanwhile
                    return verify_chain(session, restarts=restarts - 1)
                return ChainReport(False, count, f"row {expected_seq} is missing (deleted)",
                                   event.seq)
            if event.prev_hash != prev_hash:
                return ChainReport(
                    False, count, f"row {event.seq} does not follow row {event.seq - 1} "
                    "(deleted, replaced or inserted out of order)", event.seq
                )
            if chain_hash(prev_hash, event) != event.hash:
                return ChainReport(False, count, f"row {event.seq} was altered", event.seq)
            if event.action == PRUNE:
                pruned_before = max(pruned_before, int(json.loads(event.detail)["first_seq"]))
            prev_hash, expected_seq, count = event.hash, expected_seq + 1, count + 1
        last_seq, last_hash, _first, _prev = _head(session)
        if last_seq > expected_seq - 1 and count > walked:
            continue  # appended while it walked: walk on to the head's new end
        break
    if first > pruned_before:
        return ChainReport(False, count, f"rows before row {first} are gone and no "
                           f"{PRUNE} event of the chain pruned them", first)
    if (last_seq, last_hash) != (expected_seq - 1, prev_hash):
        return ChainReport(
            False, count, f"the chain ends at row {expected_seq - 1} but the head says row "
            f"{last_seq} (rows were removed from the end, added past it, or the head was "
            "altered)", expected_seq
        )
    return ChainReport(True, count)


MIN_RETENTION_DAYS = 180  # the Cybersecurity Law of the PRC, art. 21: network logs >= 6 months
PRUNE = "audit.prune"


def prune(sessions: sessionmaker[Session], before: datetime, *, actor: str,
          batch: int = 5000) -> int:
    """Delete the events older than ``before`` (a retention period), keeping the chain
    verifiable. First, in one short transaction under the head's lock: the head records
    where the kept part begins and the hash it chains from, and an ``audit.prune`` event
    of the kept chain says so. Then the rows before it are deleted in batches, each its
    own transaction, so sign-ins (which append events) never wait for the deletion; an
    interrupted run leaves rows that the next one deletes. Returns how many went."""
    with sessions.begin() as session:
        connection = session.connection()
        head = connection.execute(_LOCK_HEAD).first()  # no append meanwhile
        if head is None:
            return 0
        first = session.scalar(select(AuditHead.first_seq).where(AuditHead.id == 1)) or 1
        cut = session.scalar(select(func.max(AuditEvent.seq)).where(
            AuditEvent.at < before, AuditEvent.seq >= first))
        if cut is not None:
            anchor = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == cut))
            connection.execute(update(_HEAD).where(_HEAD.c.id == 1).values(
                first_seq=cut + 1, first_prev_hash=anchor))
            record(session, actor=actor, action=PRUNE, outcome="success",
                   detail={"before": before.isoformat(timespec="seconds"),
                           "first_seq": cut + 1, "rows": cut + 1 - first})
            first = cut + 1
    removed = 0
    while True:
        with sessions.begin() as session:
            low = session.scalar(select(func.min(AuditEvent.seq)))
            if low is None or low >= first:
                return removed
            removed += session.execute(delete(AuditEvent).where(
                AuditEvent.seq < min(first, low + batch))).rowcount or 0
