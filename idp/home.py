"""The start page: what this service is, in the visitor's language; for the signed-in
person, who they are signed in as, their account pages and a sign-out button (a shared
classroom computer must be easy to leave signed out)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core.web.templates import render
from directory.models import CONSOLE_ROLES
from idp import sessions
from idp.login import display_name

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def start_page(request: Request) -> HTMLResponse:
    found = sessions.load_standing(request)
    name = display_name(request, found[0][1].account_id) if found else ""
    administers = bool(found and found[1] & CONSOLE_ROLES)  # the console's link
    return render(request, "home.html", {"signed_in": name, "administers": administers})
