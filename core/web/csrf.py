"""CSRF protection for every HTML form (signed double-submit token).

A random token lives in an HttpOnly ``csrf`` cookie (``__Host-csrf`` over https, so that
no other host of the site can plant one: ``core.web.cookies``); forms carry
``HMAC-SM3(key, cookie)`` in the ``csrf_token`` field (or ``X-CSRF-Token``
header for scripts). A cross-site attacker can neither read the cookie nor
compute the MAC. Routers of people-facing pages declare
``dependencies=[Depends(require_csrf)]``; protocol endpoints authenticate their
clients instead and do not use it.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from core.keyring import keyed_mac
from core.web import cookies
from core.web.errors import PageError
from core.web.i18n import N_

COOKIE = "csrf"
FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _mac(request: Request, cookie: str) -> str:
    return keyed_mac(request.app.state.settings, "csrf/v1", cookie)


def csrf_token(request: Request) -> str:
    """The token for forms on this page; issues a cookie when there is none."""
    cookie = request.cookies.get(cookies.name(request, COOKIE)) or getattr(
        request.state, "new_csrf_cookie", None)
    if not cookie:
        cookie = secrets.token_urlsafe(32)
        request.state.new_csrf_cookie = cookie
    return _mac(request, cookie)


def token_matches(request: Request, sent: str) -> bool:
    """Whether ``sent`` is the token of this browser's CSRF cookie."""
    cookie = request.cookies.get(cookies.name(request, COOKIE), "")
    return bool(cookie and sent and hmac.compare_digest(  # bytes: any text is comparable
        sent.encode(), _mac(request, cookie).encode()))


async def require_csrf(request: Request) -> None:
    """FastAPI dependency: refuse an unsafe request without a valid token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get("x-csrf-token", "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get(FIELD, ""))
    if not token_matches(request, sent):
        raise PageError(
            403,
            N_("The form has expired or was sent from another site. Go back, reload the page "
               "and try again."),
            title=N_("Please try again"),
        )
