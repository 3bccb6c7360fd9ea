"""Bulk SQL for the import's hot path: PostgreSQL ``COPY``, arrays; portable fallbacks.

- :func:`insert_rows` writes many rows of one table. On PostgreSQL it takes the
  ids from the table's sequence in one query (``nextval`` over
  ``generate_series``) and streams the rows with ``COPY ... FROM STDIN``
  (psycopg 3): no SQL text per row, nothing for the server to parse. Elsewhere
  (SQLite) it is ``INSERT ... RETURNING`` as an executemany.
- :class:`Statistics` runs ``ANALYZE`` each time a load has doubled the
  directory tables (counted by :func:`insert_rows`): a handful of times for a
  city, never for a re-import that writes nothing.
- :func:`serial_plans` switches parallel query off for the run's transactions: the
  planner chose a ``Gather`` with two workers for the 2,000-key lookups, which
  starts two server processes per query and took twice as long on two cores
  (40 ms against 21 ms for a students chunk's lookup by student number).
- :func:`among` is ``column IN (...)`` for a batch of keys. On PostgreSQL it is
  ``column = ANY(:array)``: one parameter instead of thousands, so neither
  psycopg nor the server parses a statement the size of the batch. The array
  goes as one text literal (``{"a","b"}``, cast to the column's array type)
  built with ``str.join``: psycopg's list dumper formats each element in Python,
  which was a tenth of the guardians' planning time. The parameter is sent
  *untyped* (psycopg sends a ``str`` as ``unknown``), so ``CAST($1 AS
  varchar[])`` makes it a parameter of the array type, parsed once: the plan
  holds a constant array. A ``text`` parameter would be cast row by row instead
  (``array_in`` is not immutable), which made the classes file ten times slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, any_, bindparam, cast, event, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def serial_plans(session: Session) -> None:
    """No parallel query plans in any of the session's transactions (PostgreSQL): each one
    begins with ``SET LOCAL``, so a session that ends a transaction per chunk keeps it."""
    if not _is_postgresql(session):
        return

    def serial(_session: Session, _transaction: object, connection: Connection) -> None:
        connection.exec_driver_sql(_SERIAL)

    event.listen(session, "after_begin", serial)
    if session.in_transaction():
        session.connection().exec_driver_sql(_SERIAL)


_SERIAL = "SET LOCAL max_parallel_workers_per_gather = 0"


def among(session: Session, column: Any, values: Sequence[Any]) -> Any:
    if _is_postgresql(session):
        literal = bindparam(None, array_literal(values), type_=NullType())  # sent untyped
        return column == any_(cast(literal, ARRAY(column.type)))
    return column.in_(values)


def array_literal(values: Sequence[Any]) -> str:
    """PostgreSQL's text form of a one-dimensional array of strings or integers."""
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for value in values) + "}"


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]], *,
                ids: bool = False) -> list[int]:
    """Insert ``rows`` (all with the same keys); return their new ids in order if ``ids``.

    The keys may come in any order per row: ``COPY`` takes each row's values
    in the order of the first row's keys, looked up by name.
    """
    if not rows:
        return []
    session.info[_INSERTED] = session.info.get(_INSERTED, 0) + len(rows)
    if not _is_postgresql(session):
        if not ids:
            session.execute(insert(table), rows)
            return []
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.execute(statement, rows).scalars())
    new_ids = (next_ids(session, table, len(rows)) or []) if ids else []
    keys = list(rows[0])
    columns = (["id"] if ids else []) + keys
    connection = session.connection().connection.dbapi_connection
    names = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor, cursor.copy(
            f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for at, row in enumerate(rows):
            values = tuple(row[key] for key in keys)
            copy.write_row((new_ids[at], *values) if ids else values)
    return new_ids


DIRECTORY_TABLES = ("org_unit", "person", "account", "login_identifier", "affiliation",
                    "guardian_link")
MIN_GROWTH = 20_000  # rows written before the first ANALYZE of a run
_INSERTED = "import_rows_inserted"


class Statistics:
    """``ANALYZE`` the directory tables (PostgreSQL) whenever a load has doubled them.

    Right after a bulk load the statistics still describe the smaller tables,
    and the planner answers a batch lookup with a scan of every student number.
    ``ANALYZE`` samples a fixed number of rows (under a second), but a run of
    hundreds of chunks need not pay it hundreds of times: the tables are
    analysed when the rows inserted since the last time reach what they held.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.enabled = _is_postgresql(session)
        self.held = self._rows() if self.enabled else 0
        session.info[_INSERTED] = 0

    def chunk_written(self) -> None:
        if self.enabled and self.session.info.get(_INSERTED, 0) >= max(MIN_GROWTH, self.held):
            self.session.execute(text(f"ANALYZE {', '.join(DIRECTORY_TABLES)}"))
            self.held = self._rows()
            self.session.info[_INSERTED] = 0

    def _rows(self) -> int:
        """The planner's estimate of the rows in the directory tables (0: never analysed)."""
        return int(self.session.execute(text(
            "SELECT coalesce(sum(greatest(reltuples, 0)), 0) FROM pg_class "
            "WHERE relname = ANY(:tables) AND relkind = 'r'"),
            {"tables": list(DIRECTORY_TABLES)}).scalar_one())


def next_ids(session: Session, table: Table, count: int) -> list[int] | None:
    """``count`` new ids from the table's sequence (PostgreSQL); None elsewhere."""
    if not _is_postgresql(session):
        return None
    sequence = session.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"),
                               {"t": table.name}).scalar_one()
    return list(session.execute(text("SELECT nextval(:s) FROM generate_series(1, :n)"),
                                {"s": sequence, "n": count}).scalars())
