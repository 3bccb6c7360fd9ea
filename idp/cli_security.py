"""``idp security unlock`` and ``idp tokens``: the operator's security commands.

- ``idp security unlock --login t20260001`` lifts a sign-in lock of an account (and forgets
  its failures); ``--ip 203.0.113.7`` does the same for a client IP. Audited with the
  operator's user name as the actor (``cli:<user>``). Locks live in the store, so this needs
  the shared Redis store (``IDP_REDIS_URL``); a single-process server keeps them in its own
  memory, out of reach of another process: use the admin API there.
- ``idp security reset-mfa --login s20260001 [--passkeys] [--phone]`` removes an account's
  authenticator apps and recovery codes (and passkeys) after a lost or replaced phone
  (``mfa.reset``), with ``--phone`` suspends the SMS codes to its number (a stolen phone
  keeps its SIM); ``idp security restore-phone --login ...`` lifts that suspension;
  ``idp security reset-password --login ...`` prints a temporary password
  that must be replaced at the next sign-in; ``idp security sign-out --login ...`` signs
  the account out everywhere. These work on the database alone; with ``IDP_REDIS_URL``
  they also forget the wrong-code counts / lift the sign-in lock in the shared store, and
  end the account's SSO sessions at once, telling their apps (back-channel logout);
  without it the sessions, in the server's memory, end when next used.
- ``idp admin appoint --login ... --unit CODE`` makes a person an administrator of a city,
  district or school (how the city's first administrator is made; later the unit above
  does it in the admin console); ``idp admin end --login ... --unit CODE`` ends the role;
  ``--helpdesk`` for the unit's helpdesk instead (helps people sign in, appoints nobody).
- ``idp tokens issue --name ... --org CODE --permission ...`` issues a bearer API token
  for the directory API, SCIM or the admin API, scoped to an org subtree; the token is
  printed once and stored only as a MAC. ``idp tokens revoke --name ...`` revokes it.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import typer
from sqlalchemy import select

from core.audit import record
from core.db import utcnow
from core.settings import ConfigError
from core.signing_keys import KeyRing
from core.store import make_store
from directory import administrators, people
from directory.api_tokens import (
    MAX_DAYS,
    PERMISSIONS,
    ApiToken,
    issue,
    issued_detail,
    issuers_administer,
    live,
)
from directory.models import OrgUnit
from directory.people import find_login_account
from idp import sessions
from idp.cli_directory import _actor, _fail, printable
from idp.oidc import backchannel_logout
from idp.oidc.clients import ClientRegistry
from mfa import guards, reset

security_app = typer.Typer(no_args_is_help=True,
                            help="Sign-in locks and second-factor resets.")
tokens_app = typer.Typer(no_args_is_help=True, help="Bearer API tokens for machine clients.")
admin_app = typer.Typer(no_args_is_help=True, help="Who administers which unit.")


def _subject(session, settings, login: str | None,
             ip: str | None) -> tuple[guards.Limit, str]:
    if bool(login) == bool(ip):
        raise _fail("give exactly one of --login and --ip")
    if ip:
        try:
            return guards.IP, str(ipaddress.ip_address(ip))
        except ValueError:
            raise _fail(f"not an IP address: {ip!r}") from None
    assert login is not None
    account = find_login_account(session, settings, login)  # as the login form finds it
    if account is None:
        raise _fail("no account has this login identifier")
    return guards.ACCOUNT, str(account.id)


@security_app.command("unlock")
def unlock(login: str = typer.Option(None, help="Any login identifier of the account."),
           ip: str = typer.Option(None, help="A client IP address.")) -> None:
    """Lift a sign-in lock and forget the counted failures."""
    from idp.cli import _database, _settings

    settings = _settings()
    if not settings.redis_url:
        raise _fail("without IDP_REDIS_URL the locks live in the running server's memory; "
                    "lift them with the admin API (POST /api/admin/people/{uid}/unlock)")
    database, store = _database(settings), make_store(settings)
    try:
        with database.session() as session:
            limit, subject = _subject(session, settings, login, ip)
            was_locked = guards.lift(session, store, limit, subject, actor=_actor())
    finally:
        store.close()
        database.dispose()
    print("unlocked" if was_locked else "was not locked; failures forgotten")


def _signing_out(login: str, action: Callable[..., Any]) -> tuple[Any, int, float]:
    """Run ``action(session, settings, store, account)``, which signs the account of
    ``login`` out everywhere, and commit: its result, the account's id and the instant it
    was signed out (for ``end_sessions``, once the result is shown)."""
    from idp.cli import _database, _settings

    settings = _settings()
    database = _database(settings)
    store = make_store(settings) if settings.redis_url else None
    try:
        with database.session() as session:
            account = find_login_account(session, settings, login)
            if account is None:
                raise _fail("no account has this login identifier")
            result = action(session, settings, store, account)
            return result, account.id, account.signed_out_at.timestamp()
    finally:
        if store is not None:
            store.close()
        database.dispose()


def end_sessions(account_ids: Sequence[int], begun_before: float) -> None:
    """End the SSO sessions of ``account_ids`` begun before ``begun_before`` at once and
    tell their apps, as the server does (``idp.sessions.end_everywhere``), waiting for the
    deliveries and their retries within the logout tokens' lifetime. Without the shared
    store the sessions are out of reach: they end when next used (``Standing.allows``),
    their apps not told."""
    from idp.cli import _database, _settings

    settings = _settings()
    if not settings.redis_url:
        print("the sessions end when next used (without IDP_REDIS_URL they live in the "
              "server's memory: the admin API ends them at once)", file=sys.stderr)
        return
    try:
        store = make_store(settings)
    except ConfigError as exc:  # what was done is committed: say so, exit as a success
        print(f"the sessions end when next used: {exc}", file=sys.stderr)
        return
    database = _database(settings)
    try:
        state = SimpleNamespace(settings=settings, db=database, store=store,
                                keys=KeyRing(settings, database.sessions),
                                clients=ClientRegistry(database.sessions))
        backchannel_logout.start(store, take_over=False)  # interrupted: the servers go on
        ended = sum(sessions.end_everywhere(state, account_id, begun_before=begun_before)
                    for account_id in account_ids)
        left = backchannel_logout.drain(timeout=backchannel_logout.TOKEN_SECONDS)
    finally:
        backchannel_logout.stop()
        store.close()
        database.dispose()
    print(f"ended {ended} session(s)" + (
        f"; {left} back-channel logout(s) not delivered in time" if left else
        "; their apps were sent logout tokens (refusals are logged)" if ended else ""),
        file=sys.stderr)


@security_app.command("reset-mfa")
def reset_mfa(login: str = typer.Option(..., help="Any login identifier of the account."),
              passkeys: bool = typer.Option(False, help="Also remove the account's passkeys."),
              phone: bool = typer.Option(False, help="Also suspend the SMS codes to the "
                                         "account's number (a stolen phone keeps its SIM)."),
              ) -> None:
    """Remove an account's authenticator apps and recovery codes (a lost or replaced
    phone); with --passkeys its passkeys too, with --phone no SMS code goes to its number
    until restore-phone or a new number. Signs the account out everywhere."""
    removed, account_id, signed_out = _signing_out(
        login, lambda session, _settings, store, account: reset.reset(
            session, store, account.id, passkeys=passkeys, phone=phone, actor=_actor()))
    print(f"removed {removed.authenticator_apps} authenticator app(s), "
          f"{removed.recovery_codes} recovery code(s), {removed.passkeys} passkey(s)"
          + ("; SMS codes to its number suspended" if phone else ""))
    end_sessions([account_id], signed_out)


@security_app.command("restore-phone")
def restore_phone(login: str = typer.Option(..., help="Any login identifier of the account."),
                  ) -> None:
    """Lift the suspension of the SMS codes to an account's number (reset-mfa --phone)."""
    restored = _with_account(login, lambda session, account: reset.restore_phone(
        session, account.id, actor=_actor()))
    print("SMS codes to its number restored" if restored else "SMS codes were not suspended")


def _with_account(login: str, change: Callable[..., Any]) -> Any:
    """Run ``change(session, account)`` for the account of ``login`` in one transaction
    (the database alone: no store, no sessions ended)."""
    from idp.cli import _database, _settings

    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            account = find_login_account(session, settings, login)
            if account is None:
                raise _fail("no account has this login identifier")
            return change(session, account)
    finally:
        database.dispose()


@security_app.command("reset-password")
def reset_password(login: str = typer.Option(..., help="Any login identifier of the account."),
                   ) -> None:
    """Give the account a temporary password (printed once) that must be replaced at the
    next sign-in; signs it out everywhere and lifts its sign-in lock."""
    from idp import password_change

    temporary, account_id, signed_out = _signing_out(
        login, lambda session, settings, store, account: password_change.reset(
            session, settings, store, account, actor=_actor()))
    print(temporary, flush=True)  # shown before the apps are told, which may take a while
    end_sessions([account_id], signed_out)


@security_app.command("sign-out")
def sign_out(login: str = typer.Option(..., help="Any login identifier of the account.")) -> None:
    """Sign the account out everywhere: its SSO sessions and every token issued so far."""

    _, account_id, signed_out = _signing_out(
        login, lambda session, _settings, _store, account: people.sign_out(
            session, account, actor=_actor()))
    print("signed out everywhere", flush=True)
    end_sessions([account_id], signed_out)


def _administrator_change(login: str, unit: str, change: Callable[..., Any]) -> Any:
    """Run ``change(session, person, unit)`` for the account of ``login`` and the unit
    coded ``unit``, in one transaction."""
    def at_unit(session: Any, account: Any) -> Any:
        where = session.scalar(select(OrgUnit).where(OrgUnit.code == unit))
        if where is None:
            raise _fail(f"no org unit has the code {unit!r}")
        return change(session, account.person, where)
    return _with_account(login, at_unit)


@admin_app.command("appoint")
def admin_appoint(login: str = typer.Option(..., help="Any login identifier of the account."),
                  unit: str = typer.Option(..., help="The code of the city, district or "
                                           "school to administer."),
                  helpdesk: bool = typer.Option(False, "--helpdesk", help="Its helpdesk "
                                                "instead: helps people sign in, appoints "
                                                "nobody, no apps."),
                  despite_help: bool = typer.Option(
                      False, "--despite-help", help="Appoint even though someone else gave "
                      "the account a temporary password or removed its second factors in "
                      f"the last {administrators.HELP_QUARANTINE_DAYS} days (check with the "
                      "person first).")) -> None:
    """Make a person an administrator of a unit (the city's first administrator; later,
    the unit above does it in the admin console), or put them on its helpdesk. They then
    sign in with two factors."""
    def appoint(session, person, where) -> str:
        try:
            return administrators.appoint(session, person, where, actor=_actor(),
                                          helpdesk=helpdesk, despite_help=despite_help).role
        except administrators.HelpedRecently as exc:
            raise _fail(f"{exc} (--despite-help appoints anyway: check with the person "
                        "first that the account's factors are their own)") from None
        except ValueError as exc:
            raise _fail(str(exc)) from None

    print(f"{login} is now {_administrator_change(login, unit, appoint)} of {unit}")


@admin_app.command("end")
def admin_end(login: str = typer.Option(..., help="Any login identifier of the account."),
              unit: str = typer.Option(..., help="The code of the unit administered."),
              helpdesk: bool = typer.Option(False, "--helpdesk",
                                            help="End the helpdesk role instead.")) -> None:
    """End a person's administrator's (or helpdesk) role at a unit (at once; the history
    is kept)."""
    ended = _administrator_change(login, unit, lambda session, person, where:
                                  administrators.end(session, person, where, actor=_actor(),
                                                     helpdesk=helpdesk))
    role = "helpdesk role" if helpdesk else "administrator's role"
    print(f"ended {login}'s {role} at {unit}" if ended
          else f"{login} holds no {role} at {unit}")


@tokens_app.command("issue")
def tokens_issue(
    name: str = typer.Option(..., help="Who uses the token, e.g. 'district SIS sync'."),
    org: str = typer.Option(..., help="Code of the org unit whose subtree the token sees."),
    permission: list[str] = typer.Option(..., help=f"One of {sorted(PERMISSIONS)}; repeatable."),
    days: int | None = typer.Option(None, min=1, max=MAX_DAYS, help="Valid this many days "
                                    "(default: until revoked)."),
) -> None:
    """Issue a bearer API token; it is printed once and never stored."""
    from idp.cli import _database, _settings

    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            unit = session.scalar(select(OrgUnit).where(OrgUnit.code == org))
            if unit is None:
                raise _fail(f"no org unit with code {org!r}")
            try:
                row, token = issue(session, settings, name=name, scope=unit,
                                   permissions=set(permission), issued_by=_actor(), days=days)
            except ValueError as exc:
                raise _fail(str(exc)) from None
            record(session, actor=_actor(), action="api_token.issue", outcome="success",
                   target=f"api-token:{row.id}", detail=issued_detail(row, unit))
    finally:
        database.dispose()
    print(token, file=sys.stdout)


@tokens_app.command("list")
def tokens_list(
    every: bool = typer.Option(False, "--all", help="Revoked and expired tokens too."),
) -> None:
    """The tokens: id, name, scope, permissions, when issued and last used (at most an
    hour off): a token nobody uses any more is one to revoke."""
    from rich.table import Table
    from rich.text import Text

    from idp.cli import _database, _settings, out

    database = _database(_settings())
    table = Table("id", "scope", "permissions", "issued", "by", "last used", "expires",
                  *(["revoked"] if every else []))
    table.columns[0].no_wrap = True
    table.add_column("name", no_wrap=True)  # last: whatever the terminal's width
    try:
        with database.session() as session:
            query = select(ApiToken).order_by(ApiToken.id)
            if not every:
                query = query.where(ApiToken.revoked_at.is_(None))
            rows = [row for row in session.scalars(query) if every or live(row)]
            administering = issuers_administer(session, rows)
            for row in rows:
                when = [f"{at:%Y-%m-%d}" if at else "-" for at in (
                    row.created_at, row.last_used_at, row.expires_at, row.revoked_at)]
                table.add_row(str(row.id), row.org_unit.code, row.permissions.replace(" ", "\n"),
                              when[0], _issuer(row, administering[row.id]), when[1],
                              when[2],
                              *(when[3:] if every else []),
                              Text(printable(row.name)))  # a console administrator's words
    finally:
        database.dispose()
    out.print(table)


def _issuer(row: ApiToken, administers: bool) -> str:
    """Who issued it; a console token whose issuer no longer administers its unit has
    stopped (``directory.api_tokens.issuer_administers``) and says so."""
    return (row.issued_by or "-") + ("" if administers else "\n(stopped: no longer admin)")


@tokens_app.command("revoke")
def tokens_revoke(
    name: str | None = typer.Option(None, help="Revoke every live token with this name."),
    token_id: int | None = typer.Option(None, "--id", help="Revoke this one token "
                                        "(`idp tokens list`): names need not be unique."),
) -> None:
    """Revoke a token by its id, or every live token with a name."""
    from idp.cli import _database, _settings

    if (name is None) == (token_id is None):
        raise _fail("give exactly one of --name or --id")
    database = _database(_settings())
    try:
        with database.session() as session:
            rows = session.scalars(select(ApiToken).where(
                ApiToken.name == name if token_id is None else ApiToken.id == token_id,
                ApiToken.revoked_at.is_(None))).all()
            for row in rows:
                row.revoked_at = utcnow()
                record(session, actor=_actor(), action="api_token.revoke", outcome="success",
                       target=f"api-token:{row.id}")
    finally:
        database.dispose()
    print(f"revoked {len(rows)} token(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(security_app, name="security")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(admin_app, name="admin")
