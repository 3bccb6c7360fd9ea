"""The SCIM wire protocol: errors, authentication, JSON bodies, ETags, responses.

Every failure becomes a SCIM error (RFC 7644 §3.12: the
``urn:ietf:params:scim:api:messages:2.0:Error`` schema, ``application/scim+json``),
raised as a ``scim2_models`` exception and turned into a response by
:class:`ScimRoute`, so no bad input ever reaches the application's generic 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import (
    Error,
    InvalidSyntaxException,
    InvalidValueException,
    PreconditionFailedException,
    SCIMException,
    UniquenessException,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from core import json_input
from core.audit import Context
from core.settings import Settings
from directory.api_tokens import TokenScope, authenticate, bearer_token

SCIM_JSON = "application/scim+json"
MAX_BODY = 1_000_000
log = logging.getLogger("idp.scim")


class Unauthorized(SCIMException):
    status = 401
    _default_detail = "A valid bearer token with the 'scim' permission is required."


class MethodNotAllowed(SCIMException):
    """RFC 9110 15.5.6: the answer names the methods the endpoint takes (``Allow``)."""

    status = 405
    _default_detail = "This endpoint does not accept that method."

    def __init__(self, allow: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow = allow


def scim_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
    return Response(content, status_code=status, media_type=SCIM_JSON, headers=headers)


def error_response(exc: SCIMException) -> Response:
    error = Error(status=exc.status, scim_type=exc.scim_type or None, detail=exc.detail)
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if exc.status == 401 else None
    if isinstance(exc, MethodNotAllowed):
        headers = {"Allow": ", ".join(exc.allow)}
    return scim_response(error.model_dump(), exc.status, headers)


class ScimRoute(APIRoute):
    """A route whose every failure is answered as a SCIM error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SCIMException as exc:
                return error_response(exc)
            except ValidationError as exc:
                return error_response(validation_error(exc))
            except IntegrityError:
                log.info("scim write refused by a uniqueness constraint")
                return error_response(UniquenessException(
                    detail="A unique attribute value is already in use."))

        return scim_handler


def validation_error(exc: ValidationError) -> SCIMException:
    """A pydantic error on a payload: the SCIM error it stands for, without the input."""
    for error in exc.errors():
        context = error.get("ctx") or {}
        scim_type = context.get("scim_type")
        where = ".".join(str(p) for p in error.get("loc", ()))
        detail = f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "")
        if scim_type:
            cls = next((c for c in _all_exceptions() if c.scim_type == scim_type),
                       InvalidValueException)
            return cls(detail=detail[:300])
        return InvalidValueException(detail=detail[:300])
    return InvalidValueException()


def _all_exceptions() -> list[type[SCIMException]]:
    found: list[type[SCIMException]] = []
    stack = list(SCIMException.__subclasses__())
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


@contextmanager
def session_scope(request: Request) -> Iterator[Session]:
    """A transaction; a value the database refuses (a NUL in text, a number out of range)
    rolls it back and answers a SCIM ``invalidValue`` (RFC 7644 3.12), not problem JSON."""
    try:
        with request.app.state.db.session() as session:
            yield session
    except DataError:
        raise InvalidValueException(detail="A value in the request cannot be stored.") from None


def token_scope(request: Request, session: Session) -> TokenScope:
    token = bearer_token(request)
    scope = authenticate(session, settings_of(request), token) if token else None
    if scope is None or "scim" not in scope.permissions:
        raise Unauthorized()
    return scope


def audit_context(request: Request) -> Context:
    state = getattr(request.state, "request_id", "")
    return Context(
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", "")[:400],
        request_id=state if isinstance(state, str) else "",
    )


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or invalidSyntax."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidValueException(detail="The request body is too large.")
    try:
        body = json_input.loads_text(raw or b"null")
    except ValueError:  # also too deep, a lone surrogate, a NUL, not UTF-8
        raise InvalidSyntaxException(detail="The request body is not JSON text that can be "
                                            "stored.") from None
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="The request body must be a JSON object.")
    return body


def version_of(*stamps: datetime | date | str | int | None) -> str:
    """A weak ETag from the modification stamps of a resource's rows."""
    text = "|".join("" if s is None else (s.isoformat() if hasattr(s, "isoformat") else str(s))
                    for s in stamps)
    return 'W/"' + hashlib.sha256(text.encode()).hexdigest()[:20] + '"'


def check_if_match(request: Request, current: str) -> None:
    """Honour ``If-Match`` (RFC 7232 §3.1, weak comparison as RFC 7644 §3.14 allows)."""
    header = request.headers.get("if-match")
    if header is None:
        return
    wanted = [tag.strip() for tag in header.split(",") if tag.strip()]
    if "*" in wanted:
        return
    bare = current.removeprefix("W/")
    if not any(tag.removeprefix("W/") == bare for tag in wanted):
        raise PreconditionFailedException(detail="The resource has changed (If-Match).")
