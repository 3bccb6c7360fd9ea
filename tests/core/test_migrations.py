"""Migrations: upgrade from empty, downgrade to base, upgrade again; and the models
agree with the migrations (no pending autogenerate diff). Runs on this run's backend,
in a database of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from core import migrate
from core.db import make_engine
from migrations.models import metadata
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    if PG_ADMIN_URL:
        name = f"idp_test_mig_{secrets.token_hex(4)}"
        engine = make_engine(create_pg_database(name))
        yield engine
        engine.dispose()
        drop_pg_database(name)
    else:
        engine = make_engine(f"sqlite:///{tmp_path / 'mig.sqlite3'}")
        yield engine
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == set(metadata.tables)
    migrate.downgrade(empty_engine, "base")
    assert _tables(empty_engine) == set()
    assert migrate.current(empty_engine) is None
    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == set(metadata.tables)


def test_models_match_migrations(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
    assert diff == [], f"models differ from migrations; write a migration: {diff}"


def test_the_last_step_down_and_up_keeps_referenced_rows(empty_engine: Engine) -> None:
    """A migration must work on a database in use: rows that other rows reference (an
    account, its login identifiers) survive the last migration's downgrade and upgrade.
    (SQLite's batch copy of a table drops it, which it refuses while rows point to it.)"""
    from sqlalchemy.orm import Session

    from directory.models import IdentifierKind, LoginIdentifier
    from directory.people import create_person_with_account

    migrate.upgrade(empty_engine)
    with Session(empty_engine) as session, session.begin():
        create_person_with_account(session, name="迁移同学",
                                   identifiers={IdentifierKind.username: "migrate"},
                                   password_hash=None)
    migrate.downgrade(empty_engine, "-1")
    migrate.upgrade(empty_engine)
    with Session(empty_engine) as session:
        assert session.query(LoginIdentifier).filter_by(value="migrate").count() == 1


def test_0019_keeps_the_operators_decisions_taken_before_it(empty_engine: Engine) -> None:
    """An app the operators suspended (or registered) before 0019 must not become the
    console's to re-approve: after the upgrade its status_set_at is NULL ("nobody
    decided"), so a district administrator approves it again."""
    from sqlalchemy import text

    migrate.upgrade(empty_engine, "0018")
    with empty_engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO app (client_id, name, status, first_party, metadata_json,"
            " created_at, updated_at) VALUES ('held-by-ops', 'n', 'suspended', false, '{}',"
            " '2026-11-01 00:00:00', '2026-11-01 00:00:00')"))
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        decided = connection.execute(text(
            "SELECT status_set_at FROM app WHERE client_id = 'held-by-ops'")).scalar_one()
    assert decided == "", "the operators' suspension became the console's to undo"


def test_0020_names_who_registered_an_app_in_the_console(empty_engine: Engine) -> None:
    """0020 takes registered_by from the registration's audit event: an administrator's
    (account:<id>) for a console app, NULL for the operators' (an idp apps actor)."""
    from sqlalchemy import text

    migrate.upgrade(empty_engine, "0019")
    with empty_engine.begin() as connection:
        for seq, (client_id, actor) in enumerate((("from-console", "account:7"),
                                                  ("from-cli", "cli:root")), start=1):
            connection.execute(text(
                "INSERT INTO app (client_id, name, status, first_party, metadata_json,"
                " created_at, updated_at) VALUES (:c, 'n', 'pending', false, '{}',"
                " '2026-11-01 00:00:00', '2026-11-01 00:00:00')"), {"c": client_id})
            connection.execute(text(
                "INSERT INTO audit_event (seq, at, actor, action, target, outcome, ip,"
                " user_agent, request_id, detail, prev_hash, hash) VALUES (:s,"
                " '2026-11-01 00:00:00', :a, 'app.register', :t, 'success', '', '', '', '{}',"
                " :h, :h)"), {"s": seq, "a": actor, "t": f"app:{client_id}", "h": bytes(32)})
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        found = dict(connection.execute(text("SELECT client_id, registered_by FROM app")).all())
    assert found == {"from-console": "account:7", "from-cli": None}
