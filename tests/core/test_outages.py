"""Outages answer 503 quickly, never a 500 or a long hang: a Redis that refuses writes, a
read-only PostgreSQL, a database server that never answers."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import event

from core.db import Database
from core.settings import Settings
from core.store import Store
from tests.conftest import PG_ADMIN_URL, make_settings

REDIRECT_URI = "https://app.example.edu.cn/callback"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class FailingWrites:
    """A store whose reads work and whose writes fail as Redis does after a failover to a
    replica (READONLY) or when it is full with maxmemory-policy noeviction (OOM)."""

    WRITES = frozenset({"set", "set_if_absent", "take", "take_and_mark", "replace", "swap",
                        "take_if", "advance", "incr", "delete", "delete_many", "add_member",
                        "remove_member", "schedule", "claim_due", "reschedule", "unschedule",
                        "give_back"})

    def __init__(self, inner: Store, error: Exception) -> None:
        self._inner, self._error = inner, error

    def __getattr__(self, name: str):
        if name in self.WRITES:
            def fail(*_args, **_kwargs):
                raise self._error
            return fail
        return getattr(self._inner, name)


@pytest.mark.parametrize("error", [
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
], ids=["readonly-replica", "oom-noeviction"])
def test_redis_refusing_writes_answers_503_not_500(settings, db, store, error) -> None:
    from directory.apps import register_app
    from idp.app import create_app

    with db.session() as session:
        app_row, _secret = register_app(session, settings, name="测试应用", metadata={
            "redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_basic", "scope": "openid"},
            first_party=True)
        client_id = app_row.client_id
    app = create_app(settings, db=db, store=FailingWrites(store, error))  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1:8000",
                    raise_server_exceptions=False) as client:
        response = client.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "scope": "openid", "state": "s", "nonce": "n",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256"})
    assert response.status_code == 503, (response.status_code, response.text[:200])


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL only")
def test_postgresql_read_only_answers_503_not_500(settings, db, store) -> None:
    """A failover that leaves the service on a standby (or a database put in read-only
    mode for maintenance): every write fails with ReadOnlySqlTransaction."""
    from idp.app import create_app

    read_only = Database(settings)

    @event.listens_for(read_only.engine, "connect")
    def _read_only(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = on")
        dbapi_connection.commit()

    try:
        app = create_app(settings, db=read_only, store=store)
        with TestClient(app, base_url="http://127.0.0.1:8000",
                        raise_server_exceptions=False) as client:
            page = client.get("/login")
            token = CSRF.search(page.text).group(1)
            response = client.post("/login", data={"csrf_token": token, "login": "nobody-here",
                                                   "password": "Wrong-password-1"})
            ready = client.get("/readyz")
        assert response.status_code == 503, (response.status_code, response.text[:200])
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"
    finally:
        read_only.dispose()


def _blackhole() -> tuple[socket.socket, int]:
    """A TCP server that accepts connections and never answers (a hung or partitioned
    database server, a proxy whose backend is gone)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def test_unresponsive_database_fails_within_seconds(var_dir) -> None:
    server, port = _blackhole()
    settings = make_settings(var_dir, f"postgresql+psycopg://postgres@127.0.0.1:{port}/idp")
    database = Database(settings)
    outcome: list[object] = []

    def ping() -> None:
        started = time.monotonic()
        try:
            database.ping()
            outcome.append("answered")
        except Exception as exc:
            outcome.append(type(exc).__name__)
        outcome.append(time.monotonic() - started)

    worker = threading.Thread(target=ping, daemon=True)
    worker.start()
    worker.join(10)
    server.close()
    assert not worker.is_alive(), (
        "Database.ping() against a server that never answers was still waiting after 10 s "
        "(psycopg's default connect_timeout is 130 s)")
    assert outcome and outcome[0] == "OperationalError"


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL only")
def test_the_command_line_reads_a_read_only_database(db: Database, settings, monkeypatch,
                                                     tmp_path) -> None:
    """Readiness refuses a read-only database; the command line must still read one (an
    operator's idp keys list or audit verify on a standby during a failover)."""
    from sqlalchemy.engine import make_url
    from typer.testing import CliRunner

    from idp.cli import app

    url = make_url(db.engine.url.render_as_string(hide_password=False)).update_query_dict(
        {"options": "-c default_transaction_read_only=on"})
    for name, value in {"IDP_VAR_DIR": str(tmp_path),
                        "IDP_DATABASE_URL": url.render_as_string(hide_password=False),
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    listed = CliRunner().invoke(app, ["keys", "list"])
    assert listed.exit_code == 0, (listed.output, listed.exception)


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL only")
def test_the_database_urls_own_options_win(db: Database) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from core.db import make_engine

    url = make_url(db.engine.url.render_as_string(hide_password=False)).update_query_dict(
        {"connect_timeout": "20", "keepalives_idle": "60"})
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with engine.connect() as connection:
            dsn = connection.connection.driver_connection.info.dsn
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert "connect_timeout=20" in dsn and "keepalives_idle=60" in dsn, dsn
    assert "tcp_user_timeout=30000" in dsn  # the defaults it did not name


def test_a_redis_replica_is_not_ready(tmp_path) -> None:
    """A Redis that answers PING but takes no writes (a replica after a failover)."""
    import shutil
    import subprocess

    from core.store import RedisStore, StoreUnavailable

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (make peers installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    replica = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--replicaof", "127.0.0.1", "1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="t:")
        for _ in range(50):
            try:
                store._redis.ping()
                break
            except redis.RedisError:
                time.sleep(0.1)
        with pytest.raises(StoreUnavailable, match="refuses writes"):
            store.ping()
    finally:
        replica.terminate()
        replica.wait(10)


class FreezableProxy:
    """A TCP proxy to PostgreSQL that can stop passing bytes while its sockets stay open:
    a database server whose process stalled while its machine still acknowledges TCP."""

    def __init__(self, target_port: int) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self._target = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.server.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                chunk = source.recv(65536)
                self.flowing.wait()
                if not chunk:
                    return
                sink.sendall(chunk)
            except OSError:
                return


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL only: a server to stall")
def test_a_stalled_database_is_not_ready_within_seconds(db: Database, store, var_dir,
                                                        monkeypatch) -> None:
    """The connection is open and TCP answers, but the server says nothing: readiness
    answers 503 once its time is up, and waits on the same check again rather than start
    one more thread per probe; ready again once the server answers."""
    from sqlalchemy.engine import make_url

    from core.web import health
    from idp.app import create_app

    monkeypatch.setattr(health, "PROBE_SECONDS", 0.5)
    url = make_url(db.engine.url.render_as_string(hide_password=False))
    proxy = FreezableProxy(url.port or 5432)
    settings = make_settings(var_dir, url.set(host="127.0.0.1", port=proxy.port)
                             .render_as_string(hide_password=False))
    through = Database(settings)
    try:
        app = create_app(settings, db=through, store=store)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/readyz").status_code == 200
            proxy.flowing.clear()
            stalled: list = []
            asking = threading.Thread(target=lambda: stalled.extend(
                client.get("/readyz") for _ in range(3)), daemon=True)
            asking.start()
            asking.join(5)
            assert not asking.is_alive(), "readiness waits on a stalled database"
            assert [r.status_code for r in stalled] == [503] * 3
            assert stalled[0].json()["checks"]["database"] == "unavailable"
            assert stalled[0].json()["checks"]["store"] == "ok"
            waiting = [t for t in threading.enumerate() if t.name == "readyz"]
            assert len(waiting) == 1, waiting  # one hung check, not one per probe
            proxy.flowing.set()
            for _ in range(20):
                if client.get("/readyz").status_code == 200:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("not ready again once the server answered")
    finally:
        proxy.flowing.set()
        proxy.server.close()
        through.dispose()


def test_readiness_answers_within_the_limit_when_both_dependencies_hang(
        settings: Settings, db: Database, store: Store, monkeypatch) -> None:
    """docs/operations.md and the commit: readiness answers within PROBE_SECONDS whatever a
    dependency does. With the database and Redis both stalled (a network partition), the
    checks are waited on one after the other: 2 x PROBE_SECONDS (6 s with the default 3 s,
    past a readiness probe's usual timeout)."""
    from core.web import health
    from idp.app import create_app

    monkeypatch.setattr(health, "PROBE_SECONDS", 0.5)
    stalled = threading.Event()
    app = create_app(settings, db=db, store=store)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        monkeypatch.setattr(db, "ping_writable", lambda: stalled.wait(30))
        monkeypatch.setattr(store, "ping", lambda: stalled.wait(30))
        try:
            began = time.monotonic()
            answer = client.get("/readyz")
            took = time.monotonic() - began
        finally:
            stalled.set()
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"database": "unavailable", "store": "unavailable"}
    assert took < health.PROBE_SECONDS + 0.3, f"/readyz took {took:.2f} s"


def test_readiness_answers_within_the_limit_when_the_key_ring_reload_hangs(
        settings: Settings, db: Database, store: Store, monkeypatch) -> None:
    """The signing-key check is the third readiness check, and the only one run on the
    request's own thread without a limit: when the key ring's minute is over it reads the
    database (KeyRing._load, under its lock). A database that stalls after the ping
    answered (or a connection of the pool that stalled while the ping got another) holds
    /readyz, and each call's worker thread, for as long as it stalls."""
    from core.web import health
    from idp.app import create_app

    monkeypatch.setattr(health, "PROBE_SECONDS", 0.5)
    stalled = threading.Event()
    app = create_app(settings, db=db, store=store)
    answers: list[int] = []
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        keys = app.state.keys
        real_load = keys._load

        def stalled_load():  # a pooled connection that stopped answering
            stalled.wait(30)
            return real_load()

        monkeypatch.setattr(keys, "_load", stalled_load)
        keys._loaded_at = 0.0  # the minute is over: the next check reloads
        asking = threading.Thread(
            target=lambda: answers.append(client.get("/readyz").status_code), daemon=True)
        began = time.monotonic()
        asking.start()
        asking.join(health.PROBE_SECONDS + 1.0)
        took = time.monotonic() - began
        stalled.set()
        asking.join(5)
    assert took < health.PROBE_SECONDS + 1.0 and answers, \
        f"/readyz still waiting after {took:.2f} s"
