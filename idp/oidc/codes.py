"""Authorization codes (RFC 6749 4.1) with PKCE (RFC 7636).

A code is 256 random bits; the store keeps its grant under ``SM3(code)`` for
``CODE_SECONDS`` and the token endpoint *takes* it (read and delete in one
atomic step), so it is redeemed at most once even across workers. The same step
leaves a ``pending`` mark under ``code-used:``; once the tokens exist the mark is
replaced by which tokens came from the code, for ``USED_SECONDS``. A second
redemption is refused with ``invalid_grant`` and revokes them (RFC 6749 4.1.2:
"SHOULD revoke all tokens previously issued based on that authorization code").
A second redemption that arrives while the first is still issuing its tokens
swaps the mark for ``reused``; the first then sees that, revokes what it issued
and answers ``invalid_grant`` too. Two store round trips per redemption, as
before the mark: the take with the mark, the swap with the tokens. A redemption that
an outage fails (the database, a signing key) before any token left gives the code back,
while nobody else tried it meanwhile: the app's retry after the outage works.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from core.audit import Context, record
from core.db import is_outage
from core.signing_keys import NoSigningKey
from core.store import Store
from directory.apps import ClientMetadata
from idp.oidc import dpop, refresh_tokens, resources
from idp.oidc.access_tokens import revoke_access_jti
from idp.oidc.errors import invalid_grant, invalid_request
from idp.oidc.grants import issue_tokens
from idp.oidc.tokens import Grant, token_key

CODE_SECONDS = 60
USED_SECONDS = 600
PENDING, REUSED = b"pending", b"reused"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}\Z")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}\Z")


def valid_challenge(challenge: str) -> bool:
    return bool(_CHALLENGE.match(challenge))


def issue(store: Store, grant: Grant, redirect_uri: str, challenge: str | None) -> str:
    code = secrets.token_urlsafe(32)
    record_ = {"grant": grant.to_json(), "redirect_uri": redirect_uri, "challenge": challenge,
               "issued_at": time.time()}
    key = token_key(code)
    store.set("code:" + key, json.dumps(record_).encode(), ttl=CODE_SECONDS)
    if grant.jkt:  # known to a second redemption even while the first is still pending
        store.set("code-bound:" + key, json.dumps({"client_id": grant.client_id,
                                                   "jkt": grant.jkt}).encode(),
                  ttl=CODE_SECONDS + USED_SECONDS)
    return code


def _check_pkce(challenge: str | None, verifier: str | None, client: ClientMetadata) -> None:
    if challenge is None:
        if verifier:
            raise invalid_grant("code_verifier sent but no code_challenge was")
        if client.is_public:
            raise invalid_grant("public clients must use PKCE")
        return
    if not verifier or not _VERIFIER.match(verifier):
        raise invalid_grant("code_verifier is missing or malformed")
    if not hmac.compare_digest(create_s256_code_challenge(verifier), challenge):
        raise invalid_grant("code_verifier does not match the code_challenge")


def redeem(request: Request, form: dict[str, str], client: ClientMetadata) -> dict[str, Any]:
    """Exchange a code for tokens (runs in a worker thread: store and database)."""
    state = request.app.state
    code = form.get("code")
    if not code:
        raise invalid_request("code is required")
    if not form.get("redirect_uri"):  # always sent at /authorize here, so required here
        raise invalid_request("redirect_uri is required")
    asked = resources.for_one_token(state.resources, form,  # a mistake spends no code
                                    client.client_id)
    key = token_key(code)
    raw = state.store.take_and_mark("code:" + key, "code-used:" + key, PENDING,
                                    ttl=USED_SECONDS)
    if raw is None:
        _refuse_reuse(request, key, client)
        raise invalid_grant("the code is invalid, expired or already used")
    stored = json.loads(raw)
    grant = Grant.read(stored["grant"])
    if grant.client_id != client.client_id:
        raise invalid_grant("the code was issued to another client")
    if form.get("redirect_uri") != stored["redirect_uri"]:
        raise invalid_grant("redirect_uri does not match the authorization request")
    _check_pkce(stored["challenge"], form.get("code_verifier"), client)
    if grant.jkt and grant.jkt != dpop.key_of(request):  # RFC 9449 10: dpop_jkt
        raise invalid_grant("the code is bound to a DPoP key (dpop_jkt): send a proof "
                            "made with it")
    try:
        issued = issue_tokens(request, client, grant, code=code,
                              since=float(stored.get("issued_at") or time.time()),
                              audience=resources.audience(state.resources, asked,
                                                          grant.resources, client.client_id,
                                                          grant.resource_owners))
    except Exception as error:
        if is_outage(error) or isinstance(error, (NoSigningKey, *state.store.errors)):
            _put_back(state.store, key, raw, stored)  # an outage: the app may try again
        raise
    tokens = json.dumps({"family": issued.family, "jti": issued.jti,
                         "exp": issued.body["expires_in"],
                         "client_id": client.client_id}).encode()
    if state.store.replace("code-used:" + key, tokens, ttl=USED_SECONDS) == REUSED:
        _revoke(request, tokens)  # redeemed again while these were being issued
        raise invalid_grant("the code is invalid, expired or already used")
    return issued.body


def _put_back(store: Store, key: str, raw: bytes, stored: dict[str, Any]) -> None:
    """Give the code back after an outage (the database or a signing key) failed its
    redemption before any token left: the app's retry once the outage ends then works,
    instead of sending the person to sign in again. Only while nobody else tried the code
    meanwhile (its mark is still ``PENDING``), and for the rest of its lifetime."""
    left = CODE_SECONDS - (time.time() - float(stored.get("issued_at") or 0))
    try:
        if left > 1:  # one atomic step: a copy tried meanwhile left its mark, and wins
            store.give_back("code:" + key, raw, left, "code-used:" + key, PENDING)
    except store.errors:
        pass  # the store is out too: the code is lost with it


def _refuse_reuse(request: Request, key: str, client: ClientMetadata) -> None:
    """A second redemption: revoke what the first issued, or (still issuing) tell it to.
    A code bound to a DPoP key (``dpop_jkt``) was redeemed with that key: a second try
    counts only from its client with that key (anyone else's copy of the used code is
    useless to them, and must not sign the person out), also while the first redemption
    is still issuing (``code-bound:``, written with the code)."""
    store = request.app.state.store
    bound = store.get("code-bound:" + key)
    if bound is not None:
        binding = json.loads(bound)
        if (binding["client_id"] != client.client_id
                or binding["jkt"] != dpop.key_of(request)):
            return
    used = store.replace("code-used:" + key, REUSED, ttl=USED_SECONDS, only_existing=True)
    if used not in (None, PENDING, REUSED):
        _revoke(request, used)


def _revoke(request: Request, tokens: bytes) -> None:
    issued = json.loads(tokens)
    revoke_access_jti(request.app.state.store, issued["jti"], issued["exp"])
    if issued.get("family"):
        refresh_tokens.revoke_family(request.app.state.db, request.app.state.store,
                                     issued["family"])
    with request.app.state.db.session() as session:
        record(session, actor="client", action="code.reuse", outcome="revoked",
               target=issued.get("family") or "", context=Context.of(request))


async def authorization_code(request: Request, form: dict[str, str],
                             client: ClientMetadata) -> dict[str, Any]:
    return await run_in_threadpool(redeem, request, form, client)


