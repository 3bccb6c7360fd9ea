"""One pure-ASGI middleware for every response: request id, security headers, HEAD,
metrics and the access log.

Pure ASGI (not ``BaseHTTPMiddleware``) because it sits on the token
endpoint's hot path.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.web.logs import redact, request_id_var

access_log = logging.getLogger("idp.access")

REQUESTS = Counter("idp_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "idp_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}\Z")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_SOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[A-Za-z0-9.\-\[\]:]+)?\Z")


def csp_widened(form_target: str | None = None, frames: Iterable[str] = ()) -> str | None:
    """The page CSP with ``form-action`` widened to ``form_target``'s origin (or, for a
    native app's private-use scheme, to that scheme) and ``frame-src`` to the origins of
    ``frames`` (the apps' front-channel logout pages), or ``None`` when one of them makes
    no valid CSP source. Browsers (Chromium, WebKit) apply ``form-action`` to the
    redirects that answer a form too, so a sign-in page whose answer is the redirect to
    the app must allow the app's origin, and only that one."""
    policy = CSP
    if form_target is not None:
        source = csp_source(form_target)
        if source is None:
            return None
        policy = policy.replace("form-action 'self'", f"form-action 'self' {source}")
    sources = [csp_source(url) for url in frames]
    if None in sources:
        return None
    if sources:
        policy += "; frame-src " + " ".join(dict.fromkeys(s for s in sources if s))
    return policy


def csp_source(url: str) -> str | None:
    """A CSP source for ``url``: its origin, or for a private-use scheme that scheme;
    ``None`` when no CSP source can name it (user info, characters a source cannot hold)."""
    target = urlsplit(url)
    source = (f"{target.scheme}://{target.netloc}" if target.scheme in ("http", "https")
              else f"{target.scheme}:")
    if not target.scheme or not _SOURCE.match(source) or "@" in target.netloc:
        return None
    return source


_PLAIN_ROUTES: dict[object, str] = {}


def _route_name(scope: Scope) -> str:
    """The route template for metrics: FastAPI routes name themselves in the scope;
    plain Starlette routes (the token endpoint) are found once by their endpoint."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", None) or "unmatched"
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return "unmatched"
    if endpoint not in _PLAIN_ROUTES:
        found = _path_of(getattr(scope.get("app"), "routes", ()), endpoint)
        if found is None:
            return "unmatched"
        _PLAIN_ROUTES[endpoint] = found
    return _PLAIN_ROUTES[endpoint]


def _path_of(routes: Iterable[Any], endpoint: object) -> str | None:
    for route in routes:
        if getattr(route, "endpoint", None) is endpoint and hasattr(route, "path"):
            return route.path
        included = getattr(route, "original_router", None)  # FastAPI's include_router
        if included is not None and (path := _path_of(included.routes, endpoint)):
            return path
    return None


CORS_ORIGINS = "cors_origins"  # request.state member: the origins a response is shared with


def cors_headers(scope: Scope, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """CORS headers for a request from ``origin``: an endpoint puts the origins it shares
    its response with in ``request.state.cors_origins`` (``"*"``: public data, no
    credentials); any other origin, or an endpoint that names none, gets no header and
    the browser keeps the response from the page. Cookies are never shared."""
    allowed = scope.get("state", {}).get(CORS_ORIGINS)
    if allowed == "*":  # with or without Origin: a shared cache may serve it to any page
        return [(b"access-control-allow-origin", b"*"), _EXPOSE]
    if allowed and origin is not None and origin.decode("latin-1") in allowed:
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), _EXPOSE]
    return []


# why UserInfo said 401, and the nonce a DPoP proof must carry next (RFC 9449 8)
_EXPOSE = (b"access-control-expose-headers", b"WWW-Authenticate, DPoP-Nonce")


class WebKitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        head = method == "HEAD"
        if head:  # RFC 9110 9.3.2: a GET without its body (FastAPI routes take GET only);
            scope = {**scope, "method": "GET"}  # the server keeps its own HEAD scope
        headers_in = dict(scope["headers"])
        incoming = headers_in.get(b"x-request-id", b"").decode("latin-1")
        origin = headers_in.get(b"origin")
        # a caller's id is kept unless it looks like personal data (a phone number)
        request_id = incoming if _REQUEST_ID.match(incoming) and redact(incoming) == incoming \
            else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["head"] = head  # routes that use something up may spare a HEAD
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [(n, v) for n, v in _BASE_HEADERS if n not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", CSP.encode()))
                if b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if https:
                    extra.append(HSTS)
                extra.append((b"x-request-id", request_id.encode()))
                extra.extend(cors_headers(scope, origin))
                message["headers"] = headers + extra
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_name(scope)
            REQUESTS.labels(method, route, str(status_holder["status"])).inc()
            LATENCY.labels(method, route).observe(elapsed)
            access_log.info(
                "%s %s %s", method, scope["path"], status_holder["status"],
                extra={"route": route, "status": status_holder["status"],
                       "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id_var.reset(token)


MAX_REQUEST_BODY = 2 * 1024 * 1024  # the largest body anything here takes is SCIM's 1 MB


class BodyLimitMiddleware:
    """A request body over ``limit`` bytes is refused with 413 as it arrives (from its
    ``Content-Length``, or when a chunked body passes the limit), before any handler
    buffers it: unauthenticated forms (sign-in, SMS, QR) cannot be used to fill memory.
    Endpoints keep their own smaller limits (the token endpoint's 64 KiB)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        too_large = not declared.isdigit() or int(declared) > self.limit
        received = 0

        async def limited() -> Message:
            nonlocal received
            if too_large:
                raise HTTPException(status_code=413)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, limited, send)
