"""Self-service page: how many recovery codes are left, and a new set shown once."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from core.audit import Context
from core.web.csrf import require_csrf
from core.web.templates import add_folder, render
from idp import sessions
from mfa import recovery

PAGE = "/account/security/recovery"
router = APIRouter(prefix=PAGE, include_in_schema=False, dependencies=[Depends(require_csrf)])
add_folder(Path(__file__).parent / "templates")


@router.get("")
def recovery_codes(request: Request) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    with request.app.state.db.session() as db:
        count = recovery.remaining(db, session.account_id)
    return render(request, "security_recovery.html", {"remaining": count})


@router.post("/generate")
def generate(request: Request) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    with request.app.state.db.session() as db:
        codes = recovery.generate(db, request.app.state.settings, session.account_id,
                                  context=Context.of(request))
    response = render(request, "security_recovery_codes.html", {"codes": codes})
    response.headers["cache-control"] = "no-store"  # the page shows the codes, once
    return response
