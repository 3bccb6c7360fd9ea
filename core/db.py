"""Relational database: SQLAlchemy 2 engine, sessions and model conventions.

Embedded default is an SQLite file under ``var/``; production is PostgreSQL
through psycopg 3. The schema is owned by alembic (``migrations/``); this module
never creates tables, except :func:`create_all_for_tests`.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, create_engine, event, exc, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.settings import ConfigError, Settings

# Stable constraint names, so alembic migrations are identical on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model of every layer."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """An opaque, random, URL-safe identifier for public ids (e.g. ``sub``)."""
    return uuid.uuid4().hex


def new_sortable_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: a millisecond timestamp, then 74 random bits.

    For keys written in bulk (a person's ``uid``): ids made one after the other sort
    one after the other, so a unique index on them grows at its right edge instead of
    touching a random page per row (measured on an import of 300,000 students: 15 %
    less PostgreSQL CPU). Not for ids that must not tell when they were made (``sub``
    goes to every app: it stays :func:`new_id`). Python 3.14 has ``uuid.uuid7``; this
    is the same layout, written out for 3.11.
    """
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant 10
    return f"{value:032x}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _check_sqlite_version() -> None:
    """``UPDATE ... RETURNING`` (the audit append) needs SQLite 3.35 (2021) or newer."""
    import sqlite3

    if sqlite3.sqlite_version_info < (3, 35):
        raise ConfigError(f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or newer is "
                          "needed (or use PostgreSQL)")


# libpq's defaults wait 130 s for a server that accepts and never answers, and for ever on
# a connection whose server vanished (a failover, a partition): every request would hang
# with it. Connecting gives up after 5 s; TCP keepalives and tcp_user_timeout find a dead
# peer of an open connection within about 30 s. A server that is alive but stuck (its
# process stopped, the machine still answering TCP) is not detected: docs/operations.md.
CONNECT_ARGS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000}


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_version()
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # hide_parameters: an error's message never carries the statement's values (names,
    # identifiers: personal data) into the log
    engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                           hide_parameters=True,  # the URL's own options win
                           connect_args={k: v for k, v in CONNECT_ARGS.items()
                                         if k not in parsed.query})
    _ping_when_idle(engine)
    return engine


# A pooled connection may have died while it sat idle (server restart, failover, an idle
# timeout in a proxy). SQLAlchemy's ``pool_pre_ping`` asks the server on *every* checkout:
# a round trip per transaction, two or three per sign-in. A connection that was in use a
# moment ago is alive, so only one idle for longer than this is pinged. A server that dies
# within that moment fails the request that hits it (503), and SQLAlchemy then discards
# every pooled connection at once (it invalidates the pool on a disconnect error).
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection on checkout only when it sat idle in the pool for a while."""
    dialect = engine.dialect

    def note_idle(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure to ping: the connection is unusable
            raise exc.DisconnectionError("pooled connection is dead") from error
        if not alive:
            raise exc.DisconnectionError("pooled connection is dead")

    event.listen(engine, "checkin", note_idle)
    event.listen(engine, "checkout", ping_if_idle)


class Database:
    """The engine and session factory of one process."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(
            settings.effective_database_url, pool_size=settings.database_pool_size
        )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for a few reads outside any transaction (autocommit): no ``BEGIN``
        before the first statement and no ``ROLLBACK`` after the last, two round trips
        fewer than a session. Each statement sees the data as of its own start, so use it
        only where statements that see different moments are harmless (UserInfo's claims);
        never for writes or for reads that decide one."""
        with self.engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def ping(self) -> None:
        """Raise when the database does not answer (the command line's check: reading a
        standby is fine there)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def ping_writable(self) -> None:
        """Raise when the database cannot serve the service: unreachable, or (PostgreSQL)
        read-only, a standby after a failover or a database in maintenance, where every
        write fails (the readiness check)."""
        with self.engine.connect() as connection:
            if connection.dialect.name != "postgresql":
                connection.execute(text("SELECT 1"))
            elif connection.execute(text("SELECT current_setting('transaction_read_only')")
                                    ).scalar() == "on":
                raise exc.OperationalError("SELECT", None, ReadOnly("the database is read-only"))

    def dispose(self) -> None:
        self.engine.dispose()


class ReadOnly(Exception):
    """The database takes no writes (``Database.ping_writable``)."""


READ_ONLY_TRANSACTION = "25006"  # SQLSTATE read_only_sql_transaction


def is_outage(error: BaseException) -> bool:
    """Whether a database error is an outage rather than a bug or bad data: the server
    is out of reach (``OperationalError``), or read-only (a standby after a failover)."""
    if isinstance(error, exc.OperationalError):
        return True
    return (isinstance(error, exc.DBAPIError)
            and getattr(error.orig, "sqlstate", None) == READ_ONLY_TRANSACTION)


def create_all_for_tests(engine: Engine) -> None:
    """Tests only: build the schema from the models without alembic."""
    Base.metadata.create_all(engine)
