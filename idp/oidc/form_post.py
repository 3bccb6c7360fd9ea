"""OAuth 2.0 Form Post Response Mode: an auto-submitting form to the client.

The page's script is a static file (the CSP allows no inline script), and this
one response's CSP lets the form go to the client's redirect URI.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from core.web.templates import render


def form_post_response(request: Request, redirect_uri: str, values: dict[str, str]) -> HTMLResponse:
    return render(request, "form_post.html", {"action": redirect_uri, "values": values},
                  form_target=redirect_uri)
