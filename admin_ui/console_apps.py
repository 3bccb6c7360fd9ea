"""The admin console's apps (``/admin/apps``): the school applications of a unit.

An administrator sees the apps registered by their unit and the units below it, and:

- **registers** one for their unit: a name, its redirect URIs and its kind (a web app that
  keeps a client secret, or a public app, single-page or mobile, with PKCE). It starts
  ``pending``: nobody signs in to it until it is approved. The client secret is shown once
  on a page of its own (post, redirect, get; kept five minutes in the store for this
  administrator's session), never stored but as its HMAC-SM3;
- **approves or suspends** an app of a unit *below* theirs (a school's app by its district
  or the city; a district's by the city): the unit that registers an app does not approve
  it. The city has no unit above, so its administrators decide on the city's own apps.
  Nobody approves an app they registered themselves (``app.registered_by``), whatever
  units they administer: four eyes see every app before people sign in to it;
- changes an app's **redirect URIs**: anyone of its unit or above until anyone decides on
  it (the approver sees what they approve, and approves what their page showed: a
  ``fingerprint``); once approved or suspended, only who may approve it;
- gives a confidential app of their unit or below a **new secret** (the old one stops).

Everything else (its other metadata, first-party apps, APIs, pairwise subjects) stays with
the operators' ``idp apps``. The helpdesk has no apps page (403). Every change needs the
administrator's sign-in from the last ten minutes and the page's CSRF token, and is
audited as ``account:<id>`` (``app.register``, ``app.status``, ``app.update``,
``app.new_secret``), as the command line's. Running servers see a change within
``idp.oidc.clients.CACHE_SECONDS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin_ui.console import (
    Administrator,
    administrator_of,
    keep_to_show,
    render_console,
    take_to_show,
)
from core.audit import record
from core.gm.sm3 import sm3
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.i18n import N_
from directory.apps import (
    App,
    AppStatus,
    find_app,
    metadata_of,
    new_secret,
    register_app,
    validate_metadata,
)
from directory.identifiers import has_invisible
from directory.models import OrgKind, OrgUnit

router = APIRouter(prefix="/admin/apps", include_in_schema=False,
                   dependencies=[Depends(require_csrf)])

KINDS = {"web": "client_secret_basic", "public": "none"}  # the form's choice -> auth method
NO_SUCH_APP = N_("No such app in the unit you administer.")
NOT_YOURS_TO_DECIDE = N_("An app is approved or suspended by the administrator of the unit "
                         "above the one that registered it.")
NOT_YOUR_OWN = N_("You registered this app yourself: another administrator of the unit above "
                  "approves it.")
NOT_YOURS_TO_CHANGE = N_("Once an app was approved or suspended, its redirect URIs are changed "
                         "by who may approve it: an administrator of the unit above who did "
                         "not register it.")
CHANGED_SINCE = N_("The app was changed after your page showed it: look at it again before "
                   "approving it.")
PAIRWISE = N_("This app gives people pairwise identifiers, which its redirect addresses "
              "determine: the platform's operators change them.")
BAD_NAME = N_("Give the app a name of 1 to 200 characters.")
BAD_URIS = N_("Give one to ten redirect URIs, one per line: web addresses (https://...) or a "
              "mobile app's own scheme (com.example.app:/callback), without spaces or a "
              "fragment (#).")
BAD_KIND = N_("Choose what kind of app it is.")
DONE = {
    "approved": N_("The app was approved: people can sign in to it (running servers see it "
                   "within a minute)."),
    "suspended": N_("The app was suspended: sign-ins to it are refused (running servers see "
                    "it within a minute)."),
    "updated": N_("The app's redirect URIs were changed (running servers see it within a "
                  "minute)."),
}


APP_LABELS = {"pending": N_("pending approval"), "approved": N_("approved"),
              "suspended": N_("suspended")}


def _apps_url(unit_code: str, **more: str) -> str:
    return "/admin/apps?" + urlencode({"unit": unit_code, **more})


def _listed(db: Session, admin: Administrator) -> list[tuple[App, OrgUnit]]:
    """The apps of the unit and the units below it, newest first."""
    rows = db.execute(
        select(App, OrgUnit).join(OrgUnit, OrgUnit.id == App.org_unit_id)
        .where(OrgUnit.path.startswith(admin.unit.path))
        .order_by(App.created_at.desc(), App.id.desc()))
    return [(app, unit) for app, unit in rows]


def may_decide(admin: Administrator, unit: OrgUnit, app: App) -> bool:
    """Whether the administrator approves and suspends ``app`` of ``unit``: a unit below
    theirs, or their own when it is the city (no unit above); and the last decision on it
    was not taken above theirs (by a unit above, or by the operators)."""
    decided = app.status_set_at
    if decided is not None and not decided.startswith(admin.unit.path):
        return False
    return unit.path.startswith(admin.unit.path) and (
        unit.path != admin.unit.path
        or (admin.unit.parent_id is None and admin.unit.kind == OrgKind.city.value))


def may_approve(admin: Administrator, unit: OrgUnit, app: App) -> bool:
    """``may_decide``, and not the administrator who registered the app."""
    return may_decide(admin, unit, app) and app.registered_by != admin.scope.actor


def may_change_uris(admin: Administrator, unit: OrgUnit, app: App) -> bool:
    """Before anyone decided on it (pending since registration): the app's unit and above
    (``_app_of`` checked that); once decided on (approved; suspended since, whose approval
    would come back with the URIs; or held by the operators), only who may approve it. A
    pairwise app's sector is its redirect host: the operators'."""
    if metadata_of(app).sector is not None:
        return False
    undecided = app.status == AppStatus.pending.value and app.status_set_at is None
    return undecided or may_approve(admin, unit, app)


def fingerprint(app: App) -> str:
    """What an approval is of: the app's name and metadata (its redirect URIs) as the
    approver's page showed them. An approval that saw something else is refused."""
    seen = json.dumps([app.name, app.metadata_json], ensure_ascii=False)
    return sm3(seen.encode()).hex()[:32]


def _row(app: App, unit: OrgUnit, admin: Administrator) -> dict[str, object]:
    return {"client_id": app.client_id, "name": app.name, "status": app.status,
            "seen": fingerprint(app),
            "unit": unit.name, "uris": list(metadata_of(app).redirect_uris),
            "public": app.client_secret_mac is None,
            "operators": operators_only(app), "decides": may_decide(admin, unit, app),
            "approves": may_approve(admin, unit, app),
            "edits": may_change_uris(admin, unit, app)}


@router.get("")
def apps_page(request: Request, unit: str = "", done: str = "") -> Response:
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
        admin.check_full()
        rows = [_row(app, at, admin) for app, at in _listed(db, admin)]
    return render_console(request, "console_apps.html", admin, apps=rows,
                          done=DONE.get(done, ""), form={}, app_labels=APP_LABELS)


def operators_only(app: App) -> bool:
    """An app only the operators' ``idp apps`` changes: first-party (no consent), or an
    API or gateway (``protected_resource``, ``client_credentials``)."""
    client = metadata_of(app)
    return (client.first_party or client.protected_resource
            or "client_credentials" in client.grant_types)


def _app_of(db: Session, admin: Administrator, client_id: str, *,
            acting: bool = True) -> tuple[App, OrgUnit]:
    """An app of the unit or below (404 otherwise, whether it exists or not); to act on,
    not one of the operators' own."""
    app = find_app(db, client_id[:64], for_update=acting)  # changes to one app: in turn
    unit = db.get(OrgUnit, app.org_unit_id) if app and app.org_unit_id else None
    if app is None or unit is None or not unit.path.startswith(admin.unit.path) or (
            acting and operators_only(app)):
        raise PageError(404, NO_SUCH_APP)
    return app, unit


def _acting(request: Request, unit: str, back: str,
            action: Callable[[Session, Administrator], tuple[Response, str | None]]
            ) -> Response:
    """An administrator signed in within ten minutes (else to the sign-in, then ``back``),
    and ``action`` in one transaction; once it has committed, this process forgets the
    cached metadata of the app it changed (other processes within
    ``idp.oidc.clients.CACHE_SECONDS``)."""
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit, then=back)
        if isinstance(admin, Response):
            return admin
        admin.check_full()
        answer, changed = action(db, admin)
    registry = getattr(request.app.state, "clients", None)
    if changed and registry is not None:
        registry.forget(changed)
    return answer


def _show_secret(request: Request, admin: Administrator, client_id: str,
                 secret: str | None) -> Response:
    """Keep a new secret for its page (post, redirect, get), and go there."""
    if secret:
        keep_to_show(request, admin, f"client-secret:{client_id}", secret)
    return RedirectResponse(f"/admin/apps/{quote(client_id, safe='')}/secret?"
                            + urlencode({"unit": admin.unit.code}), status_code=303)


def _metadata(uris: str, kind: str) -> tuple[dict[str, object], str]:
    """The metadata the form describes, or what is wrong with it."""
    if kind not in KINDS:
        return {}, BAD_KIND
    return _with_uris({"token_endpoint_auth_method": KINDS[kind]}, uris)


def _with_uris(metadata: dict[str, object], uris: str) -> tuple[dict[str, object], str]:
    """``metadata`` with the redirect URIs of the form's text, or what is wrong with them."""
    listed = [line.strip() for line in uris.splitlines() if line.strip()]
    if not 0 < len(listed) <= 10:
        return {}, BAD_URIS
    if not all(uri.isascii() and "@" not in urlsplit(uri).netloc for uri in listed):
        return {}, BAD_URIS  # the host the approver reads is where the codes go
    metadata = {**metadata, "redirect_uris": listed}
    try:
        validate_metadata(dict(metadata))
    except (ValueError, TypeError):
        return {}, BAD_URIS
    return metadata, ""


def _page_with_error(request: Request, db: Session, admin: Administrator, problem: str,
                     form: dict[str, str]) -> Response:
    rows = [_row(app, at, admin) for app, at in _listed(db, admin)]
    return render_console(request, "console_apps.html", admin, apps=rows, done="",
                          error=problem, status=400, app_labels=APP_LABELS, form=form)


@router.post("/register")
def register(request: Request, unit: str = Form("", max_length=64),
             name: str = Form("", max_length=400), redirect_uris: str = Form("", max_length=5000),
             kind: str = Form("", max_length=10)) -> Response:
    state = request.app.state

    def registered(db: Session, admin: Administrator) -> tuple[Response, str | None]:
        metadata, problem = _metadata(redirect_uris, kind)
        if not 0 < len(name.strip()) <= 200 or has_invisible(name):
            problem = BAD_NAME  # a control or direction mark would disguise it (consent)
        if problem:
            form = {"name": name, "redirect_uris": redirect_uris, "kind": kind}
            return _page_with_error(request, db, admin, problem, form), None
        app, secret = register_app(db, state.settings, name=name.strip(), metadata=metadata,
                                   status=AppStatus.pending, org_unit_id=admin.unit.id)
        app.registered_by = admin.scope.actor
        record(db, actor=admin.scope.actor, action="app.register", outcome="success",
               target=f"app:{app.client_id}", context=admin.context(request))
        return _show_secret(request, admin, app.client_id, secret), app.client_id
    return _acting(request, unit, _apps_url(unit), registered)


@router.get("/{client_id}/secret")
def secret_page(request: Request, client_id: str, unit: str = "") -> Response:
    """The app's client_id and, once, its new secret."""
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
        admin.check_full()
        app, _unit = _app_of(db, admin, client_id, acting=False)
        row = {"client_id": app.client_id, "name": app.name, "status": app.status,
               "public": app.client_secret_mac is None}
    secret = take_to_show(request, admin, f"client-secret:{app.client_id}")
    return render_console(request, "console_app_secret.html", admin, app=row, secret=secret,
                          app_labels=APP_LABELS)


@router.post("/{client_id}/status")
def change_status(request: Request, client_id: str, unit: str = Form("", max_length=64),
                  status: str = Form("", max_length=20),
                  seen: str = Form("", max_length=64)) -> Response:
    def decide(db: Session, admin: Administrator) -> tuple[Response, str | None]:
        app, at = _app_of(db, admin, client_id)
        if status not in (AppStatus.approved.value, AppStatus.suspended.value):
            raise PageError(400, NOT_YOURS_TO_DECIDE)
        if not may_decide(admin, at, app):
            raise PageError(403, NOT_YOURS_TO_DECIDE)
        if status == AppStatus.approved.value and not may_approve(admin, at, app):
            raise PageError(403, NOT_YOUR_OWN)
        if status == AppStatus.approved.value and seen != fingerprint(app):
            raise PageError(409, CHANGED_SINCE)
        app.status, app.status_set_at = status, admin.unit.path
        record(db, actor=admin.scope.actor, action="app.status", outcome="success",
               target=f"app:{app.client_id}", detail={"status": status},
               context=admin.context(request))
        done = RedirectResponse(_apps_url(admin.unit.code, done=status), status_code=303)
        return done, app.client_id
    return _acting(request, unit, _apps_url(unit), decide)


@router.post("/{client_id}/redirect-uris")
def change_redirect_uris(request: Request, client_id: str, unit: str = Form("", max_length=64),
                         redirect_uris: str = Form("", max_length=5000)) -> Response:
    def changed(db: Session, admin: Administrator) -> tuple[Response, str | None]:
        app, at = _app_of(db, admin, client_id)
        if metadata_of(app).sector is not None:
            raise PageError(403, PAIRWISE)
        if not may_change_uris(admin, at, app):
            raise PageError(403, NOT_YOURS_TO_CHANGE)
        metadata, problem = _with_uris(json.loads(app.metadata_json or "{}"), redirect_uris)
        if problem:
            form = {"edit": app.client_id, "edit_uris": redirect_uris}
            return _page_with_error(request, db, admin, problem, form), None
        app.metadata_json = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
        record(db, actor=admin.scope.actor, action="app.update", outcome="success",
               target=f"app:{app.client_id}",
               detail={"redirect_uris": metadata["redirect_uris"]},  # the new list: not personal
               context=admin.context(request))
        done = RedirectResponse(_apps_url(admin.unit.code, done="updated"), status_code=303)
        return done, app.client_id
    return _acting(request, unit, _apps_url(unit), changed)


@router.post("/{client_id}/new-secret")
def give_new_secret(request: Request, client_id: str,
                    unit: str = Form("", max_length=64)) -> Response:
    state = request.app.state

    def renewed(db: Session, admin: Administrator) -> tuple[Response, str | None]:
        app, _unit = _app_of(db, admin, client_id)
        if app.client_secret_mac is None:
            raise PageError(404, NO_SUCH_APP)
        secret = new_secret(state.settings, app)
        record(db, actor=admin.scope.actor, action="app.new_secret", outcome="success",
               target=f"app:{app.client_id}", context=admin.context(request))
        return _show_secret(request, admin, app.client_id, secret), app.client_id
    return _acting(request, unit, _apps_url(unit), renewed)
