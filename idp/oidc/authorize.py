"""The authorization endpoint (RFC 6749 4.1, OpenID Connect Core 3.1.2), GET and POST.

Reading ``CHECKS`` tells what the endpoint does. The first two checks run before
the redirect URI is trusted, so their failures are shown to the person as a
page and never redirect; every later failure is returned to the client at its
redirect URI with ``state`` and ``iss`` (RFC 9207), by query or form_post.

After the checks, :func:`decide` compares the request with the browser's SSO
session: it asks for a login (no session, ``prompt=login``, ``max_age``
passed, ``id_token_hint`` for someone else), an account choice
(``prompt=select_account``) or consent (third-party app without remembered
consent, or ``prompt=consent``); with ``prompt=none`` each of those is an error
instead. The pending request is kept in the store as an *interaction* bound to
this browser by a cookie; the login and consent pages resume it.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from core import json_input
from core.web import cookies
from core.web.errors import PageError
from core.web.i18n import N_
from core.web.safe_methods import no_action_on_head
from core.web.templates import APP_LOCALES
from directory import subjects
from directory.apps import ClientMetadata
from directory.models import Account
from directory.people import current_roles
from idp import mfa_step, sessions
from idp.login_page import render_login
from idp.oidc import (
    codes,
    consent,
    dpop,
    pushed_requests,
    redirect_uris,
    request_objects,
    resources,
    scopes,
)
from idp.oidc.errors import OAuthError, clean_description
from idp.oidc.id_token_hint import subject_of_hint
from idp.oidc.token_endpoint import is_form
from idp.oidc.tokens import Grant
from mfa import policy

log = logging.getLogger("idp.oidc.authorize")

router = APIRouter(tags=["oidc"])
AUTHORIZE_PATH = "/oauth2/authorize"
INTERACTION_SECONDS = 600
INTERACTION_COOKIE = "idp_ia"
INTERACTIONS_PER_BROWSER = 5
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
OFFLINE = "offline_access"
RESPONSE_MODES = frozenset({"query", "form_post"})


@dataclass
class AuthorizationRequest:
    """A validated request, as kept between the steps of an interaction."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None = None
    nonce: str | None = None
    response_mode: str = "query"
    code_challenge: str | None = None
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    login_hint: str | None = None
    hint_sub: str | None = None  # the sub of id_token_hint
    claims_sub: str | None = None  # a sub value asked for in claims (OIDC Core 5.5.1)
    ui_locales: str | None = None
    display: str = "page"
    acr_values: list[str] = field(default_factory=list)
    essential_acr: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    pushed: bool = False  # came from the PAR endpoint (its request_uri is used up)
    signed: bool = False  # came as a request object the app signed (RFC 9101)
    dpop_jkt: str | None = None  # RFC 9449 10: the code is for this DPoP key only
    resources: list[str] = field(default_factory=list)  # RFC 8707: the APIs granted
    resource_owners: list[str] = field(default_factory=list)  # the apps holding them then
    # filled in by the interaction
    logged_in_at: int | None = None
    # the account that was chosen / that consented: a flag would carry over to another
    # account that signs in in this browser before the request resumes
    account_chosen: int | None = None
    consent_given: int | None = None

    def apis(self) -> dict[str, str]:
        """Each API asked for, with the ``client_id`` of the app that held its identifier
        when the request came ("": a request saved by a worker of the version before,
        whose code the token endpoint then refuses)."""
        owners = self.resource_owners
        return {api: owners[n] if n < len(owners) else ""
                for n, api in enumerate(self.resources)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthorizationRequest:
        """Members this version does not know are left out (a rolling deploy: a newer
        worker may have saved it); old boolean flags name no account."""
        known = json_input.known_members(cls, data)
        for flag in ("account_chosen", "consent_given"):
            if isinstance(known.get(flag), bool):
                known[flag] = None
        for number in ("max_age", "logged_in_at"):
            if not isinstance(known.get(number), int | None):
                raise ValueError(f"{number} is no number")
        for texts in ("resources", "resource_owners"):
            value = known.get(texts, [])
            if not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
                raise ValueError(f"{texts} is no list of strings")
        return cls(**known)


class Redirectable(Exception):
    """An OAuth error to return to a trusted redirect URI."""

    def __init__(self, error: OAuthError) -> None:
        super().__init__(error.error)
        self.error = error


# -- the checks ---------------------------------------------------------------------

Check = Callable[[dict[str, str], ClientMetadata, AuthorizationRequest], None]


def _fail(error: str, description: str) -> Redirectable:
    return Redirectable(OAuthError(error, description))


def check_response_mode(params: dict[str, str], _c: ClientMetadata,
                        req: AuthorizationRequest) -> None:
    mode = params.get("response_mode", "query")
    if mode not in RESPONSE_MODES:
        raise _fail("invalid_request", "response_mode must be query or form_post")
    req.response_mode = mode


def check_response_type(params: dict[str, str], client: ClientMetadata,
                        _r: AuthorizationRequest) -> None:
    response_type = params.get("response_type")
    if not response_type:
        raise _fail("invalid_request", "response_type is required")
    if response_type != "code" or "code" not in client.response_types:
        raise _fail("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise _fail("unauthorized_client", "the client may not use the authorization code flow")


def check_request_object(params: dict[str, str], client: ClientMetadata,
                         req: AuthorizationRequest) -> None:
    """A ``request`` was unpacked before the checks (``object_params``); a ``request_uri``
    of the app's own is refused; an app that must sign its requests did (RFC 9101 10.5)."""
    if "request_uri" in params:
        raise _fail("request_uri_not_supported", "request_uri is not supported (except the "
                    "pushed_authorization_request_endpoint's)")
    if client.require_signed_request_object and not req.signed:
        raise _fail("invalid_request", "this client must send its authorization requests "
                    "as signed request objects")


def check_dpop_jkt(params: dict[str, str], _c: ClientMetadata,
                   req: AuthorizationRequest) -> None:
    """RFC 9449 10: ``dpop_jkt`` binds the code to the DPoP key of that thumbprint."""
    jkt = params.get("dpop_jkt")
    if jkt is not None and not dpop.JKT.fullmatch(jkt):
        raise _fail("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint")
    req.dpop_jkt = jkt


def check_scope(params: dict[str, str], client: ClientMetadata,
                req: AuthorizationRequest) -> None:
    """The scope values asked for. A standard one the app may not ask for is
    ``invalid_scope`` (a mistake its developer must see); a value this provider does not
    know at all is ignored (OIDC Core 3.1.2.1), and the token response names the scope
    granted."""
    try:
        asked = scopes.values(params.get("scope", ""))
    except ValueError as malformed:
        raise _fail("invalid_scope", str(malformed)) from None
    refused = {s for s in asked if s in scopes.USER_SCOPES} - client.allowed_scopes
    if refused:
        raise _fail("invalid_scope", "not allowed for this client: " + " ".join(sorted(refused)))
    kept = [s for s in asked if s in client.allowed_scopes
            # OIDC Core 11: ignored when the app may not hold a refresh token
            and (s != OFFLINE or "refresh_token" in client.grant_types)]
    if not kept:
        raise _fail("invalid_scope", "scope is required")
    req.scope = " ".join(kept)


def check_pkce(params: dict[str, str], client: ClientMetadata,
               req: AuthorizationRequest) -> None:
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if method:
            raise _fail("invalid_request", "code_challenge_method without code_challenge")
        if client.is_public:
            raise _fail("invalid_request", "public clients must use PKCE (code_challenge)")
        return
    if method != "S256":
        raise _fail("invalid_request", "code_challenge_method must be S256")
    if not codes.valid_challenge(challenge):
        raise _fail("invalid_request", "code_challenge must be 43 base64url characters")
    req.code_challenge = challenge


def check_prompt(params: dict[str, str], _c: ClientMetadata,
                 req: AuthorizationRequest) -> None:
    prompt = params.get("prompt", "").split()
    if set(prompt) - PROMPTS:
        raise _fail("invalid_request", "prompt has an unknown value")
    if "none" in prompt and len(prompt) > 1:
        raise _fail("invalid_request", "prompt=none cannot be combined with other values")
    req.prompt = prompt


def check_max_age(params: dict[str, str], client: ClientMetadata,
                  req: AuthorizationRequest) -> None:
    """``max_age``, or else the app's registered ``default_max_age`` (OIDC Registration 2:
    the request's value overrides it)."""
    if "max_age" not in params:
        default = client.extra.get("default_max_age")
        req.max_age = default if isinstance(default, int) and default >= 0 else None
        return
    value = params["max_age"]
    if not (value.isascii() and value.isdigit()) or len(value) > 10:  # not "²" or "٣"
        raise _fail("invalid_request", "max_age must be a non-negative integer")
    req.max_age = int(value)


def check_claims(params: dict[str, str], _c: ClientMetadata,
                 req: AuthorizationRequest) -> None:
    if "claims" not in params:
        return
    try:
        claims = json_input.loads_text(params["claims"])  # no lone surrogate, no NUL
    except ValueError:
        raise _fail("invalid_request", "claims is not valid JSON text") from None
    if not isinstance(claims, dict):
        raise _fail("invalid_request", "claims must be a JSON object")
    claims = {k: v for k, v in claims.items() if k in CLAIMS_MEMBERS}  # 5.5: others ignored
    if not all(isinstance(v, dict) for v in claims.values()):
        raise _fail("invalid_request", "claims id_token / userinfo must be objects")
    if _nested_deeper_than(claims, CLAIMS_DEPTH):
        raise _fail("invalid_request", "claims is nested too deeply")
    req.claims = claims
    asked_sub = claims.get("id_token", {}).get("sub")
    if isinstance(asked_sub, dict) and "value" in asked_sub:
        if not isinstance(asked_sub["value"], str):
            raise _fail("invalid_request", "claims id_token sub value must be a string")
        req.claims_sub = asked_sub["value"]


CLAIMS_DEPTH = 6  # {"id_token": {"acr": {"values": [...]}}} is 4 deep
CLAIMS_MEMBERS = frozenset({"id_token", "userinfo"})


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests deeper than ``limit``, found without recursion (it may
    nest hundreds deep)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else ()
        pending.extend((child, depth + 1) for child in children)
    return False


def check_hints(params: dict[str, str], _c: ClientMetadata,
                req: AuthorizationRequest) -> None:
    req.state = params.get("state")
    req.nonce = params.get("nonce")
    req.login_hint = (params.get("login_hint") or "")[:100] or None
    req.ui_locales = params.get("ui_locales")
    # page or touch (larger controls); popup and wap are shown as a page (OIDC Core 3.1.2.1
    # lets the provider choose what suits the user agent)
    req.display = "touch" if params.get("display") == "touch" else "page"
    req.acr_values = params.get("acr_values", "").split()
    req.essential_acr = _essential_acr(req.claims)
    if req.essential_acr and not set(req.essential_acr) & set(policy.SUPPORTED):
        raise _fail("unmet_authentication_requirements",  # before any sign-in or consent
                    "no requested acr value is supported")


def _essential_acr(claims: dict[str, Any]) -> list[str]:
    """OIDC Core 5.5.1.1: ``acr`` asked for as an essential claim of the ID token must be
    met by one of its values, like ``acr_values`` (the MFA step-up reads both)."""
    acr = claims.get("id_token", {}).get("acr")
    if not isinstance(acr, dict) or acr.get("essential") is not True:
        return []
    values = acr.get("values") if "values" in acr else [acr.get("value")]
    return [v for v in values if isinstance(v, str)][:10] if isinstance(values, list) else []


CHECKS: list[Check] = [
    check_response_mode,
    check_response_type,
    check_request_object,
    check_dpop_jkt,
    check_scope,
    check_pkce,
    check_prompt,
    check_max_age,
    check_claims,
    check_hints,
]


# -- reading the request --------------------------------------------------------------


async def read_params(request: Request) -> tuple[dict[str, str], set[str]]:
    """The request's parameters, and the names that came more than once.

    A parameter sent without a value is treated as omitted (RFC 6749 3.1). A POST body must
    be ``application/x-www-form-urlencoded`` (OIDC Core 3.1.2.1: "Form Serialization"), and
    bytes that are not UTF-8 make the request malformed rather than being replaced: a
    ``state`` must come back exactly as sent (RFC 6749 4.1.2.1), and no app can be trusted
    with parameters it did not send. Either is the malformed-request page."""
    if request.method == "POST":
        if not is_form(request):
            raise _malformed()
        raw = await request.body()
    else:
        raw = request.scope.get("query_string", b"")
    try:  # raw bytes beyond ASCII, and what the %-escapes decode to, must both be UTF-8
        items = parse_qsl(raw.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_PARAMETERS, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _malformed() from None
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in resources.gathered(items):
        if value == "":
            continue
        if name in params:
            repeated.add(name)
        params[name] = value
    return params, repeated


MAX_PARAMETERS = 200  # far more than a request has (resource may repeat)
UNTRUSTED_IF_REPEATED = frozenset({"client_id", "redirect_uri"})
SIGNED = "signed_request_object"  # a pushed request's mark: it came as a request object
# the parameters the endpoint reads (what a pushed request keeps, and what is taken from a
# request object)
PARAMETERS = frozenset({
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt",
    "max_age", "login_hint", "id_token_hint", "ui_locales", "claims_locales", "display",
    "acr_values", "claims", "response_mode", "code_challenge", "code_challenge_method",
    "request", "dpop_jkt", "resource"})


def _unknown_app() -> PageError:
    return PageError(400, N_("This app is not registered, or it has been suspended."),
                     title=N_("Invalid sign-in request"))


def _malformed() -> PageError:
    return PageError(400, N_("The sign-in request is malformed (a parameter is repeated or "
                             "cannot be read). Go back to the app and try again."),
                     title=N_("Invalid sign-in request"))


def object_params(request: Request, params: dict[str, str], client: ClientMetadata,
                  client_id: str) -> dict[str, str]:
    """RFC 9101 6.3: the parameters of the request object in ``params["request"]``,
    verified, in place of the others (``client_id``: the one the request names);
    ``request_objects.InvalidRequestObject`` when it cannot be used."""
    unpacked = request_objects.unpack(params["request"], client,
                                      request.app.state.settings.issuer, client_id, PARAMETERS)
    return {**unpacked, "client_id": client.client_id}


async def _signed_params(request: Request, params: dict[str, str],
                         repeated: set[str]) -> dict[str, str]:
    """The request object's parameters; one that cannot be verified gets an error page,
    never a redirect (its ``redirect_uri`` is not to be trusted)."""
    if repeated & {"client_id", "request"} or "request_uri" in params:  # OIDC Core 6: one
        raise _malformed()
    client = request.app.state.clients.get(params.get("client_id", ""))
    if client is None:
        raise _unknown_app()
    try:
        return await run_in_threadpool(object_params, request, params, client,
                                       params["client_id"])
    except request_objects.InvalidRequestObject as problem:
        log.info("request object refused: client_id=%s: %s", client.client_id, problem)
        raise PageError(400, N_("The app's signed sign-in request could not be checked. Go "
                                "back to the app and try again, or tell its makers."),
                        title=N_("Invalid sign-in request")) from None


def trusted_client(request: Request, params: dict[str, str],
                   repeated: set[str]) -> ClientMetadata:
    """check_client and check_redirect_uri: failures are pages, never redirects."""
    if repeated & UNTRUSTED_IF_REPEATED:
        raise _malformed()
    client = request.app.state.clients.get(params.get("client_id", ""))
    if client is None:
        raise _unknown_app()
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:  # required here: OIDC Core 3.1.2.1
        raise PageError(400, N_("The app did not say where to send you back after signing "
                                "in. Go back to the app and try again, or tell its makers."),
                        title=N_("Invalid sign-in request"))
    if not redirect_uris.registered(redirect_uri, client.redirect_uris,
                                    native=client.is_public):
        raise PageError(400, N_("The app sent a return address that is not registered for it, "
                                "so we will not send you back there."),
                        title=N_("Invalid sign-in request"))
    return client


# -- responses --------------------------------------------------------------------------


def respond(request: Request, req: AuthorizationRequest, params: dict[str, str]) -> Response:
    """Send ``params`` (code or error) to the client's redirect URI."""
    values = dict(params)
    if req.state is not None:
        values["state"] = req.state
    values["iss"] = request.app.state.settings.issuer
    if req.response_mode == "form_post":
        from idp.oidc.form_post import form_post_response

        return form_post_response(request, req.redirect_uri, values)
    separator = "&" if "?" in req.redirect_uri else "?"
    return RedirectResponse(req.redirect_uri + separator + urlencode(values), status_code=303)


def respond_error(request: Request, req: AuthorizationRequest, error: OAuthError) -> Response:
    return respond(request, req, error.params())


# -- interactions -----------------------------------------------------------------------


def save_interaction(request: Request, req: AuthorizationRequest,
                     interaction_id: str | None = None) -> str:
    interaction_id = interaction_id or secrets.token_urlsafe(18)
    request.app.state.store.set(f"ia:{interaction_id}", json.dumps(asdict(req)).encode(),
                                ttl=INTERACTION_SECONDS)
    return interaction_id


def load_interaction(request: Request, interaction_id: str) -> AuthorizationRequest:
    """The pending request of this browser, or a page saying it has expired."""
    raw = None
    if interaction_id and interaction_id in _interaction_ids(request):
        raw = request.app.state.store.get(f"ia:{interaction_id}")
    if raw is None:
        raise sessions.sign_in_expired()
    try:
        req = AuthorizationRequest.from_json(json.loads(raw))
    except (TypeError, ValueError):  # an entry no version writes (a damaged store)
        raise sessions.sign_in_expired() from None
    if req.ui_locales:  # its pages speak the app's language (no cookie: the app's choice
        setattr(request.state, APP_LOCALES, req.ui_locales)  # is not the browser's)
    return req


def peek_interaction(request: Request, interaction_id: str) -> AuthorizationRequest | None:
    """The pending request of this browser, or ``None`` (no page when it has expired)."""
    try:
        return load_interaction(request, interaction_id) if interaction_id else None
    except PageError:
        return None


def _to_page(request: Request, page: str, req: AuthorizationRequest,
             interaction_id: str | None = None) -> Response:
    interaction_id = save_interaction(request, req, interaction_id)
    target = f"/{page}?ia={interaction_id}"  # its pages read the app's ui_locales from it
    return _with_interaction_cookie(RedirectResponse(target, status_code=303), request,
                                    interaction_id)


def _login_here(request: Request, req: AuthorizationRequest,
                interaction_id: str | None) -> Response:
    """The sign-in page as this very response (a ``GET``: the browser may reload it)."""
    interaction_id = save_interaction(request, req, interaction_id)
    return _with_interaction_cookie(render_login(request, interaction_id, req), request,
                                    interaction_id)


def _interaction_ids(request: Request) -> list[str]:
    """The pending requests of this browser: one per tab (a portal may open several apps
    at once), the latest ``INTERACTIONS_PER_BROWSER``, joined by dots in one cookie."""
    held = request.cookies.get(cookies.name(request, INTERACTION_COOKIE), "")
    return [i for i in held.split(".") if i][
        -INTERACTIONS_PER_BROWSER:]


def _interaction_cookie(response: Response, request: Request, ids: list[str]) -> None:
    """Over https ``SameSite=None``, as the SSO cookie: an app's cross-site ``POST``
    authorization request must *add* its pending request to those of the browser's other
    tabs, which it can only do when it is sent the cookie; with ``Lax`` it came without it
    and replaced the list, and every other tab's sign-in ended on the "expired" page. Its
    pages' forms still need the ``Lax`` CSRF cookie and token; plain http keeps ``Lax``."""
    https = request.url.scheme == "https"
    if ids:
        response.set_cookie(cookies.name(request, INTERACTION_COOKIE),
                            ".".join(ids[-INTERACTIONS_PER_BROWSER:]), httponly=True,
                            samesite="none" if https else "lax", secure=https,
                            max_age=INTERACTION_SECONDS, path="/")
    else:
        response.delete_cookie(cookies.name(request, INTERACTION_COOKIE), path="/",
                               secure=request.url.scheme == "https")


def _with_interaction_cookie(response: Response, request: Request,
                             interaction_id: str) -> Response:
    ids = [i for i in _interaction_ids(request) if i != interaction_id]
    _interaction_cookie(response, request, [*ids, interaction_id])
    return response


def _fresh(req: AuthorizationRequest, session: sessions.SSOSession) -> bool:
    """Whether the session began with a sign-in made for this very request."""
    return req.logged_in_at is not None and session.auth_time >= req.logged_in_at


def _started_for(req: AuthorizationRequest, session: sessions.SSOSession) -> bool:
    """Whether the session was started by a sign-in for this very request (by any means:
    a QR approval keeps the phone's older ``auth_time``, so ``_fresh`` cannot tell)."""
    return req.logged_in_at is not None and session.created >= req.logged_in_at


def _to_public_subjects(request: Request, client: ClientMetadata,
                        req: AuthorizationRequest) -> None:
    """A pairwise app names the person by its own pairwise ``sub`` (hint, claims): compare
    as the account's public one, once, when the request arrives. Any other value from a
    pairwise app (another sector's id, a public ``sub``, one never issued) names nobody:
    the app must not learn whether an id it got elsewhere is the person signed in here."""
    if client.sector is None:
        return
    for member in ("hint_sub", "claims_sub"):
        value = getattr(req, member)
        if value is None:
            continue
        public = None
        if value.startswith(subjects.PAIRWISE_PREFIX):
            with request.app.state.db.session() as session:
                public = subjects.public_sub(session, value, client.sector)
        setattr(req, member, public or NOBODY)


NOBODY = subjects.PAIRWISE_PREFIX + "nobody"  # equal to no account's public sub


def other_person(req: AuthorizationRequest, session: sessions.SSOSession) -> bool:
    """The app asked for someone else (``id_token_hint``, or a ``sub`` value in claims)."""
    return any(wanted is not None and wanted != session.sub
               for wanted in (req.hint_sub, req.claims_sub))


def needs_login(req: AuthorizationRequest, session: sessions.SSOSession | None) -> bool:
    if session is None:
        return True
    fresh = _fresh(req, session)
    if "login" in req.prompt and not fresh:
        return True
    if req.max_age is not None and time.time() - session.auth_time > req.max_age and not fresh:
        return True
    return other_person(req, session)


def required_level(request: Request, account_id: int, req: AuthorizationRequest | None,
                   roles: frozenset[str] | None = None) -> int:
    """The authentication level this sign-in needs (mfa.policy): roles, app, request.

    ``roles``: the person's current roles when the caller has read them already."""
    settings = request.app.state.settings
    client = request.app.state.clients.get(req.client_id) if req else None
    if roles is None:
        with request.app.state.db.sessions() as session:
            account = session.get(Account, account_id)
            roles = frozenset(current_roles(session, account.person_id) if account else ())
    return policy.required_level(
        roles, settings.mfa_required_roles,
        (client.extra.get("default_acr_values") or []) if client else [],
        req.acr_values if req else [], req.essential_acr if req else [])


def decide(request: Request, client: ClientMetadata, req: AuthorizationRequest,
           interaction_id: str | None = None,
           loaded: tuple[str, sessions.SSOSession] | None = None,
           needed: int | None = None) -> Response:
    """Login, account choice, consent, or the code: whatever the request needs next.

    ``loaded``: the SSO session, when the caller has just started it (its cookie is not
    on this request yet); ``needed``: the level it needs, when already computed."""
    roles = None
    if loaded is None and (found := sessions.load_standing(request)) is not None:
        loaded, roles = found
    session = loaded[1] if loaded else None
    silent = "none" in req.prompt
    if session is not None and other_person(req, session) and _started_for(req, session):
        # signed in just now, as someone other than the app asked for (OIDC Core 3.1.2.1)
        return answer(request, req, interaction_id, OAuthError(
            "login_required", "signed in as another person than the one asked for"))
    if needs_login(req, session):
        if silent:
            return answer(request, req, interaction_id,
                          OAuthError("login_required", "sign-in needed"))
        if request.method == "GET" and not req.pushed:  # a pushed request's URL is used up:
            return _login_here(request, req, interaction_id)  # reloads go to /login?ia=
        return _to_page(request, "login", req, interaction_id)
    assert loaded is not None and session is not None
    if needed is None:
        needed = required_level(request, session.account_id, req, roles)
    if policy.level(session.acr) < needed:
        if silent:
            return answer(request, req, interaction_id, OAuthError(
                "interaction_required", "a second factor is needed"))
        interaction_id = save_interaction(request, req, interaction_id)
        return _with_interaction_cookie(mfa_step.begin(request, mfa_step.Step(
            account_id=session.account_id, sub=session.sub, amr=session.amr,
            ia=interaction_id, upgrade=True, proven_here=session.proven_here)),
            request, interaction_id)
    if "select_account" in req.prompt and req.account_chosen != session.account_id:
        return _to_page(request, "select-account", req, interaction_id)
    # OIDC Core 11: with prompt=none an offline_access without consent is ignored
    # (_offline_consented, below), not a reason to fail the request
    asked = " ".join(s for s in req.scope.split() if s != OFFLINE) if silent else req.scope
    if req.consent_given != session.account_id and (
        "consent" in req.prompt  # asked for: shown to first-party apps too
        or (not client.first_party
            and (_unproven(client, req)
                 or not consent.covers(request.app.state.db, session.account_id,
                                       client.client_id, asked, req.apis())))
    ):
        if silent:
            return answer(request, req, interaction_id,
                          OAuthError("consent_required", "consent needed"))
        return _to_page(request, "consent", req, interaction_id)
    if OFFLINE in req.scope.split() and not _offline_consented(request, client, req, session):
        req.scope = " ".join(s for s in req.scope.split() if s != OFFLINE)
        if not req.scope:  # nothing else was asked for
            return answer(request, req, interaction_id, OAuthError(
                "invalid_scope", "offline_access needs the person's consent (prompt=consent)"))
    acr = policy.acr_answer(session.acr, req.essential_acr)
    if acr is None:  # OIDC Core 5.5.1.1: an essential acr not met fails the authentication
        return answer(request, req, interaction_id, OAuthError(
            "unmet_authentication_requirements", "no requested acr value can be met"))
    if interaction_id and request.app.state.store.take(f"ia:{interaction_id}") is None:
        raise sessions.sign_in_expired()  # another request of this browser answered it
    return answer(request, req, interaction_id, _issue_code(request, client, req, loaded, acr),
                  taken=True)


def _offline_consented(request: Request, client: ClientMetadata, req: AuthorizationRequest,
                       session: sessions.SSOSession) -> bool:
    """OIDC Core 11: a refresh token that outlives the sign-in needs the person's consent,
    "always", first-party apps included; without it ``offline_access`` is ignored. Given
    on this request's consent page (which lists it) or remembered for this app. A
    third-party app gets here only with one of the two (``decide``'s consent step covers
    the whole scope); a first-party app skips that step, so its remembered consent is
    looked up (only when it asks for ``offline_access``), and so is a third-party app's
    under ``prompt=none``, whose consent step left ``offline_access`` out."""
    if req.consent_given == session.account_id or (
            not client.first_party and "none" not in req.prompt):
        return True
    return consent.covers(request.app.state.db, session.account_id, client.client_id, OFFLINE)


def _issue_code(request: Request, client: ClientMetadata, req: AuthorizationRequest,
                loaded: tuple[str, sessions.SSOSession], acr: str) -> dict[str, str]:
    token, session = loaded
    apis = req.apis()
    if client.client_id not in session.apps:
        unsaved = sessions.is_unsaved(request, token)
        sessions.add_app(request.app.state.store, token, session, client.client_id,
                         unsaved=unsaved)
        if unsaved:
            sessions.mark_saved(request)
    grant = Grant(client_id=client.client_id, scope=req.scope, sub=session.sub,
                  account_id=session.account_id, sid=session.sid, auth_time=session.auth_time,
                  acr=acr, amr=tuple(session.amr), nonce=req.nonce, claims=req.claims,
                  session_ends_at=session.created + sessions.MAX_SECONDS, jkt=req.dpop_jkt,
                  resources=tuple(apis), resource_owners=tuple(apis.values()))
    return {"code": codes.issue(request.app.state.store, grant, req.redirect_uri,
                                req.code_challenge)}


def _unproven(client: ClientMetadata, req: AuthorizationRequest) -> bool:
    """A native app's request (public, its code sent to a loopback port or an app
    scheme): any app on the device can send it, so remembered consent does not let it
    through unseen (RFC 8252 8.6); the person confirms each time."""
    return client.is_public and not req.redirect_uri.startswith("https://")


def answer(request: Request, req: AuthorizationRequest, interaction_id: str | None,
           outcome: dict[str, str] | OAuthError, *, taken: bool = False) -> Response:
    """The request's final answer to the app (a code or an error): the interaction is over,
    so it is deleted (unless already ``taken`` from the store) and cannot be resumed
    again."""
    if interaction_id and not taken:
        request.app.state.store.delete(f"ia:{interaction_id}")
    params = outcome.params() if isinstance(outcome, OAuthError) else outcome
    response = respond(request, req, params)
    _interaction_cookie(response, request,
                        [i for i in _interaction_ids(request) if i != interaction_id])
    return response


# -- the endpoint -----------------------------------------------------------------------


@router.get(AUTHORIZE_PATH, summary="Authorization endpoint", operation_id="authorize_get",
            dependencies=[Depends(no_action_on_head)])
@router.post(AUTHORIZE_PATH, summary="Authorization endpoint", operation_id="authorize_post")
async def authorize(request: Request) -> Response:
    params, repeated = await read_params(request)
    pushed, signed = pushed_requests.is_pushed(params.get("request_uri")), False
    if pushed:  # RFC 9126: the parameters the client pushed, not the browser's
        params, repeated = await _pushed_params(request, params, repeated), set()
        signed = params.pop(SIGNED, None) == "1"  # pushed as a request object
    elif "request" in params:  # RFC 9101: the parameters the client signed, not the browser's
        params, repeated, signed = await _signed_params(request, params, repeated), set(), True
    client = trusted_client(request, params, repeated)
    req = AuthorizationRequest(client_id=client.client_id,
                               redirect_uri=params["redirect_uri"], scope="",
                               # RFC 6749 4.1.2.1 echoes "the exact value received":
                               # a repeated state has none
                               state=None if "state" in repeated else params.get("state"),
                               response_mode=params.get("response_mode", "query")
                               if params.get("response_mode") in RESPONSE_MODES else "query",
                               pushed=pushed, signed=signed)
    try:
        if repeated:  # RFC 6749 4.1.2.1: an error the client hears about
            raise _fail("invalid_request", "repeated parameter: " + " ".join(sorted(repeated)))
        if client.require_pushed_authorization_requests and not pushed:  # RFC 9126 6
            raise _fail("invalid_request", "this client must push its authorization "
                        "requests (pushed_authorization_request_endpoint)")
        _check_all(request, params, client, req)
    except Redirectable as failure:
        return respond_error(request, req, failure.error)
    return await run_in_threadpool(_first_answer, request, client, req)


async def _pushed_params(request: Request, params: dict[str, str],
                         repeated: set[str]) -> dict[str, str]:
    """The pushed request's parameters (once), for the client that pushed it; the rest of
    the browser's parameters are ignored (RFC 9126 4). Gone, used or another client's:
    the expired-sign-in page."""
    if repeated & {"client_id", "request_uri"}:
        raise sessions.sign_in_expired()
    # taken before the client_id is compared: a request_uri someone else brings is gone,
    # never left for a second try
    stored = await run_in_threadpool(pushed_requests.take, request.app.state.store,
                                     params["request_uri"])
    if stored is None or stored.get("client_id") != params.get("client_id"):
        raise sessions.sign_in_expired()
    return stored


def _check_all(request: Request, params: dict[str, str], client: ClientMetadata,
               req: AuthorizationRequest) -> None:
    """Every check of a request whose client and redirect URI are known (``Redirectable``
    failures), the ``id_token_hint`` included."""
    for check in CHECKS:
        check(params, client, req)
    try:  # RFC 8707: the APIs the code's tokens may be for (registered ones only)
        req.resources = list(resources.registered(request.app.state.resources,
                                                  resources.requested(params),
                                                  client.client_id))
        req.resource_owners = list(resources.owners(request.app.state.resources,
                                                    req.resources))
    except OAuthError as error:
        raise Redirectable(error) from None
    if params.get("id_token_hint"):
        req.hint_sub = subject_of_hint(request.app.state.keys, params["id_token_hint"],
                                       request.app.state.settings.issuer, client.client_id)
        if req.hint_sub is None:
            raise _fail("invalid_request", "id_token_hint is not an ID token we issued")


def check_pushed(request: Request, params: dict[str, str],
                 client: ClientMetadata) -> dict[str, str]:
    """The PAR endpoint's checks of a request before it is kept: the authorization
    endpoint's, answered as JSON errors (no redirect: the client is right there). The
    parameters to keep: a request object's, verified here once and marked ``SIGNED``."""
    signed = "request" in params
    if signed:
        try:
            params = object_params(request, params, client, client.client_id)
        except request_objects.InvalidRequestObject as problem:
            raise OAuthError("invalid_request_object", str(problem)) from None
    redirect_uri = params.get("redirect_uri", "")
    req = AuthorizationRequest(client_id=client.client_id, redirect_uri=redirect_uri,
                               scope="", signed=signed)
    try:  # first: a client without the code flow hears unauthorized_client
        _check_all(request, params, client, req)
    except Redirectable as failure:
        raise failure.error from None
    if not redirect_uri or not redirect_uris.registered(redirect_uri, client.redirect_uris,
                                                        native=client.is_public):
        raise OAuthError("invalid_request", "redirect_uri is missing or not registered")
    return {**params, SIGNED: "1"} if signed else params


def _first_answer(request: Request, client: ClientMetadata,
                  req: AuthorizationRequest) -> Response:
    _to_public_subjects(request, client, req)
    return decide(request, client, req)


@router.get("/oauth2/authorize/resume", include_in_schema=False,
            dependencies=[Depends(no_action_on_head)])
def resume(request: Request, ia: str = "") -> Response:
    """Where the login, account and consent pages send the browser back to."""
    req = load_interaction(request, ia)
    client = request.app.state.clients.get(req.client_id)
    if client is None:
        raise _unknown_app()
    return decide(request, client, req, ia)


def carry_on(request: Request, req: AuthorizationRequest, ia: str,
             loaded: tuple[str, sessions.SSOSession], needed: int) -> Response:
    """Continue a pending request right after a sign-in, in the same response."""
    client = request.app.state.clients.get(req.client_id)
    if client is None:
        raise _unknown_app()
    return decide(request, client, req, ia, loaded, needed)


def deny(request: Request, ia: str, description: str) -> Response:
    """The person refused: tell the app ``access_denied``."""
    req = load_interaction(request, ia)
    return answer(request, req, ia, OAuthError("access_denied", clean_description(description)))
