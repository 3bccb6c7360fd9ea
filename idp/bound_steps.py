"""A step of a sign-in kept in the store and bound to one browser by a cookie.

The second factor (``idp.mfa_step``) and the new password after a reset
(``idp.password_change``) both remember, between pages, whose sign-in it is and where it
goes on: a dataclass saved as JSON under ``<prefix>:<random id>`` for ``seconds``, the id in
an HttpOnly cookie (``__Host-`` prefixed over https, as the session's: a sibling subdomain
cannot plant one). A missing, expired or unreadable step is the "sign-in expired" page.
Each step records when it ``began``: a "sign out everywhere" of the account after that
stops it (``directory.people.holds``).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from core import json_input
from core.web import cookies
from idp import sessions

T = TypeVar("T")


class BoundStep(Generic[T]):
    def __init__(self, prefix: str, cookie: str, page: str, kind: type[T],
                 seconds: int = 600) -> None:
        self.prefix, self.cookie, self.page, self.kind = prefix, cookie, page, kind
        self.seconds = seconds

    def begin(self, request: Request, step: T) -> Response:
        """Keep ``step`` and send the browser to its page."""
        step_id = secrets.token_urlsafe(18)
        step.began = getattr(step, "began", 0.0) or time.time()
        self.save(request, step_id, step)
        response = RedirectResponse(self.page, status_code=303)
        response.set_cookie(cookies.name(request, self.cookie), step_id, httponly=True,
                            samesite="lax", path="/", secure=request.url.scheme == "https",
                            max_age=self.seconds)
        return response

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(cookies.name(request, self.cookie), path="/",
                               secure=request.url.scheme == "https")

    def load(self, request: Request) -> tuple[str, T]:
        """This browser's step and its id (the "sign-in expired" page when there is none)."""
        step_id = request.cookies.get(cookies.name(request, self.cookie), "")
        raw = request.app.state.store.get(f"{self.prefix}:{step_id}") if step_id else None
        if raw is None:
            raise sessions.sign_in_expired()
        try:
            known: dict[str, Any] = json_input.known_members(self.kind, json.loads(raw))
            return step_id, self.kind(**known)
        except (TypeError, ValueError):  # an entry no version writes (a damaged store)
            raise sessions.sign_in_expired() from None

    def save(self, request: Request, step_id: str, step: T) -> None:
        request.app.state.store.set(f"{self.prefix}:{step_id}",
                                    json.dumps(asdict(step)).encode(), ttl=self.seconds)

    def forget(self, request: Request, step_id: str) -> None:
        """The step is done (or left): its id works no more."""
        request.app.state.store.delete(f"{self.prefix}:{step_id}")

    def finish(self, request: Request, step_id: str) -> None:
        """The step is done: taken from the store atomically, so that of two factors (or
        two forms) sent at the same moment only one goes on; the other is told the sign-in
        expired rather than starting a second session."""
        if request.app.state.store.take(f"{self.prefix}:{step_id}") is None:
            raise sessions.sign_in_expired()

    def forget_this_browsers(self, request: Request) -> None:
        """A sign-out in this browser: its step, if any, works no more (a step left open
        must not finish for the next person at a shared computer)."""
        step_id = request.cookies.get(cookies.name(request, self.cookie), "")
        if step_id:
            self.forget(request, step_id)
