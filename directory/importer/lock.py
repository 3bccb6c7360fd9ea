"""One import at a time: a writing run holds a database-wide lock until it ends.

The same lock is taken by the other bulk writers of the directory: ``idp
rollover`` (``directory.rollover``) and each batch of ``idp erase-departed``
(``directory.retention``).

Two ``idp import`` runs writing at once would plan against a directory the
other is changing (both create the same person, one closes what the other
opened). So a writing run takes a lock as the first statement of its
transaction and keeps it until the transaction ends (commit or rollback): on
PostgreSQL the transaction-level advisory lock ``pg_try_advisory_xact_lock``,
on SQLite the database's write lock (a write statement that changes nothing).

Decisions:

- **Fail, do not wait**: a second run stops at once with
  :class:`ImportBusy` ("another import is running"), exit code 2, nothing
  written and no run recorded. An operator who started the same file twice
  wants to know, not to find it queued behind an hour-long load.
- **Dry runs take no lock**: they write nothing, and they see the directory as
  it was before the running import (whose transaction is not committed).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from directory.importer.formats import FileProblem

# pg advisory lock key: "idp impo" as a signed 64-bit integer, shared by every import.
ADVISORY_KEY = int.from_bytes(b"idp impo", "big", signed=True)
MESSAGE = ("another import is running on this database; wait until it has finished, "
           "then start this one again")


class ImportBusy(FileProblem):
    """Another import holds the lock."""


def hold_import_lock(session: Session) -> None:
    """Take the import lock for the session's transaction, or raise :class:`ImportBusy`."""
    if session.get_bind().dialect.name == "postgresql":
        taken = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                {"key": ADVISORY_KEY}).scalar_one()
        if not taken:
            raise ImportBusy(MESSAGE)
        return
    _sqlite_write_lock(session)


def _sqlite_write_lock(session: Session) -> None:
    """Begin the write transaction now, without waiting for another writer."""
    connection = session.connection()
    timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        connection.exec_driver_sql("DELETE FROM import_run WHERE 0")
    except OperationalError as exc:
        if "locked" not in str(exc.orig):
            raise
        raise ImportBusy(MESSAGE) from None
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={int(timeout or 0)}")
