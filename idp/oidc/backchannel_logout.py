"""OpenID Connect Back-Channel Logout 1.0: when a person signs out here, the apps they
signed in to during that browser session are told, server to server.

- An app registers ``backchannel_logout_uri`` (an http(s) URL without fragment) and may set
  ``backchannel_logout_session_required`` (the token always carries ``sid`` anyway).
- The logout token (section 2.4) is a JWT with ``typ: logout+jwt``, signed like the app's
  ID tokens (``id_token_signed_response_alg``): ``iss``, ``aud`` (the ``client_id``),
  ``iat``, ``exp`` (two minutes), ``jti``, ``sub`` (the id the app knows the person by:
  pairwise where registered), ``sid`` (the ID tokens' ``sid``) and ``events`` with the
  back-channel logout event. It never carries a ``nonce``.
- Delivery: the tokens are made while the sign-out is answered; the POSTs
  (``application/x-www-form-urlencoded``, ``logout_token=...``) go out after the answer has
  been sent (a background task of the response), one per app, 5 seconds each, redirects
  not followed. An app that does not answer 2xx is logged (its ``client_id`` and the
  status only) and not asked again: section 2.8 leaves retrying to the OP, and a
  person's sign-out must not wait on a school's server.

Only OIDC apps with a ``backchannel_logout_uri`` are told; front-channel logout and
CAS/SAML single logout belong to federation.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import httpx
from fastapi import Request
from starlette.background import BackgroundTask

from directory import subjects
from idp.sessions import SSOSession

log = logging.getLogger("idp.oidc.backchannel_logout")
EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_SECONDS = 120
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Notice:
    client_id: str
    url: str
    logout_token: str


def notices(request: Request, ended: SSOSession) -> list[Notice]:
    """A logout token for each app of the ended session that registered a
    ``backchannel_logout_uri``."""
    state = request.app.state
    made = []
    for client_id in ended.apps:
        client = state.clients.get(client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        sub = ended.sub
        if client.sector is not None:
            with state.db.session() as session:
                sub = subjects.known(session, client.sector, ended.account_id, ended.sub)
        now = int(time.time())
        claims = {"iss": state.settings.issuer, "aud": client_id, "iat": now,
                  "exp": now + TOKEN_SECONDS, "jti": secrets.token_urlsafe(16),
                  "sid": ended.sid, "events": {EVENT: {}}}
        if sub:
            claims["sub"] = sub
        token = state.keys.sign(claims, client.id_token_signed_response_alg, typ="logout+jwt")
        made.append(Notice(client_id, client.backchannel_logout_uri, token))
    return made


def deliver(made: list[Notice]) -> None:
    """POST each logout token (run after the sign-out's answer has gone out)."""
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
        for notice in made:
            try:
                answer = http.post(notice.url, data={"logout_token": notice.logout_token},
                                   headers={"Cache-Control": "no-cache"})
                failed = "" if answer.is_success else f"status {answer.status_code}"
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:  # ValueError:
                failed = type(error).__name__  # a host IDNA cannot encode, and such
            if failed:
                log.warning("back-channel logout of %s not accepted: %s", notice.client_id,
                            failed)


def task(request: Request, ended: SSOSession) -> BackgroundTask | None:
    """The delivery of the ended session's logout tokens, for the sign-out's response."""
    made = notices(request, ended)
    return BackgroundTask(deliver, made) if made else None
