"""The ``idp`` command line (typer + rich).

Every configuration problem ends in a one-line ``error: ...`` on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="City education identity.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
audit_app = typer.Typer(no_args_is_help=True, help="Audit log.")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    return load_settings()


def _database(settings: Settings):
    from sqlalchemy.exc import OperationalError

    from core.db import Database

    database = Database(settings)
    try:
        database.ping()
    except OperationalError:
        raise ConfigError(
            "the database at IDP_DATABASE_URL does not answer; is it running and does it exist?"
        ) from None
    return database


@app.command()
def version() -> None:
    """Print the version."""
    from idp.app import version as app_version

    out.print(app_version())


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Worker processes (more than one needs Redis)."),
) -> None:
    """Serve the identity provider with uvicorn."""
    import uvicorn

    from core.store import make_store

    settings = _settings()
    if workers > 1 and not settings.redis_url:
        raise ConfigError(
            "--workers > 1 needs IDP_REDIS_URL: the in-process store cannot be shared"
        )
    _database(settings).dispose()
    make_store(settings).close()
    out.print(f"Serving [bold]{settings.issuer}[/] on http://{host}:{port}  (workers: {workers})")
    uvicorn.run(
        "idp.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_config=None, access_log=False, proxy_headers=True, server_header=False,
    )


@app.command()
def demo() -> None:
    """Seed the demo city (idempotent) and write var/demo.json."""
    from idp import demo as demo_city

    settings = _settings()
    database = _database(settings)
    with out.status("Seeding the demo city..."), database.session() as session:
        content = demo_city.seed(session, settings)
    path = demo_city.write(settings, content)
    out.print(f"demo city ready: {len(content['users'])} users, {len(content['admins'])} "
              f"administrators; credentials in {path}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from core import migrate

    database = _database(_settings())
    migrate.upgrade(database.engine, revision)
    out.print(f"database at revision {migrate.current(database.engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Revert migrations down to REVISION."""
    from core import migrate

    database = _database(_settings())
    migrate.downgrade(database.engine, revision)
    out.print(f"database at revision {migrate.current(database.engine)}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the SM3 hash chain; name the first row that breaks it."""
    from core.audit import verify_chain

    database = _database(_settings())
    with database.session() as session:
        report = verify_chain(session)
    if report.ok:
        out.print(f"audit chain intact: {report.rows} rows")
        return
    err.print(f"audit chain BROKEN after {report.rows} good rows: {report.problem}")
    raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
