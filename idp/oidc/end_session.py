"""The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0).

An app's "sign out" sends the browser to ``GET`` or ``POST /oauth2/logout`` with
``id_token_hint`` (recommended), ``client_id``, ``post_logout_redirect_uri``, ``state``,
``ui_locales`` and ``logout_hint`` (accepted; the ID token names the session better).
The steps:

1. read the parameters (query or form; an empty one counts as omitted);
2. the app: the audience of ``id_token_hint`` (our signature and issuer, expiry ignored:
   section 2) and ``client_id``, which must agree;
3. ``post_logout_redirect_uri``: only for a known app, and only one it registered, compared
   exactly (section 3). A request that cannot be checked (a hint we did not sign, a hint
   and ``client_id`` naming different apps, an unknown or suspended app, an unregistered
   address, a repeated parameter that it reads) is never redirected: the person is asked,
   told why, and may still sign out (a pupil on a shared computer must not stay signed in
   because an app is misconfigured);
4. ask or not: the session ends at once when the hint names this browser's session
   (its ``sid``) or there is no session; otherwise the person is asked, on a page whose
   form comes back here with a CSRF token (section 2: the OP MUST ask when there is no
   hint or it names another session, so a link on any site cannot sign someone out);
5. end the SSO session, clear its cookie, and go back to the app (with ``state``) or show
   the signed-out page (also on the way back, when front-channel apps are to be told).

Only this browser's SSO session ends. Its apps that registered a
``backchannel_logout_uri`` are told afterwards (``idp.oidc.backchannel_logout``); those
that registered a ``frontchannel_logout_uri`` are loaded in frames of the signed-out page,
which then goes on to the app's return address (``idp.oidc.frontchannel_logout``). CAS
and SAML apps are not told. Refresh tokens issued in the session without
``offline_access`` are revoked with it (``sessions.end``); ``offline_access`` ones stay
valid until revoked or expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from core.audit import Context, record
from core.web import csrf
from core.web.errors import PageError
from core.web.i18n import N_
from core.web.safe_methods import no_action_on_head
from core.web.templates import PAGE_QUERY, render
from directory import subjects
from directory.apps import ClientMetadata
from idp import mfa_step, password_change, sessions
from idp.oidc import frontchannel_logout
from idp.oidc.authorize import read_params
from idp.oidc.id_token_hint import audiences, hint_claims

router = APIRouter(tags=["oidc"], include_in_schema=False)
END_SESSION_PATH = "/oauth2/logout"


@dataclass(frozen=True)
class LogoutRequest:
    client: ClientMetadata | None
    hint_sid: str | None  # the sid of a valid id_token_hint
    redirect_to: str | None  # the checked post_logout_redirect_uri, with state
    params: dict[str, str]  # what the confirmation form sends back
    problem: str | None = None  # why the app's request is not trusted (msgid)


class Untrusted(Exception):
    """The app's request cannot be checked: the person may still sign out, when asked,
    and is not sent anywhere afterwards (section 3: no redirect to an unchecked address)."""


def _client_of(request: Request, params: dict[str, str]) -> tuple[ClientMetadata | None,
                                                                   str | None]:
    """The app (from the hint's audience and ``client_id``) and the hint's ``sid``."""
    client_id = params.get("client_id")
    hint_sid = None
    if "id_token_hint" in params:
        state = request.app.state
        claims = hint_claims(state.keys, params["id_token_hint"], state.settings.issuer)
        if claims is None:
            raise Untrusted(N_("The app's sign-out request could not be checked."))
        auds = audiences(claims)
        if client_id is None and len(auds) == 1 and isinstance(auds[0], str):
            client_id = auds[0]
        if client_id not in auds:
            raise Untrusted(N_("The sign-out request names two different apps."))
        hint_sid = claims.get("sid") if isinstance(claims.get("sid"), str) else None
    if client_id is None:
        return None, hint_sid
    client = request.app.state.clients.get(client_id)
    if client is None:
        raise Untrusted(N_("This app is not registered, or it has been suspended."))
    return client, hint_sid


def _return_address(client: ClientMetadata | None, params: dict[str, str]) -> str | None:
    uri = params.get("post_logout_redirect_uri")
    if uri is None:
        return None
    if client is None or uri not in client.post_logout_redirect_uris:
        raise Untrusted(N_("The app asked to send you to an address that is not registered "
                           "for it."))
    if "state" not in params:
        return uri
    return uri + ("&" if "?" in uri else "?") + urlencode({"state": params["state"]})


# What this endpoint keeps of a request (through the confirmation page), and reads: one
# of these repeated makes the request untrusted (which value was meant?); another
# parameter repeated is ignored with the rest it does not know.
KEPT = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")
READ = frozenset({*KEPT, "logout_hint"})
UNREADABLE = "(unreadable)"


def read_request(request: Request, params: dict[str, str], repeated: set[str]) -> LogoutRequest:
    kept = {k: params[k] for k in KEPT if k in params}
    try:
        if repeated & (READ | {UNREADABLE}):
            raise Untrusted(N_("The sign-out request is malformed (a parameter is repeated or "
                               "cannot be read)."))
        client, hint_sid = _client_of(request, params)
        return LogoutRequest(client, hint_sid, _return_address(client, params), kept)
    except Untrusted as untrusted:  # the confirmation carries nothing of it back
        return LogoutRequest(None, None, None, {k: v for k, v in kept.items()
                                                if k == "ui_locales"}, problem=str(untrusted))


def _confirmed(request: Request, params: dict[str, str]) -> bool:
    """The person pressed "sign out" on our confirmation page (a valid CSRF token)."""
    sent = params.pop(csrf.FIELD, "")
    asked = params.pop("confirm", "") == "yes"
    return asked and request.method == "POST" and csrf.token_matches(request, sent)


@router.api_route(END_SESSION_PATH, methods=["GET", "POST"],
                  dependencies=[Depends(no_action_on_head)])  # HEAD signs nobody out
async def end_session(request: Request) -> Response:
    try:
        params, repeated = await read_params(request)
    except PageError:  # unreadable (not UTF-8, not a form): an untrusted request, which
        params, repeated = {}, {UNREADABLE}  # still lets the person sign out
    return await run_in_threadpool(answer, request, params, repeated)


def answer(request: Request, params: dict[str, str], repeated: set[str]) -> Response:
    confirmed = _confirmed(request, params)
    logout = read_request(request, params, repeated)
    setattr(request.state, PAGE_QUERY, logout.params)  # POSTed too: ui_locales, switcher
    loaded = sessions.load(request.app.state.store, request)
    client_name = logout.client.name if logout.client else None
    if loaded is not None and not confirmed and logout.hint_sid != subjects.presented_sid(
            request.app.state.settings, logout.client.sector if logout.client else None,
            loaded[1].sid):
        return render(request, "end_session.html", {
            "client_name": client_name, "params": logout.params, "problem": logout.problem},
            form_target=logout.redirect_to)  # its answer redirects to the app
    frames = sign_out(request, loaded, logout.client) if loaded is not None else []
    forget_pending_steps(request)
    response: Response = (
        RedirectResponse(logout.redirect_to, status_code=303)
        if logout.redirect_to and not frames
        else signed_out_page(request, frames, client_name=client_name, problem=logout.problem,
                             continue_to=logout.redirect_to, nobody=loaded is None))
    sessions.clear_cookie(response, request)
    return response


def forget_pending_steps(request: Request) -> None:
    """A sign-out in this browser also ends a sign-in still under way in it (a second factor
    or a new password not yet given, with or without a session yet): left open on a shared
    computer, it must not finish for the next person."""
    for steps in (mfa_step.STEPS, password_change.STEPS):
        steps.forget_this_browsers(request)


def sign_out(request: Request, loaded: tuple[str, sessions.SSOSession],
             client: ClientMetadata | None = None) -> list[str]:
    """End this browser's SSO session, record who signed out (and from which app), and
    tell the session's apps: back-channel logout in the background; the front-channel
    logout URLs that the signed-out page must load are returned."""
    ended = sessions.end(request.app.state.store, loaded[0], request, read=loaded[1])
    with request.app.state.db.session() as session:
        record(session, actor=f"account:{loaded[1].account_id}", action="logout",
               outcome="success", target=f"app:{client.client_id}" if client else "",
               context=Context.of(request))
    return frontchannel_logout.frames(request, ended)


def signed_out_page(request: Request, frames: list[str], *, client_name: str | None = None,
                    problem: str | None = None, continue_to: str | None = None,
                    previous: bool = False, nobody: bool = False) -> Response:
    """The signed-out page; it loads the apps' front-channel logout ``frames`` and then
    goes on to ``continue_to`` (the app's checked return address), if any. ``previous``:
    the page is about the person signed in before, whose session a sign-in ended;
    ``nobody``: nobody was signed in in this browser (nothing was ended, nobody told)."""
    return render(request, "signed_out.html", {
        "client_name": client_name, "problem": problem, "frames": frames,
        "continue_to": continue_to, "wait_ms": frontchannel_logout.WAIT_SECONDS * 1000,
        "previous": previous, "nobody": nobody}, frames=frames)


@router.get(frontchannel_logout.DETOUR_PATH)
def previous_signed_out(request: Request, k: str = "") -> Response:
    """A sign-in ended another person's session in this browser: load that session's
    front-channel logout frames, then go on with the sign-in (``frontchannel_logout.detour``).
    An unknown or expired page goes to the start page."""
    found = frontchannel_logout.detour_of(request, k)
    if found is None:
        return RedirectResponse("/", status_code=303)
    frames, target = found
    return signed_out_page(request, frames, continue_to=target, previous=True)
