"""OpenID Connect Front-Channel Logout 1.0: the signed-out page loads, in hidden frames,
the ``frontchannel_logout_uri`` of each app the person signed in to during the ended
session. Apps that this server cannot call (a school's app on the school's own network)
still hear of the sign-out, through the browser.

- An app registers ``frontchannel_logout_uri``: an http(s) URL without fragment, on the
  scheme, host and port of one of its redirect URIs (section 2). With
  ``frontchannel_logout_session_required``, ``iss`` and ``sid`` (the ``sid`` of its ID
  tokens, pairwise where the app is) are added to its query (section 3).
- Which pages: the signed-out answers of the end-session endpoint and of the start page's
  sign-out button. When the app asked to be sent back (``post_logout_redirect_uri``), the
  page goes on to that address once every frame has loaded, or after
  ``WAIT_SECONDS`` (a frame that never loads must not keep a pupil waiting); without
  script, a link does it.
- Another person's sign-in in the same browser (pupil B on pupil A's classroom computer)
  ends A's session: before B goes on, the browser passes through a page that loads the
  frames of A's apps (``detour``; ``/signed-out/previous``), so A's apps on the school's
  network end A's sessions in this very browser, where B would otherwise find them open.
- A session that ends where no page is shown (an account suspended, the store's timeout)
  reaches no front-channel app; back-channel logout (``idp.oidc.backchannel_logout``)
  covers a suspension.
- A browser sends an app's cookies to a frame under another site only when they are
  ``SameSite=None; Secure`` and it allows third-party cookies: an app whose session cookie
  is ``SameSite=Lax`` should register for back-channel logout instead.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fastapi import Request

from core.web.middleware import csp_source
from directory import subjects
from directory.apps import ClientMetadata

if TYPE_CHECKING:
    from idp.sessions import SSOSession

WAIT_SECONDS = 5  # given to the page's script (idp/static/frontchannel_logout.js)
DETOUR_SECONDS = 300  # how long the page of a detour can be loaded (and reloaded)
DETOUR_PATH = "/signed-out/previous"


def frames(request: Request, ended: SSOSession | None) -> list[str]:
    """The front-channel logout URL of each app of the ended session that registered one,
    in the order the person signed in to them."""
    if ended is None:
        return []
    # a URI no CSP source can name was registered before that was checked: no frame-src
    # could allow it, and it must not void the other frames
    return [_url(request, client, ended.sid)
            for client in ended.registered_apps(request.app.state.clients)
            if client.frontchannel_logout_uri and csp_source(client.frontchannel_logout_uri)]


def _url(request: Request, client: ClientMetadata, sid: str) -> str:
    uri = client.frontchannel_logout_uri or ""
    if not client.frontchannel_logout_session_required:
        return uri
    settings = request.app.state.settings
    query = urlencode({"iss": settings.issuer,
                       "sid": subjects.presented_sid(settings, client.sector, sid)})
    if "?" not in uri:
        return f"{uri}?{query}"
    return uri + ("" if uri.endswith(("?", "&")) else "&") + query


def detour(request: Request, ended: SSOSession | None, target: str) -> str:
    """Where a sign-in that ended another person's session (``ended``) goes next:
    ``target`` (a path on this site) itself, or, when that session's apps registered
    front-channel logout, first the page that loads their frames and then ``target``."""
    urls = frames(request, ended)
    if not urls:
        return target
    key = secrets.token_urlsafe(24)
    request.app.state.store.set(_detour_key(key), json.dumps(
        {"frames": urls, "next": target}).encode(), ttl=DETOUR_SECONDS)
    return f"{DETOUR_PATH}?{urlencode({'k': key})}"


def detour_of(request: Request, key: str) -> tuple[list[str], str] | None:
    """The frames and the next path of a detour (``None``: unknown or expired)."""
    raw = request.app.state.store.get(_detour_key(key)) if 0 < len(key) <= 64 else None
    if not raw:
        return None
    found = json.loads(raw)
    return list(found["frames"]), str(found["next"])


def _detour_key(key: str) -> str:
    return "fc-detour:" + key
