"""Errors as people and programs expect them.

People get a translated HTML page (:class:`PageError`); APIs get RFC 9457
problem details (:class:`Problem`, ``application/problem+json``); protocol
endpoints answer with their own error format (the ``idp`` layer). Unexpected
exceptions are logged with the request id and answered with a plain 500 that
reveals nothing; an unavailable database or store answers 503.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, InternalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import is_outage
from core.gm.errors import DecryptionError
from core.web.i18n import N_

log = logging.getLogger("idp.errors")

PROBLEM_JSON = "application/problem+json"


class PageError(Exception):
    """An error shown to a person as a translated page. Texts are English msgids."""

    def __init__(
        self, status: int, message: str, *, title: str = N_("Something went wrong"),
        params: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.title = status, message, title
        self.params = params or {}  # the message's %(name)s values


class Problem(Exception):
    """An API error answered as problem+json."""

    def __init__(
        self, status: int, title: str, detail: str = "", *, type_: str = "about:blank", **extra: Any
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type, self.extra = (
            status, title, detail, type_, extra,
        )


def problem_response(
    status: int, title: str, detail: str = "", type_: str = "about:blank", **extra: Any
) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, **extra}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept.split(",")[0]


_STATUS_TEXT = {
    400: (N_("Bad request"), N_("The request could not be understood.")),
    401: (N_("Sign-in required"), N_("Please sign in to continue.")),
    403: (N_("Not allowed"), N_("You are not allowed to do this.")),
    404: (N_("Page not found"), N_("The page you asked for does not exist.")),
    405: (N_("Not allowed"), N_("This page does not accept that kind of request.")),
    413: (N_("Too large"), N_("What you sent is too large.")),
    429: (N_("Too many requests"), N_("Too many attempts. Please wait a moment and try again.")),
    503: (
        N_("Temporarily unavailable"),
        N_("The service is temporarily unavailable. Please try again in a moment."),
    ),
}


_FALLBACK = (N_("Something went wrong"), N_("Please try again later."))


def _page(request: Request, status: int, title: str, message: str,
          params: dict[str, object] | None = None) -> Response:
    from core.web.templates import render

    return render(request, "error.html", {"title": title, "message": message,
                                          "params": params or {}}, status=status)


def _for_status(request: Request, status: int, detail: str = "") -> Response:
    title, message = _STATUS_TEXT.get(status, _FALLBACK)
    if wants_html(request):
        return _page(request, status, title, message)
    return problem_response(status, title, detail)


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return _page(request, exc.status, exc.title, exc.message, exc.params)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.title, exc.detail, exc.type, **exc.extra)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else ""
    response = _for_status(request, exc.status_code, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def refusal(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route that only answers 404 or 405 in its API's own error format (SCIM's
    catch-all): the methods it takes are not methods the resource supports."""
    endpoint.refusal = True  # type: ignore[attr-defined]
    return endpoint


def allowed_methods(request: Request, routes: Sequence[Any] | None = None) -> list[str]:
    """RFC 9110 15.5.6: a 405 names every method the resource supports. Starlette names
    only those of the first route whose path matched (``PUT /oauth2/authorize`` said
    ``POST``), so each method is tried against all routes (``routes``: an API's own, for
    an API that answers its 405s itself; then those marked :func:`refusal` are passed
    over); HEAD goes wherever GET does (``WebKitMiddleware``)."""
    from starlette.routing import Match

    candidates = [route for route in (request.app.router.routes if routes is None else routes)
                  if not getattr(getattr(route, "endpoint", None), "refusal", False)]

    def served(method: str) -> bool:
        probe = {**request.scope, "method": method}
        return any(route.matches(probe)[0] is Match.FULL for route in candidates)

    allowed = [m for m in METHODS if m != "HEAD" and served(m)]
    if "GET" in allowed:
        allowed.insert(1, "HEAD")
    return allowed


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if wants_html(request):
        return _page(request, 400, *_STATUS_TEXT[400])
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
        for e in exc.errors()[:20]
    ]
    return problem_response(400, "Invalid request", "The request has invalid fields.",
                            errors=errors)


PROTOCOL_PREFIX = "/oauth2/"  # OAuth endpoints: their clients read OAuth's error JSON
BROWSER_ENDPOINTS = ("/oauth2/authorize", "/oauth2/logout")  # of those, the people's pages


def _outage(request: Request) -> Response:
    """503 with ``Retry-After``: a page for people, OAuth's error JSON at the protocol
    endpoints (what an app's OAuth library reads, whatever it sends as ``Accept``; only
    the authorization and logout endpoints serve people), problem JSON for the other
    APIs."""
    path = request.url.path
    for_a_person = path.startswith(BROWSER_ENDPOINTS) and wants_html(request)
    if path.startswith(PROTOCOL_PREFIX) and not for_a_person:  # a back channel: always JSON
        response: Response = JSONResponse(
            {"error": "temporarily_unavailable",
             "error_description": "The service is briefly unavailable; try again."},
            status_code=503, headers={"Cache-Control": "no-store"})
    else:
        response = _for_status(request, 503)
    response.headers["Retry-After"] = "5"
    return response


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("backend unavailable: %s", type(exc).__name__)
    return _outage(request)


async def _sealed_value_unreadable(request: Request, exc: Exception) -> Response:
    """A value sealed at rest (a phone, a TOTP secret) does not open: sealed under a master
    key this process is not given (``IDP_OLD_MASTER_KEYS``), or damaged. Not the request's
    fault, and not to be mended by retrying at once: 503, and the operator is told."""
    log.error("a sealed value cannot be opened (is its master key missing from "
              "IDP_OLD_MASTER_KEYS?): %s", type(exc).__name__)
    return _outage(request)


async def _internal(request: Request, exc: Exception) -> Response:
    """A write refused because the database is read-only (a standby after a failover, a
    database in maintenance) is an outage (503); any other internal error is unexpected."""
    if is_outage(exc):
        return await _unavailable(request, exc)
    return await _unexpected(request, exc)


async def _bad_data(request: Request, exc: Exception) -> Response:
    """The database refused a value (a NUL in text, a number out of range, text too
    long): the request's fault, and its transaction is rolled back. Logged without the
    value."""
    log.warning("the database refused a request's data: %s",
                type(getattr(exc, "orig", None) or exc).__name__)
    return _for_status(request, 400, "The request holds a value that cannot be stored.")


async def _unexpected(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DBAPIError):  # the driver's message may quote a row's values
        log.error("unhandled database error %s\n%s", type(exc.orig).__name__,  # (DETAIL)
                  "".join(traceback.format_tb(exc.__traceback__)))
    else:
        log.exception("unhandled error")
    if wants_html(request):
        return _page(request, 500, N_("Something went wrong"), N_("Please try again later."))
    return problem_response(500, "Internal error")


class UnexpectedErrors:
    """Answer an exception no handler took with the 500 of :func:`_unexpected`, and end
    there. Starlette's own last resort re-raises after answering, and the server then logs
    the exception again with its message (a database error's DETAIL quotes a row's values:
    personal data in the log) and drops the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:  # nothing else can be sent: the server closes the connection
                raise
            response = await _unexpected(Request(scope, receive), exc)
            await response(scope, receive, send)
            if getattr(getattr(scope.get("app"), "state", None), "reraise_unexpected", False):
                raise  # the test suite's TestClient shows the bug's own traceback


def install(app: FastAPI, unavailable: tuple[type[Exception], ...]) -> None:
    """Register the handlers; ``unavailable`` are the backends' connection errors."""
    from core.web.safe_methods import HeadOfAnAction, answer_head

    app.add_exception_handler(HeadOfAnAction, answer_head)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    for kind in unavailable:
        app.add_exception_handler(kind, _unavailable)
    app.add_exception_handler(DecryptionError, _sealed_value_unreadable)
    app.add_exception_handler(DataError, _bad_data)
    app.add_exception_handler(InternalError, _internal)
    app.add_middleware(UnexpectedErrors)  # the innermost middleware: the others see a 500
