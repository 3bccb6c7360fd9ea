"""``idp apps``: register school applications as OIDC clients and look after them.

- ``idp apps register --name 智慧课堂 --redirect-uri https://app.example.cn/callback`` (or
  ``--metadata app.json`` with RFC 7591 / OIDC Registration member names) registers an
  approved app and prints its ``client_id`` and, for a confidential client, its secret:
  once, never stored (only its HMAC-SM3).
- ``idp apps list`` and ``idp apps show CLIENT_ID``: what is registered (never a secret).
- ``idp apps update CLIENT_ID --metadata app.json``: replace the metadata (checked as at
  registration).
- ``idp apps new-secret CLIENT_ID``: a new secret; the old one stops working.
- ``idp apps status CLIENT_ID approved|suspended|pending``: a suspended app gets
  ``invalid_client`` and an error page instead of sign-ins.

Every change is audited with the operator as the actor (``cli:<user>``). Running servers
see a change within ``idp.oidc.clients.CACHE_SECONDS`` (30 s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from core import json_input
from core.audit import record
from core.settings import Settings
from core.store import Store, make_store
from directory.apps import (
    CLIENT_ID,
    App,
    AppStatus,
    check_resource_identifiers_free,
    check_signing_algs,
    find_app,
    metadata_of,
    new_secret,
    register_app,
    validate_metadata,
)
from directory.models import OrgUnit
from directory.sectors import check_sector_identifier, sector_of
from idp.cli_directory import _actor, _fail, printable
from idp.oidc import resources
from idp.oidc.tokens import ACCESS_TOKEN_SECONDS

# A chosen client_id may begin with "-": the command line takes it as the id, not an option
DASHED = {"ignore_unknown_options": True}
apps_app = typer.Typer(no_args_is_help=True, help="School applications (OIDC clients).")
out = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut-off client_ids


def _read_metadata(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json_input.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # json_input: too deep is a ValueError too
        raise _fail(f"{path}: not a readable JSON file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise _fail(f"{path}: the metadata must be a JSON object")
    return data


def _flags(redirect_uri: list[str], post_logout_redirect_uri: list[str],
           grant_type: list[str], auth_method: str | None, id_token_alg: str | None,
           scope: str | None) -> dict[str, Any]:
    given = {"redirect_uris": redirect_uri, "post_logout_redirect_uris": post_logout_redirect_uri,
             "grant_types": grant_type, "token_endpoint_auth_method": auth_method,
             "id_token_signed_response_alg": id_token_alg, "scope": scope}
    return {k: v for k, v in given.items() if v}


def _checked_app(metadata: dict[str, Any]) -> dict[str, Any]:
    """Registration's checks (with the sector identifier's document, fetched), and one the
    CLI adds: an app signs people in somewhere."""
    try:
        validate_metadata(metadata)
        check_sector_identifier(metadata)  # fetches the document: only once the rest is fine
    except (ValueError, TypeError) as exc:
        raise _fail(f"metadata: {exc}") from None
    grants = metadata.get("grant_types", ["authorization_code", "refresh_token"])
    if not metadata.get("redirect_uris") and grants != ["client_credentials"]:
        raise _fail("give at least one --redirect-uri (or make a client_credentials-only "
                    "app: --grant-type client_credentials)")
    return metadata


def _app(session: Any, client_id: str) -> App:
    app = find_app(session, client_id)
    if app is None:
        raise _fail(f"no app with client_id {client_id!r}")
    return app


@apps_app.command("register")
def apps_register(
    name: str = typer.Option(..., help="The app's name as people see it (consent page)."),
    metadata: Path = typer.Option(None, help="JSON file of client metadata (RFC 7591 names)."),
    redirect_uri: list[str] = typer.Option([], help="Where codes go; repeatable."),
    post_logout_redirect_uri: list[str] = typer.Option([], help="After sign-out; repeatable."),
    grant_type: list[str] = typer.Option([], help="Default: authorization_code, "
                                         "refresh_token; repeatable."),
    auth_method: str = typer.Option(None, help="token_endpoint_auth_method (default "
                                    "client_secret_basic; none: a public client with PKCE)."),
    id_token_alg: str = typer.Option(None, help="id_token_signed_response_alg (default: "
                                     "IDP_ID_TOKEN_ALG_DEFAULT)."),
    scope: str = typer.Option(None, help="Scopes the app may ask for (default: openid "
                              "profile)."),
    org: str = typer.Option(None, help="Code of the org unit that registers the app."),
    first_party: bool = typer.Option(False, help="The city's own app: no consent screen."),
    client_id: str = typer.Option(None, help="A chosen client_id (default: generated)."),
) -> None:
    """Register an approved app; print its client_id and secret (the secret only now)."""
    from idp.cli import _database, _settings

    data = {**_read_metadata(metadata), **_flags(redirect_uri, post_logout_redirect_uri,
                                                 grant_type, auth_method, id_token_alg, scope)}
    if client_id is not None and not CLIENT_ID.match(client_id):
        raise _fail("--client-id: 1 to 64 of A-Z a-z 0-9 . _ ~ -")
    if not name.strip() or len(name) > 200:
        raise _fail("--name: 1 to 200 characters")
    settings = _settings()
    _checked_app({"id_token_signed_response_alg": settings.id_token_alg_default, **data})
    database = _database(settings)
    try:
        with database.session() as session:
            if client_id and find_app(session, client_id) is not None:
                raise _fail(f"client_id {client_id!r} is taken")
            unit = None
            if org:
                unit = session.scalar(select(OrgUnit).where(OrgUnit.code == org))
                if unit is None:
                    raise _fail(f"no org unit with code {org!r}")
            try:
                app, secret = register_app(session, settings, name=name, metadata=data,
                                           client_id=client_id or None,
                                           first_party=first_party,
                                           org_unit_id=unit.id if unit else None)
            except ValueError as taken:  # an API's identifier another app holds
                raise _fail(f"metadata: {taken}") from None
            app.status_set_at = ""  # approved by the operators: not the console's to undo
            record(session, actor=_actor(), action="app.register", outcome="success",
                   target=f"app:{app.client_id}")
            registered = app.client_id
    finally:
        database.dispose()
    print(f"client_id: {registered}")
    if secret:
        print(f"client_secret: {secret}")


@apps_app.command("list")
def apps_list() -> None:
    """The registered apps."""
    from idp.cli import _database, _settings

    database = _database(_settings())
    table = Table("client_id", "name", "status", "first party", "auth method", "redirect URIs")
    try:
        with database.session() as session:
            for app in session.scalars(select(App).order_by(App.client_id)):
                meta = json.loads(app.metadata_json or "{}")
                table.add_row(app.client_id, Text(printable(app.name)), app.status,
                              "yes" if app.first_party else "no",
                              meta.get("token_endpoint_auth_method", "client_secret_basic"),
                              str(len(meta.get("redirect_uris", []))))
    finally:
        database.dispose()
    out.print(table)


@apps_app.command("show", context_settings=DASHED)
def apps_show(client_id: str = typer.Argument(...)) -> None:
    """One app's registration, as JSON (no secret)."""
    from idp.cli import _database, _settings

    database = _database(_settings())
    try:
        with database.session() as session:
            app = _app(session, client_id)
            shown = {**json.loads(app.metadata_json or "{}"),  # the registry's own last
                     "client_id": app.client_id, "client_name": app.name,
                     "status": app.status, "first_party": app.first_party,
                     "has_client_secret": app.client_secret_mac is not None}
    finally:
        database.dispose()
    print(json.dumps(shown, ensure_ascii=False, indent=2, sort_keys=True))


@apps_app.command("update", context_settings=DASHED)
def apps_update(client_id: str = typer.Argument(...),
                metadata: Path = typer.Option(..., help="JSON file: the new metadata.")) -> None:
    """Replace an app's metadata (its secret, name and status stay)."""
    from idp.cli import _database, _settings

    settings = _settings()
    # as at registration: an app that names no ID-token algorithm gets the platform's
    data = _checked_app({"id_token_signed_response_alg": settings.id_token_alg_default,
                         **_read_metadata(metadata)})
    database = _database(settings)
    try:
        with database.session() as session:
            app = _app(session, client_id)
            old_method = json.loads(app.metadata_json or "{}").get(
                "token_endpoint_auth_method", "client_secret_basic")
            if data.get("token_endpoint_auth_method", "client_secret_basic") != old_method:
                raise _fail("the client authentication method cannot change; register a new "
                            "app")
            after = sector_of(data.get("subject_type", "public"), data.get("redirect_uris", []),
                              data.get("sector_identifier_uri"))
            if metadata_of(app).sector != after:  # OIDC Core 12.2: sub never changes
                raise _fail("a pairwise app's subject_type or sector (its redirect host, or "
                            "its sector_identifier_uri's host) cannot change: everyone would "
                            "get a new sub; register a new app")
            try:
                check_signing_algs(settings, data)
                check_resource_identifiers_free(session, settings, data, client_id)
            except ValueError as taken:
                raise _fail(f"metadata: {taken}") from None
            released = (set(metadata_of(app).resource_identifiers)
                        - set(data.get("resource_identifiers", [])))
            store = _shared_store(settings) if released else None
            app.metadata_json = json.dumps(data, ensure_ascii=False, sort_keys=True)
            record(session, actor=_actor(), action="app.update", outcome="success",
                   target=f"app:{client_id}",
                   detail={"released_identifiers": len(released)} if released else None)
        if store is not None:
            _mark_given_up(store, released)
    finally:
        database.dispose()
    print("updated")


def _shared_store(settings: Settings) -> Store | None:
    """The store the servers share, checked before anything changes (an identifier given
    up: ``_mark_given_up``); None, with a warning, without ``IDP_REDIS_URL`` (one server
    process with a store of its own, which the CLI cannot reach)."""
    if not settings.redis_url:
        Console(stderr=True).print(
            "warning: no IDP_REDIS_URL: the server's introspection is not told that the "
            "identifiers were given up; the old API's access tokens for them stay active "
            "there until they expire (an hour)")
        return None
    try:
        return make_store(settings)  # it checks that the store answers
    except Exception as error:  # any failure of the store: change nothing
        raise _fail(f"the shared store could not be reached ({type(error).__name__}); "
                    "nothing was changed") from None


def _mark_given_up(store: Store, identifiers: set[str]) -> None:
    """Once the update is committed (RFC 8707): access tokens for ``identifiers`` issued
    so far, and by workers whose registry still names the old API, are ``active: false``
    at introspection (``resources.mark_given_up``). Grants and consents need nothing here:
    they name the app that held each identifier (``resources.audience``,
    ``consent.covers``)."""
    try:
        resources.mark_given_up(store, identifiers, ACCESS_TOKEN_SECONDS)
    except Exception as error:  # the update stands: say what is missing
        raise _fail(f"updated, but the shared store could not be told "
                    f"({type(error).__name__}): the old API's access tokens stay active at "
                    "introspection until they expire (an hour)") from None
    finally:
        store.close()


@apps_app.command("new-secret", context_settings=DASHED)
def apps_new_secret(client_id: str = typer.Argument(...)) -> None:
    """Give a confidential app a new secret (printed once); the old one stops working."""
    from idp.cli import _database, _settings

    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            app = _app(session, client_id)
            if app.client_secret_mac is None:
                raise _fail("this app authenticates without a client secret")
            secret = new_secret(settings, app)
            record(session, actor=_actor(), action="app.new_secret", outcome="success",
                   target=f"app:{client_id}")
    finally:
        database.dispose()
    print(f"client_secret: {secret}")


@apps_app.command("status", context_settings=DASHED)
def apps_status(client_id: str = typer.Argument(...),
                status: AppStatus = typer.Argument(..., help="approved, suspended or "
                                                   "pending.")) -> None:
    """Approve or suspend an app."""
    from idp.cli import _database, _settings

    database = _database(_settings())
    try:
        with database.session() as session:
            app = _app(session, client_id)
            app.status, app.status_set_at = status.value, ""  # the operators': not the console's
            record(session, actor=_actor(), action="app.status", outcome="success",
                   target=f"app:{client_id}", detail={"status": status.value})
    finally:
        database.dispose()
    print(status.value)


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps")
