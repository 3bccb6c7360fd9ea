"""The admin console's API tokens (``/admin/tokens``): a unit's machine clients of the
admin API and the directory API.

An administrator (not the helpdesk: 403) sees the live tokens of their unit and the units
below it, and:

- **issues** one for their unit or a district or school below it (its code): a name saying
  who uses it, the permissions it carries, and how long it lasts (30, 90 or 365 days; the
  console issues no token for ever). The permissions are the console's own powers and no
  more: ``directory:read``, ``security:unlock``, ``security:mfa-reset`` and
  ``security:password-reset``. ``scim`` writes the directory, which no console
  administrator does: it stays with the operators' ``idp tokens issue``. The token is shown
  once on a page of its own (post, redirect, get; kept five minutes in the store for this
  administrator's session, sealed), never stored but as its HMAC-SM3;
- **revokes** a token issued in the console for their unit or below, whoever issued it
  (an administrator who left: theirs have stopped, and are the unit's others to revoke).
  The operators' tokens are listed without a button: they revoke them with
  ``idp tokens revoke``.

A token issued here acts with its issuer's powers, so it stops when they end: their
administrator's role over its unit, their account, their person's being active
(``directory.api_tokens.issuer_administers``). The list marks such a token "stopped" so
that the unit's other administrators see why a program lost its access, and can issue
it a token of their own.

A token reaches what the admin API allows inside its subtree: the people it *manages*
(``directory.api.managed_person``), never an administrator of the subtree's root, so a
token issued here takes over no co-administrator. Every change needs the administrator's
sign-in from the last ten minutes and the page's CSRF token, and is audited as
``account:<id>`` (``api_token.issue``, ``api_token.revoke``), as the command line's.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

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
from core.db import utcnow
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.i18n import N_
from directory.administrators import ROLE_FOR_KIND, last_appointment_over
from directory.api_tokens import (
    ApiToken,
    issue,
    issued_detail,
    issued_in_console,
    issuers_administer,
    live,
)
from directory.identifiers import has_invisible
from directory.models import OrgUnit

router = APIRouter(prefix="/admin/tokens", include_in_schema=False,
                   dependencies=[Depends(require_csrf)])

# what a token issued here may carry (the console's own powers), in the page's order
GIVEN = {
    "directory:read": N_("read the directory (people, units, placements) of the unit"),
    "security:unlock": N_("lift sign-in locks and sign people out everywhere"),
    "security:mfa-reset": N_("remove people's second factors (a lost phone)"),
    "security:password-reset": N_("give people temporary passwords"),
}
OPERATORS_ONLY = N_("scim: provisioning, issued by the platform's operators")
DAYS = (30, 90, 365)
NO_SUCH_TOKEN = N_("No such token in the unit you administer.")
BAD_NAME = N_("Give the token a name of 1 to 100 characters that says who uses it.")
BAD_UNIT = N_("Give the code of your unit, or of a district or school under it.")
BAD_PERMISSIONS = N_("Choose at least one thing the token may do.")
BAD_DAYS = N_("Choose how long the token lasts.")
DONE = {"revoked": N_("The token was revoked: it no longer works.")}


def _tokens_url(unit_code: str, **more: str) -> str:
    return "/admin/tokens?" + urlencode({"unit": unit_code, **more})


def _listed(db: Session, admin: Administrator) -> list[dict[str, object]]:
    """The live tokens of the unit and the units below it, newest first."""
    now = utcnow()
    rows = [(row, unit) for row, unit in db.execute(
        select(ApiToken, OrgUnit).join(OrgUnit, OrgUnit.id == ApiToken.org_unit_id)
        .where(OrgUnit.path.startswith(admin.unit.path), ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())) if live(row, now)]
    administering = issuers_administer(db, [row for row, _unit in rows])
    return [{"id": row.id, "name": row.name, "unit": unit.name, "code": unit.code,
             "permissions": row.permissions.split(), "issued": row.created_at.date(),
             "expires": row.expires_at.date() if row.expires_at else None,
             "last_used": row.last_used_at.date() if row.last_used_at else None,
             "yours": row.issued_by == admin.scope.actor,
             "console": issued_in_console(row),
             "stopped": not administering[row.id]}  # its issuer's role has ended
            for row, unit in rows]


def _page(request: Request, db: Session, admin: Administrator, *, done: str = "",
          error: str = "", form: dict[str, object] | None = None,
          status: int = 200) -> Response:
    return render_console(request, "console_tokens.html", admin, tokens=_listed(db, admin),
                          given=GIVEN, operators_only=OPERATORS_ONLY, days=DAYS,
                          done=DONE.get(done, ""), error=error, form=form or {},
                          status=status)


@router.get("")
def tokens_page(request: Request, unit: str = "", done: str = "") -> Response:
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
        admin.check_full()
        return _page(request, db, admin, done=done)


def _acting(request: Request, unit: str,
            action: Callable[[Session, Administrator], Response]) -> Response:
    """An administrator signed in within ten minutes (else to the sign-in, then back to
    the tokens page), and ``action`` in one transaction."""
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit, then=_tokens_url(unit))
        if isinstance(admin, Response):
            return admin
        admin.check_full()
        return action(db, admin)


def _scope_unit(db: Session, admin: Administrator, code: str) -> OrgUnit | None:
    """The open unit ``code``: the administrator's own, or a district or school below."""
    unit = db.scalar(select(OrgUnit).where(OrgUnit.code == code.strip()[:64]))
    if unit is None or unit.status != "active" or not unit.path.startswith(admin.unit.path):
        return None
    return unit if unit.id == admin.unit.id or unit.kind in ROLE_FOR_KIND else None


@router.post("/issue")
def issue_token(request: Request, unit: str = Form("", max_length=64),
                name: str = Form("", max_length=400), at: str = Form("", max_length=64),
                permission: list[str] = Form([], max_length=40),
                days: str = Form("", max_length=4)) -> Response:
    state = request.app.state

    def issued(db: Session, admin: Administrator) -> Response:
        scope = _scope_unit(db, admin, at)
        # the appointments the token acts by (ApiToken.last_appointment_id): the
        # administrator's own, over the unit chosen
        appointed = (None if scope is None
                     else last_appointment_over(db, admin.scope.account_id, scope.path))
        chosen = set(permission)
        problem = (BAD_NAME if not 0 < len(name.strip()) <= 100
                   or has_invisible(name)  # no control characters: a terminal shows the
                   # name (idp tokens list), and an escape there is a command
                   else BAD_UNIT if scope is None or appointed is None
                   else BAD_PERMISSIONS if not chosen or not chosen <= GIVEN.keys()
                   else BAD_DAYS if days not in {str(d) for d in DAYS} else "")
        if problem or scope is None or appointed is None:
            form = {"name": name, "at": at, "permission": sorted(chosen & GIVEN.keys()),
                    "days": days}
            return _page(request, db, admin, error=problem, form=form, status=400)
        row, token = issue(db, state.settings, name=name.strip(), scope=scope,
                           permissions=chosen, issued_by=admin.scope.actor, days=int(days),
                           last_appointment_id=appointed)
        record(db, actor=admin.scope.actor, action="api_token.issue", outcome="success",
               target=f"api-token:{row.id}", detail=issued_detail(row, scope),
               context=admin.context(request))
        keep_to_show(request, admin, f"api-token:{row.id}", token)
        return RedirectResponse(f"/admin/tokens/{row.id}?"
                                + urlencode({"unit": admin.unit.code}), status_code=303)
    return _acting(request, unit, issued)


def _token_of(db: Session, admin: Administrator, token_id: str) -> tuple[ApiToken, OrgUnit]:
    """A token of the unit or below (404 otherwise, whether it exists or not)."""
    row = db.get(ApiToken, int(token_id)) if token_id.isascii() and token_id.isdigit() \
        and len(token_id) < 10 else None
    unit = db.get(OrgUnit, row.org_unit_id) if row is not None else None
    if row is None or unit is None or not unit.path.startswith(admin.unit.path):
        raise PageError(404, NO_SUCH_TOKEN)
    return row, unit


@router.get("/{token_id}")
def token_shown(request: Request, token_id: str, unit: str = "") -> Response:
    """The token just issued, once: a reload says it was shown."""
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
        admin.check_full()
        row, at = _token_of(db, admin, token_id)
        shown = {"id": row.id, "name": row.name, "unit": at.name,
                 "permissions": row.permissions.split(),
                 "expires": row.expires_at.date() if row.expires_at else None}
    return render_console(request, "console_token_shown.html", admin, token=shown,
                          given=GIVEN, value=take_to_show(request, admin,
                                                          f"api-token:{shown['id']}"))


@router.post("/{token_id}/revoke")
def revoke_token(request: Request, token_id: str,
                 unit: str = Form("", max_length=64)) -> Response:
    def revoked(db: Session, admin: Administrator) -> Response:
        row, _at = _token_of(db, admin, token_id)
        if not issued_in_console(row):
            raise PageError(404, NO_SUCH_TOKEN)  # the operators' own: idp tokens revoke
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            record(db, actor=admin.scope.actor, action="api_token.revoke", outcome="success",
                   target=f"api-token:{row.id}", context=admin.context(request))
        return RedirectResponse(_tokens_url(admin.unit.code, done="revoked"),
                                status_code=303)
    return _acting(request, unit, revoked)
