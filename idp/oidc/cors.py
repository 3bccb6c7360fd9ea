"""Which browser apps may read the protocol endpoints' answers (CORS).

A single-page app is a public client (a browser keeps no secret): it runs the code flow
with PKCE and calls the back-channel endpoints from the page, so the browser asks whether
the page's origin may read each answer (``core.web.middleware.cors_headers`` writes the
headers). The policy:

- discovery and the JWKS: any origin (``*``): public data, and what a library fetches
  first;
- the token, revocation, UserInfo and PAR endpoints: the origins of the public client's
  registered ``redirect_uris`` (``https``/``http`` ones), known once the request names the
  client (its ``client_id``, or the access token's); a confidential client's answers are
  never shared (its calls come from its server). An error answered before the client is
  known (``invalid_client``, ``invalid_token``) holds nothing and is shared with any
  origin, with ``WWW-Authenticate`` exposed;
- preflights (``OPTIONS``) of those four endpoints answer any origin: they only say which
  methods and headers may be sent; the answer itself is then shared or not as above.

Cookies are never shared: no ``Access-Control-Allow-Credentials`` anywhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.web.middleware import CORS_ORIGINS
from directory.apps import DEFAULT_PORTS, ClientMetadata

router = APIRouter(include_in_schema=False)
ANY = "*"
# each endpoint a page may call, and its methods (UserInfo: GET, or POST with a form)
PREFLIGHTED = {"/oauth2/token": "POST", "/oauth2/revoke": "POST",
               "/oauth2/userinfo": "GET, HEAD, POST", "/oauth2/par": "POST"}


def share_publicly(request: Request) -> None:
    """Any page may read the answer: public data (discovery, JWKS), or an answer given
    before the client is known, which can only be an error and holds nothing (a page must
    see ``invalid_token`` to know it should refresh)."""
    setattr(request.state, CORS_ORIGINS, ANY)


def share_with_client(request: Request, client: ClientMetadata | None) -> None:
    """From here on the answer is the client's: shared with a public client's origins,
    with nobody for a confidential client (what ``share_publicly`` allowed is withdrawn)."""
    allowed = web_origins(client.redirect_uris) if client and client.is_public else None
    setattr(request.state, CORS_ORIGINS, allowed)



def web_origins(redirect_uris: tuple[str, ...]) -> frozenset[str]:
    """``scheme://host[:port]`` of each http(s) redirect URI, as browsers send Origin."""
    origins = set()
    for uri in redirect_uris:
        parts = urlsplit(uri)
        try:
            host, port = parts.hostname, parts.port
            host = host.encode("idna").decode("ascii") if host else host  # as browsers send
        except (ValueError, UnicodeError):  # a port that is no number, a host IDNA refuses
            continue
        if parts.scheme not in DEFAULT_PORTS or not host:
            continue
        host = f"[{host}]" if ":" in host else host
        shown_port = f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else ""
        origins.add(f"{parts.scheme}://{host}{shown_port}")
    return frozenset(origins)


async def preflight(request: Request) -> Response:
    methods = PREFLIGHTED[request.url.path]
    origin = request.headers.get("origin")
    if origin is None:  # not a CORS preflight: what the resource supports (RFC 9110 9.3.7)
        return Response(status_code=204, headers={"Allow": methods + ", OPTIONS"})
    return Response(status_code=204, headers={
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, DPoP",
        "Access-Control-Max-Age": "600"})


for _path in PREFLIGHTED:
    router.add_route(_path, preflight, methods=["OPTIONS"], include_in_schema=False)
