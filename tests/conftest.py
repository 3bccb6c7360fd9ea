"""Test fixtures: every test runs on one backend pair, chosen by the environment.

- default: an SQLite file + MemoryStore;
- ``IDP_TEST_DATABASE_URL`` (a PostgreSQL server URL whose user may create
  databases) + ``IDP_TEST_REDIS_URL``: a database created for this run only, and a
  Redis key prefix of this run only; both are removed at the end.

The schema is built with the real alembic migrations, once per run. After each
test every table is emptied, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import migrate
from core.db import Base, Database
from core.settings import Settings, load_settings
from core.store import MemoryStore, RedisStore, Store

RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"
TEST_MASTER_KEY = "0" * 62 + "2a"  # fixed for reproducible failures; never a real key
PG_ADMIN_URL = os.environ.get("IDP_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL")


def backend_name() -> str:
    return "postgresql+redis" if PG_ADMIN_URL else "sqlite+memory"


def pytest_report_header(config: pytest.Config) -> str:
    return f"idp backends: {backend_name()}"


def _pg_url(database: str) -> str:
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


def create_pg_database(name: str) -> str:
    from sqlalchemy import create_engine

    admin = create_engine(_pg_url(make_url(PG_ADMIN_URL).database or "postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return _pg_url(name)


def drop_pg_database(name: str) -> None:
    from sqlalchemy import create_engine

    admin = create_engine(_pg_url(make_url(PG_ADMIN_URL).database or "postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PG_ADMIN_URL:
        name = f"idp_test_{RUN_ID}"
        url = create_pg_database(name)
        yield url
        drop_pg_database(name)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


def make_settings(var_dir: Path, database_url: str, **extra: str) -> Settings:
    environ = {
        "IDP_VAR_DIR": str(var_dir),
        "IDP_DATABASE_URL": database_url,
        "IDP_MASTER_KEY": TEST_MASTER_KEY,
        "IDP_LOG_LEVEL": "WARNING",
        **{f"IDP_{k.upper()}": v for k, v in extra.items()},
    }
    return load_settings(environ)


@pytest.fixture(scope="session")
def settings(var_dir: Path, database_url: str) -> Settings:
    return make_settings(var_dir, database_url)


@pytest.fixture(scope="session")
def database(settings: Settings) -> Iterator[Database]:
    from core.signing_keys import ensure_keys

    db = Database(settings)
    migrate.upgrade(db.engine)
    with db.session() as session:
        ensure_keys(session, settings)
    yield db
    db.dispose()


# Kept between tests: made once per run (RSA key generation is slow); key tests use their own.
KEPT_TABLES = {"signing_key"}


def _empty_all_tables(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in KEPT_TABLES]
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            quoted = ", ".join(f'"{t}"' for t in tables)
            connection.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f'DELETE FROM "{table}"'))
        # The migration's one row of the audit chain head.
        connection.execute(text("INSERT INTO audit_head (id, last_seq, last_hash) "
                                "VALUES (1, 0, :zero)"), {"zero": bytes(32)})


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    yield database
    _empty_all_tables(database)


@pytest.fixture
def store() -> Iterator[Store]:
    if REDIS_URL:
        redis_store = RedisStore(REDIS_URL, prefix=f"idp-test:{RUN_ID}:{secrets.token_hex(4)}:")
        yield redis_store
        redis_store.delete_prefix()
        redis_store.close()
    else:
        yield MemoryStore()


@pytest.fixture
def app(settings: Settings, db: Database, store: Store):
    from idp.app import create_app

    app = create_app(settings, db=db, store=store)
    app.state.reraise_unexpected = True  # a route's bug fails its test with its traceback
    return app


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


# -- Chromium (Debian's binary, driven by playwright-core; never `playwright install`) ----

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    """A headless Chromium, closed after the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
