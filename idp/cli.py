"""The ``idp`` command line (typer + rich).

Every configuration problem ends in a one-line ``error: ...`` on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from core.audit import MIN_RETENTION_DAYS
from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="City education identity.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
audit_app = typer.Typer(no_args_is_help=True, help="Audit log.")
keys_app = typer.Typer(no_args_is_help=True, help="Signing keys and encryption keys.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    from directory.models import check_roles

    settings = load_settings()
    try:
        check_roles(settings.mfa_required_roles, "IDP_MFA_REQUIRED_ROLES")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings


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


# uvicorn's own default is 5 s: on a saturated host (the city's 8 o'clock sign-ins, two
# cores), a busy or still-starting worker can miss a ping that long and be killed with the
# sign-ins it holds. A worker that is really hung is still replaced after this.
WORKER_HEALTHCHECK_SECONDS = 30


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Worker processes (more than one needs Redis)."),
    worker_healthcheck_seconds: int = typer.Option(
        WORKER_HEALTHCHECK_SECONDS, min=1, max=600,
        help="With --workers > 1: how long a worker may take to answer the supervisor's "
             "ping before it is killed and replaced."),
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
    os.environ["WEB_CONCURRENCY"] = str(workers)  # the workers size their hashing by it
    uvicorn.run(
        "idp.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_config=None, access_log=False, proxy_headers=True, server_header=False,
        forwarded_allow_ips=list(settings.trusted_proxies),
        timeout_worker_healthcheck=worker_healthcheck_seconds,
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
    from core.signing_keys import ensure_keys

    settings = _settings()
    database = _database(settings)
    migrate.upgrade(database.engine, revision)
    out.print(f"database at revision {migrate.current(database.engine)}")
    if revision == "head":
        with database.session() as session:
            created = ensure_keys(session, settings)
        for key in created:
            out.print(f"created the first {key.alg} signing key {key.kid}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Revert migrations down to REVISION."""
    from core import migrate

    database = _database(_settings())
    migrate.downgrade(database.engine, revision)
    out.print(f"database at revision {migrate.current(database.engine)}")


@db_app.command("prune")
def db_prune(grace_days: int = typer.Option(1, min=0, help="Days to keep a family after "
                                           "its last token expired.")) -> None:
    """Delete what has ended for good: refresh-token families whose every token expired.
    Run it daily (the audit log has its own retention: idp audit prune)."""
    from datetime import timedelta

    from core.db import utcnow
    from idp.oidc import refresh_tokens

    settings = _settings()
    removed = refresh_tokens.prune(_database(settings).sessions,
                                   utcnow() - timedelta(days=grace_days))
    out.print(f"removed {removed} expired refresh tokens")


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


@audit_app.command("prune")
def audit_prune(keep_days: int = typer.Option(
        365, min=MIN_RETENTION_DAYS,
        help=f"Keep the events of this many days (at least {MIN_RETENTION_DAYS}).")) -> None:
    """Delete audit events older than the retention period; the rest stays verifiable."""
    from datetime import timedelta

    from core.audit import prune
    from core.db import utcnow
    from idp.cli_directory import _actor

    settings = _settings()
    removed = prune(_database(settings).sessions, utcnow() - timedelta(days=keep_days),
                    actor=_actor())
    out.print(f"removed {removed} audit events older than {keep_days} days")


@keys_app.command("list")
def keys_list() -> None:
    """Show every signing key and its state."""
    from rich.table import Table
    from sqlalchemy import select

    from core.db import utcnow
    from core.signing_keys import SigningKey, statuses

    settings = _settings()
    with _database(settings).session() as session:
        rows = list(session.scalars(select(SigningKey)))
    table = Table("alg", "kid", "state", "active from", "published until")
    for status in sorted(statuses(rows, settings, utcnow()), key=lambda s: (s.alg, s.active_from)):
        table.add_row(status.alg, status.kid, status.state,
                      status.active_from.isoformat(timespec="seconds"),
                      status.published_until.isoformat(timespec="seconds")
                      if status.published_until else "-")
    out.print(table)


@keys_app.command("rotate")
def keys_rotate(
    algs: list[str] = typer.Argument(None, help="Algorithms (default: all configured)."),
) -> None:
    """Create the next signing key: published now, signing after IDP_KEY_PUBLISH_SECONDS."""
    from core.signing_keys import rotate

    settings = _settings()
    chosen = algs or list(settings.signing_algs)
    with _database(settings).session() as session:
        for alg in chosen:
            try:
                key = rotate(session, settings, alg)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            out.print(f"{alg}: new key {key.kid} signs from "
                      f"{key.active_from.isoformat(timespec='seconds')}")


# A kid is an RFC 7638 thumbprint in base64url: one in 64 begins with "-", which the
# command line must take as the kid, not as an unknown option
@keys_app.command("revoke", context_settings={"ignore_unknown_options": True})
def keys_revoke(kid: str = typer.Argument(..., help="The kid of the key to withdraw.")) -> None:
    """Withdraw a signing key at once (its private key leaked): out of the JWKS, verifying
    nothing; an active one gets a successor that signs at once. Tokens it signed fail."""
    from core.audit import record
    from core.signing_keys import revoke
    from idp.cli_directory import _actor

    settings = _settings()
    with _database(settings).session() as session:
        try:
            successor = revoke(session, settings, kid)
        except LookupError as exc:
            raise ConfigError(f"{exc}; see: idp keys list") from None
        record(session, actor=_actor(), action="signing_key.revoke", outcome="success",
               target=f"signing_key:{kid}",
               detail={"successor": successor.kid if successor else None})
    out.print(f"revoked {kid}; workers stop using it within a minute" +
              (f"; {successor.alg} now signs with {successor.kid}" if successor else ""))


@keys_app.command("prune")
def keys_prune() -> None:
    """Delete signing keys that are no longer published."""
    from core.signing_keys import prune

    settings = _settings()
    with _database(settings).session() as session:
        removed = prune(session, settings)
    out.print(f"removed {len(removed)} expired keys: {', '.join(removed) or '-'}")


@keys_app.command("reencrypt")
def keys_reencrypt(batch: int = typer.Option(500, min=1, help="Rows per transaction.")) -> None:
    """Re-encrypt every encrypted field under the current master key (resumable)."""
    from rich.progress import Progress

    import migrations.models  # noqa: F401 - registers every layer's encrypted columns
    from core.field_crypto import reencrypt
    from directory.people import reindex_phone_logins

    settings = _settings()
    database = _database(settings)
    with Progress(console=out) as progress:
        task = progress.add_task("re-encrypting", total=None)
        counts = reencrypt(settings, database.sessions, batch=batch,
                           progress=lambda _column, n: progress.advance(task, n))
    for column, count in counts.items():
        out.print(f"{column}: {count} rows re-encrypted")
    logins = reindex_phone_logins(settings, database.sessions, batch=batch)
    out.print(f"phone logins: {logins.moved} moved to the current key's index")
    if logins.unknown:
        out.print(f"{logins.unknown} phone logins written before migration 0017 are not the "
                  "number on file (a guardian's second phone) and cannot be checked: import "
                  "the guardians' file again to seal their numbers, then run this again; "
                  "until then they stay findable while their key is listed in "
                  "IDP_OLD_MASTER_KEYS (docs/keys.md)")


@keys_app.command("new-master-key")
def keys_new_master_key() -> None:
    """Print a new random master key (for IDP_MASTER_KEY)."""
    import secrets

    print(secrets.token_hex(32))


from idp import cli_apps, cli_directory, cli_security  # noqa: E402 - they register on the app above

cli_directory.register(app)
cli_apps.register(app)
cli_security.register(app)


def main() -> None:
    from core.migrate import UnknownRevision

    try:
        app()
    except (ConfigError, UnknownRevision) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
