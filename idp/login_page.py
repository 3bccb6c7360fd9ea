"""The sign-in page: one form for every login identifier, with passkey, SMS and QR sign-in.

Rendered by ``GET /login`` and, for a browser that arrives with an authorization request
and no session, by the authorization endpoint itself (no redirect to ``/login``: one round
trip less on a phone network). Either way the form posts to ``/login`` with the pending
request's interaction id (``ia``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from core.web.templates import render, same_page
from idp import sessions

if TYPE_CHECKING:
    from idp.oidc.authorize import AuthorizationRequest


def render_login(request: Request, ia: str, pending: AuthorizationRequest | None, *,
                 login: str = "", error: str = "", status: int = 200, next_url: str = "",
                 **params: object) -> Response:
    """The page for pending request ``pending`` (interaction ``ia``) or a plain sign-in
    (``next_url``: where to go after it); ``login`` pre-fills the identifier (else the
    app's ``login_hint``); ``error`` with ``params`` is a translatable message."""
    client = request.app.state.clients.get(pending.client_id) if pending else None
    same_page(request, "/login", ia=ia, next=next_url if not ia else "")
    return render(request, "login.html", {
        "ia": ia, "login": login or (pending.login_hint if pending else "") or "",
        "error": error, "error_params": params, "app_name": client.name if client else None,
        "next": sessions.safe_next(next_url) if not ia else "",
        "display": pending.display if pending else "page",
    }, status=status, form_target=pending.redirect_uri if pending else None)
