"""The start page: what this service is, in the visitor's language."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core.web.templates import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def start_page(request: Request) -> HTMLResponse:
    return render(request, "home.html", {"issuer": request.app.state.settings.issuer})
