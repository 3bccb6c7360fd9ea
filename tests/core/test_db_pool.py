"""The connection pool pings a connection only after it sat idle (PostgreSQL only).

SQLAlchemy's ``pool_pre_ping`` would ask the server on every checkout; ``core.db``
pings only connections idle for longer than ``PING_AFTER_IDLE_SECONDS`` and replaces
a dead one before the request sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from core import db
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason="the pool policy is PostgreSQL's "
                                "(SQLite has no server to lose); set IDP_TEST_DATABASE_URL")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _kill(engine: Engine, pid: int) -> None:
    other = db.make_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    with other.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                                  ).scalar_one()
    other.dispose()


def test_a_connection_that_died_while_idle_is_replaced(engine: Engine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dead = _backend_pid(engine)
    _kill(engine, dead)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle "long enough"
    assert _backend_pid(engine) != dead  # pinged, found dead, replaced: no error


def test_a_connection_in_use_a_moment_ago_is_not_pinged(engine: Engine,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    for _ in range(3):
        _backend_pid(engine)
    assert pings == []  # three transactions, no extra round trip
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    _backend_pid(engine)
    assert len(pings) == 1
    # Without the ping, a connection killed a moment ago fails the transaction that
    # meets it (and SQLAlchemy then drops the pool): the ping above is what saves it.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    _kill(engine, _backend_pid(engine))
    with pytest.raises(OperationalError):
        _backend_pid(engine)
    _backend_pid(engine)  # the pool was invalidated: a fresh connection works
