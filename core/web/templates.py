"""Jinja2 templates shared by all layers, rendered in the request's language.

Each layer registers its own template folder with :func:`add_folder`; the
core folder holds the base layout and the error page. Autoescaping is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.routing import Match

from core.web import cookies, i18n
from core.web.csrf import COOKIE as CSRF_COOKIE
from core.web.csrf import csrf_token
from core.web.middleware import csp_widened

_folders: list[Path] = [Path(__file__).parent / "templates"]
_env: Environment | None = None


def add_folder(folder: Path) -> None:
    """Let a layer's templates be found (their names should be unique)."""
    global _env
    if folder not in _folders:
        _folders.insert(0, folder)
        _env = None


def environment() -> Environment:
    global _env
    if _env is None:
        _env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(f)) for f in _folders]),
            autoescape=select_autoescape(default=True),
            extensions=["jinja2.ext.i18n"],
            auto_reload=False,
        )
        _env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    return _env


def switch_locale_href(request: Request, locale: str) -> str:
    """The language switcher's link: this page again, its query kept, ``ui_locales`` replaced.

    Keeping the query matters: the login page of a pending sign-in (``?ia=...``) and the
    authorization endpoint's own pages must not lose the request they belong to. A page
    answering a POST names the GET address that shows it again (:func:`same_page`); one
    that does not, at a path no GET reaches, switches on the start page rather than
    leading to a "method not allowed"."""
    query = [(k, v) for k, v in page_query(request)
             if k not in ("ui_locales", i18n.SWITCH_PARAM)]
    path = getattr(request.state, PAGE_PATH, "")
    if not path and request.method not in ("GET", "HEAD") and not _gettable(request):
        path, query = "/", []
        setattr(request.state, PAGE_PATH, path)  # the other link: no second route scan
        setattr(request.state, PAGE_QUERY, {})
    return path + "?" + urlencode([*query, (i18n.SWITCH_PARAM, locale)])


def _gettable(request: Request) -> bool:
    scope = {"type": "http", "path": request.url.path, "method": "GET"}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


PAGE_QUERY = "page_query"  # request.state member: a POSTed page's parameters, as a query
PAGE_PATH = "page_path"  # request.state member: the GET path that shows a POSTed page
APP_LOCALES = "app_ui_locales"  # request.state member: the pending request's ui_locales


def same_page(request: Request, path: str, **query: str) -> None:
    """For a page answering a POST: the GET address (``path`` and ``query``, empty values
    left out) that shows it again, for the language switcher. A GET keeps its own."""
    if request.method == "GET":
        return
    setattr(request.state, PAGE_PATH, path)
    setattr(request.state, PAGE_QUERY, {k: v for k, v in query.items() if v})


def page_query(request: Request) -> list[tuple[str, str]]:
    """The parameters that make this page: its query string, or for a page answering a
    POST, what the handler put in ``request.state.page_query`` (so that ``ui_locales``
    applies and the language switcher's GET link brings the same page back)."""
    kept = getattr(request.state, PAGE_QUERY, None)
    return list(kept.items()) if kept is not None else request.query_params.multi_items()


def locale_of(request: Request) -> str:
    """The request's language (negotiated once, then cached on the request)."""
    locale = getattr(request.state, "locale", None)
    if locale is None:
        settings = request.app.state.settings
        query = dict(page_query(request))
        locale = i18n.negotiate(
            query.get(i18n.SWITCH_PARAM),
            request.cookies.get(i18n.LANG_COOKIE),
            query.get("ui_locales") or getattr(request.state, APP_LOCALES, None),
            request.headers.get("accept-language"),
            settings.default_locale,
        )
        request.state.locale = locale
    return locale


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200,
    form_target: str | None = None, frames: Sequence[str] = (),
) -> HTMLResponse:
    """The page ``name`` in the request's language. ``form_target``: a URL this page's
    forms may end up at through redirects (the app's redirect URI on a sign-in page): its
    origin joins the CSP's ``form-action``. ``frames``: URLs the page loads in frames
    (front-channel logout): their origins make the CSP's ``frame-src``."""
    locale = locale_of(request)
    translations = i18n.translations(locale)
    template = environment().get_template(name)

    def gettext(message: str, **params: object) -> str:
        """New-style gettext: ``_("Hello %(name)s", name=...)``; the result is escaped."""
        text = translations.gettext(message)
        return text % params if params else text

    values = {
        "request": request,
        "lang": locale,
        "csrf_token": csrf_token(request),
        "switch_locale_href": lambda code: switch_locale_href(request, code),
        "_": gettext,
        "gettext": gettext,
        "ngettext": translations.ngettext,
        **(context or {}),
    }
    response = HTMLResponse(template.render(values), status_code=status)
    if (form_target or frames) and (policy := csp_widened(form_target or None, frames)):
        response.headers["Content-Security-Policy"] = policy
    chosen = dict(page_query(request)).get(i18n.SWITCH_PARAM)
    if chosen and request.cookies.get(i18n.LANG_COOKIE) != locale and locale == i18n.match(
        chosen
    ):  # the person's own choice (the switcher) sticks; an app's ui_locales does not
        response.set_cookie(i18n.LANG_COOKIE, locale, max_age=365 * 86400, samesite="lax",
                            path="/")
    new_cookie = getattr(request.state, "new_csrf_cookie", None)
    if new_cookie:
        response.set_cookie(
            cookies.name(request, CSRF_COOKIE), new_cookie, httponly=True, samesite="lax",
            secure=request.url.scheme == "https", path="/",
        )
    return response
