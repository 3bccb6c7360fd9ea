"""The record of every import run: what file, what it changed, how it ended.

A run is recorded when it ends, whatever the outcome: ``applied`` (changes
committed), ``unchanged`` (the diff was empty: nothing written), ``rejected``
(invalid rows and no ``--skip-invalid``: nothing written) or ``failed`` (an
unexpected error: everything rolled back). Dry runs write nothing, not even a
run. ``sha256`` is the hash of the file's bytes: a file seen before is named in
the output ("already imported in run 12"), but the diff, not the hash, decides
what is written, because the directory may have changed since.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UTCDateTime, utcnow


class RunStatus(StrEnum):
    applied = "applied"
    unchanged = "unchanged"
    rejected = "rejected"
    failed = "failed"


class ImportRun(Base):
    __tablename__ = "import_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))
    snapshot: Mapped[bool] = mapped_column(default=False)
    rows: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    moved: Mapped[int] = mapped_column(default=0)
    deactivated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    invalid: Mapped[int] = mapped_column(default=0)
    actor: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def previous_run(session: Session, sha256: str, kind: str) -> ImportRun | None:
    """The last run that applied (or found nothing to change in) the same bytes."""
    return session.scalar(
        select(ImportRun)
        .where(ImportRun.sha256 == sha256, ImportRun.kind == kind,
               ImportRun.status.in_([RunStatus.applied.value, RunStatus.unchanged.value]))
        .order_by(ImportRun.id.desc()).limit(1)
    )
