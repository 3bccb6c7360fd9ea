"""Self-service account pages: the apps a person has allowed, and withdrawing that."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from core.audit import Context, record
from core.web.csrf import require_csrf
from core.web.templates import add_folder, render
from directory.apps import App, Consent
from idp import sessions
from idp.login import OTHER_SCOPE_TEXT, SCOPE_TEXT
from idp.oidc import consent, resources

router = APIRouter(prefix="/account", include_in_schema=False,
                   dependencies=[Depends(require_csrf)])
add_folder(Path(__file__).parent / "templates")



@router.get("/apps")
def allowed_apps(request: Request) -> Response:
    session = sessions.current(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    with request.app.state.db.sessions() as db:
        rows = db.execute(
            select(Consent, App.name).join(App, App.client_id == Consent.client_id)
            .where(Consent.account_id == session.account_id, Consent.revoked_at.is_(None))
            .order_by(Consent.granted_at.desc())
        ).all()
    registry = request.app.state.resources
    apps = [{"client_id": c.client_id, "name": name, "scope": c.scope,
             "scopes": [{"text": SCOPE_TEXT.get(s, OTHER_SCOPE_TEXT), "scope": s}  # as consented
                        for s in c.scope.split()],
             "apis": [resources.name_of(request.app.state, api) for api in  # still its API
                      resources.held_as_granted(registry, *_apis_and_owners(c))],
             "granted_at": c.granted_at.strftime("%Y-%m-%d %H:%M")} for c, name in rows]
    return render(request, "account_apps.html", {"apps": apps})


def _apis_and_owners(row: Consent) -> tuple[tuple[str, ...], tuple[str, ...]]:
    allowed = consent.allowed_apis(row)
    return tuple(allowed), tuple(a.owner for a in allowed.values())


@router.post("/apps/revoke")
def revoke_app(request: Request, client_id: str = Form(..., max_length=64)) -> Response:
    session = sessions.current(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    if consent.revoke(request.app.state.db, request.app.state.store, session.account_id,
                      client_id):
        with request.app.state.db.session() as db:
            record(db, actor=f"account:{session.account_id}", action="consent.revoke",
                   outcome="success", target=f"client:{client_id}", context=Context.of(request))
    return RedirectResponse("/account/apps", status_code=303)
