"""HEAD on a GET that does something (RFC 9110 9.2.1).

``WebKitMiddleware`` answers HEAD like GET without the body, which is right for pages and
documents. Some GETs act: the authorization endpoint mints a code, the end-session endpoint
signs out, a QR page makes a ticket. HEAD is a safe method, and "the resource owner MUST
disable or disallow that action when it is accessed using a safe request method": a link
checker or a chat app's preview sending HEAD must not sign a pupil out. Such routes take
``Depends(no_action_on_head)``: a HEAD gets 200 with no body and nothing done, so the
browser's GET that follows still works.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response


class HeadOfAnAction(Exception):
    """A HEAD request reached a GET that acts: answered without acting."""


async def no_action_on_head(request: Request) -> None:  # async: no thread for a check
    if request.scope.get("state", {}).get("head"):
        raise HeadOfAnAction()


async def answer_head(_request: Request, _exc: Exception) -> Response:
    return Response(status_code=200, media_type="text/html",
                    headers={"Cache-Control": "no-store"})
