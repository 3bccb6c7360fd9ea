"""Self-service pages: add, confirm and remove authenticator apps (TOTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Context
from core.field_crypto import open_
from core.web.csrf import require_csrf
from core.web.i18n import N_
from core.web.templates import add_folder, render
from directory.models import IdentifierKind, LoginIdentifier
from idp import sessions
from mfa import totp
from mfa.credentials import SECRET

PAGE = "/account/security/totp"
router = APIRouter(prefix=PAGE, include_in_schema=False, dependencies=[Depends(require_csrf)])
add_folder(Path(__file__).parent / "templates")

# Login identifiers that may name the account inside the app (not phone or e-mail).
_LABEL_KINDS = (IdentifierKind.student_number, IdentifierKind.teacher_number,
                IdentifierKind.username)




def _label(db: Session, account_id: int, sub: str) -> str:
    """The account's name in the app: a login identifier, never personal data."""
    rows = db.execute(select(LoginIdentifier.kind, LoginIdentifier.value).where(
        LoginIdentifier.account_id == account_id,
        LoginIdentifier.kind.in_([k.value for k in _LABEL_KINDS]))).all()
    by_kind = dict(rows)
    for kind in _LABEL_KINDS:
        if kind.value in by_kind:
            return by_kind[kind.value]
    return sub[:12]


def _grouped(secret: str) -> str:
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def _enrol_page(request: Request, uid: str, secret: str, uri: str, *, error: str = "",
                status: int = 200) -> Response:
    return render(request, "security_totp_enrol.html", {
        "uid": uid, "qr_svg": totp.qr_svg(uri), "otpauth_uri": uri,
        "secret_groups": _grouped(secret), "error": error}, status=status)


def _list_page(request: Request, account_id: int, *, notice: str = "") -> Response:
    with request.app.state.db.session() as db:
        rows = totp.factors(db, account_id)
        factors: list[dict[str, Any]] = [{
            "uid": row.uid, "name": row.name,
            "confirmed_at": row.confirmed_at.strftime("%Y-%m-%d %H:%M") if row.confirmed_at
            else "",
            "last_used_at": row.last_used_at.strftime("%Y-%m-%d %H:%M") if row.last_used_at
            else ""} for row in rows]
    return render(request, "security_totp.html", {"factors": factors, "notice": notice})


@router.get("")
def totp_factors(request: Request) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    notice = {"added": N_("The authenticator app was added."),
              "removed": N_("The authenticator app was removed.")}.get(
                  request.query_params.get("done", ""), "")
    return _list_page(request, session.account_id, notice=notice)


@router.post("/begin")
def begin(request: Request) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    settings = request.app.state.settings
    with request.app.state.db.session() as db:
        label = _label(db, session.account_id, session.sub)
        enrolment = totp.begin_enrolment(db, settings, session.account_id,
                                         "Authenticator app", label=label,
                                         context=Context.of(request))
    response = _enrol_page(request, enrolment.uid, enrolment.secret_base32,
                           enrolment.otpauth_uri)
    response.headers["cache-control"] = "no-store"  # the page shows the secret
    return response


@router.post("/confirm")
def confirm(request: Request, uid: str = Form(..., max_length=32),
            code: str = Form("", max_length=20)) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    settings, store = request.app.state.settings, request.app.state.store
    with request.app.state.db.session() as db:
        if totp.confirm(db, settings, store, session.account_id, uid, code,
                        context=Context.of(request)):
            return RedirectResponse(f"{PAGE}?done=added", status_code=303)
        row = totp.pending(db, session.account_id, uid)
        if row is None:  # expired, removed or someone else's: start again
            return RedirectResponse(PAGE, status_code=303)
        secret = open_(settings, SECRET, row) or ""
        label = _label(db, session.account_id, session.sub)
        locked = totp.locked_seconds(store, session.account_id)
    error = (N_("Too many wrong codes. Wait a few minutes and try again.") if locked
             else N_("The code is not correct. Enter the current 6-digit code from the app."))
    response = _enrol_page(request, uid, secret, totp.otpauth_uri(secret, label),
                           error=error, status=429 if locked else 400)
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/remove")
def remove(request: Request, uid: str = Form(..., max_length=32)) -> Response:
    session = sessions.recent(request)
    if session is None:
        return RedirectResponse(sessions.reauth_url(PAGE), status_code=303)
    with request.app.state.db.session() as db:
        removed = totp.remove(db, session.account_id, uid, context=Context.of(request))
    return RedirectResponse(f"{PAGE}?done=removed" if removed else PAGE, status_code=303)
