"""Bulk SQL for the import's hot path: PostgreSQL ``COPY``, arrays; portable fallbacks.

- :func:`insert_rows` writes many rows of one table. On PostgreSQL it takes the
  ids from the table's sequence in one query (``nextval`` over
  ``generate_series``) and streams the rows with ``COPY ... FROM STDIN``
  (psycopg 3): no SQL text per row, nothing for the server to parse. Elsewhere
  (SQLite) it is ``INSERT ... RETURNING`` as an executemany.
- :func:`refresh_statistics` runs ``ANALYZE`` while a load grows the tables.
- :func:`among` is ``column IN (...)`` for a batch of keys. On PostgreSQL it is
  ``column = ANY(:array)``: one parameter instead of thousands, so neither
  psycopg nor the server parses a statement the size of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, any_, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(session: Session, column: Any, values: Sequence[Any]) -> Any:
    if _is_postgresql(session):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]], *,
                ids: bool = False) -> list[int]:
    """Insert ``rows`` (all with the same keys); return their new ids in order if ``ids``."""
    if not rows:
        return []
    if not _is_postgresql(session):
        if not ids:
            session.execute(insert(table), rows)
            return []
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.execute(statement, rows).scalars())
    new_ids = _next_ids(session, table, len(rows)) if ids else []
    columns = (["id"] if ids else []) + list(rows[0])
    connection = session.connection().connection.dbapi_connection
    names = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor, cursor.copy(
            f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for at, row in enumerate(rows):
            values = tuple(row.values())
            copy.write_row((new_ids[at], *values) if ids else values)
    return new_ids


DIRECTORY_TABLES = ("org_unit", "person", "account", "login_identifier", "affiliation",
                    "guardian_link")


def refresh_statistics(session: Session) -> None:
    """``ANALYZE`` the directory tables (PostgreSQL): the planner must know they grew.

    Right after a bulk load the statistics still describe the empty tables, and
    the planner answers a batch lookup with a scan of every student number.
    ``ANALYZE`` samples a fixed number of rows, so it costs well under a second.
    """
    if _is_postgresql(session):
        session.execute(text(f"ANALYZE {', '.join(DIRECTORY_TABLES)}"))


def _next_ids(session: Session, table: Table, count: int) -> list[int]:
    sequence = session.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"),
                               {"t": table.name}).scalar_one()
    return list(session.execute(text("SELECT nextval(:s) FROM generate_series(1, :n)"),
                                {"s": sequence, "n": count}).scalars())
