"""SSO sessions: who is signed in in this browser, since when, how, and to which apps.

The browser holds an opaque random token in the ``idp_session`` cookie
(``__Host-idp_session`` over https: ``core.web.cookies``; HttpOnly; a browser-session
cookie; over https ``SameSite=None; Secure``, over http ``SameSite=Lax``: see
``set_cookie``); the store holds the session under
``SM3(token)``, so a store dump reveals no usable cookie. ``sid`` is a separate
random id that ID tokens carry (for logout), never the cookie value. Sessions
expire after ``IDLE_SECONDS`` without use and ``MAX_SECONDS`` in all; a step-up moves the
session to a new token (``renew``). Each account's session keys are also kept in a set
(``sso-of:<account id>``), so that signing it out everywhere ends them all at once and
tells their apps (``end_everywhere``). Each session's ``sid`` has a key of its own,
``sso-live:<sid>``, written and expiring with it (and before it moves to a new token), and
removed when it ends, which also leaves ``sso-ended:<sid>``, the stronger of the two: what
the refresh tokens that live with the session check (``is_live``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response

from core import json_input
from core.store import Store
from core.web import cookies
from core.web.errors import PageError
from core.web.i18n import N_
from directory.apps import ClientMetadata
from directory.people import standing
from idp.oidc import backchannel_logout
from mfa import policy

log = logging.getLogger("idp.sessions")
COOKIE = "idp_session"
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 7 * 24 * 3600
REAUTH_SECONDS = 600
TOUCH_SECONDS = 300


@dataclass
class SSOSession:
    sid: str
    account_id: int
    sub: str
    auth_time: int
    amr: list[str]
    acr: str
    created: int
    apps: list[str] = field(default_factory=list)
    # False when the factors were shown on another device (QR approval from a phone): such
    # a session is never "recent" enough to change the sign-in factors (``is_recent``)
    proven_here: bool = True
    touched: int = 0  # when the idle timeout was last pushed back (``load``)
    # when it began, to the microsecond (``created`` is whole seconds): what a "sign out
    # everywhere" of the account compares (``load_standing``); 0 in sessions saved before
    begun: float = 0.0

    def registered_apps(self, clients: Any) -> list[ClientMetadata]:
        """The apps of this session still registered in ``clients`` (the registry; not
        suspended), in the order the person signed in to them: those a logout tells."""
        return [c for c in map(clients.get, self.apps) if c is not None]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SSOSession:
        """Members this version does not know are left out (a rolling deploy)."""
        return cls(**json_input.known_members(cls, data))


def _key(token: str) -> str:
    return "sso:" + hashlib.new("sm3", token.encode()).hexdigest()


def _ttl(session: SSOSession) -> float:
    """Until ``IDLE_SECONDS`` after the last use (``load`` pushes it back every
    ``TOUCH_SECONDS``), and never beyond ``MAX_SECONDS`` after sign-in."""
    return max(1.0, min(IDLE_SECONDS, session.created + MAX_SECONDS - time.time()))


def _index(account_id: int) -> str:
    """The set of the store keys of an account's sessions (``end_everywhere``). Each
    member lives until its session's ``MAX_SECONDS`` are up, so the set holds at most a
    week of sign-ins; members of sessions that ended sooner are dropped when read."""
    return f"sso-of:{account_id}"


def _live_key(sid: str) -> str:
    return "sso-live:" + sid


def save(store: Store, token: str, session: SSOSession) -> bool:
    """Put the session in the store under ``token``. False: its ``sid`` was signed out
    meanwhile (a sign-out in another tab while this one moved the session to a new token:
    a step-up, the same person signing in again), and the copy just written is ended at
    once, the sign-out standing (the ``sso-ended`` mark is read in the same round trip)."""
    key = _key(token)
    ended = store.set_many([(key, json.dumps(asdict(session)).encode()),
                            (_live_key(session.sid), b"1")], ttl=_ttl(session),
                           then_get=_ended_key(session.sid))
    if ended is not None:
        _mark_ended(store, key)
        return False
    store.add_member(_index(session.account_id), key,
                     ttl=max(1.0, session.created + MAX_SECONDS - time.time()))
    return True


def new(*, account_id: int, sub: str, amr: list[str], acr: str) -> tuple[str, SSOSession]:
    """A new session and its cookie token, not yet in the store (``save`` puts it there)."""
    began = time.time()
    now = int(began)
    session = SSOSession(sid=secrets.token_urlsafe(16), account_id=account_id, sub=sub,
                         auth_time=now, amr=amr, acr=acr, created=now, begun=began)
    return _new_token(), session


def _new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class SignIn:
    """A sign-in's new session (``token``, ``session``, not yet saved) and the other
    person's session it ended in this browser (``replaced``), whose front-channel apps
    the browser should still be sent to (``idp.oidc.frontchannel_logout``)."""
    token: str
    session: SSOSession
    replaced: SSOSession | None = None


def instead_of_current(store: Store, request: Request, *, account_id: int, sub: str,
                       amr: list[str], proven_here: bool = True) -> SignIn:
    """A new session for a sign-in in this browser (not yet saved), at the level ``amr``
    reaches, under a new cookie token: a sign-in never reuses a token it did not make (no
    fixation). The browser's previous session ends. Someone else's ends for good (its apps
    are told, its refresh tokens revoked): two people are never signed in at once. The
    same person signing in again (an app's ``max_age`` or ``prompt=login``) is a
    re-authentication, not a sign-out: the session keeps its ``sid`` and apps, and only
    the sign-in time and methods are new."""
    token, session = new(account_id=account_id, sub=sub, amr=amr, acr=policy.acr_for(amr))
    session.proven_here = proven_here
    previous = load(store, request)
    if previous is not None and previous[1].account_id == account_id:
        if _retire(store, *previous):  # nobody is told, nothing revoked
            session.sid, session.apps = previous[1].sid, list(previous[1].apps)
        return SignIn(token, session)  # (ended meanwhile: a session of its own)
    replaced = (end(store, previous[0], request, read=previous[1]) if previous is not None
                else None)
    return SignIn(token, session, replaced)


def start(store: Store, *, account_id: int, sub: str, amr: list[str], acr: str) -> tuple[str,
                                                                                         SSOSession]:
    """A new session, saved."""
    token, session = new(account_id=account_id, sub=sub, amr=amr, acr=acr)
    save(store, token, session)
    return token, session


def renew(store: Store, token: str, session: SSOSession) -> str | None:
    """Save ``session`` under a new cookie token and end the old one (the session keeps
    its ``sid`` and apps): after a step-up, a token taken before it is worth nothing.
    None: the session ended meanwhile (a sign-out in another tab), and stays ended."""
    if not _retire(store, token, session):
        return None
    fresh = _new_token()
    return fresh if save(store, fresh, session) else None  # (signed out as it moved)


def load(store: Store, request: Request) -> tuple[str, SSOSession] | None:
    token = request.cookies.get(cookies.name(request, COOKIE))
    if not token or len(token) > 100:
        return None
    raw = store.get(_key(token))
    if not raw:  # b"": being ended right now (``end``)
        return None
    session = SSOSession.from_json(json.loads(raw))
    now = int(time.time())
    if now - max(session.touched, session.created) >= TOUCH_SECONDS:
        session.touched = now  # in use: push the idle timeout back (one write per 5 min),
        # only if it still exists: a logout or step-up meanwhile must not be undone
        if not _write_merging(store, token, session):
            return None
    return token, session


def load_standing(request: Request) -> tuple[tuple[str, SSOSession], frozenset[str]] | None:
    """The browser's session (token, session) and the person's current roles, in one
    query. A session whose account may no longer sign in (disabled; the person suspended,
    graduated, transferred or gone) is ended here: the browser is then signed out for the
    apps and for the account pages alike, and the sign-in page says why in plain words."""
    store = request.app.state.store
    loaded = load(store, request)
    if loaded is None:
        return None
    with request.app.state.db.sessions() as session:
        now = standing(session, loaded[1].account_id)
    if not now.allows(loaded[1].begun or loaded[1].created):  # or signed out everywhere
        end(store, loaded[0], request)
        return None
    return loaded, now.roles


def current(request: Request) -> SSOSession | None:
    """The signed-in person's session in this browser, if any (``load_standing``)."""
    found = load_standing(request)
    return found[0][1] if found else None


def is_recent(session: SSOSession, seconds: int = REAUTH_SECONDS) -> bool:
    """Whether the person signed in (or confirmed it was them) in the last ``seconds``:
    what changing the sign-in factors requires (a stolen, idle session cannot add one)."""
    return session.proven_here and time.time() - session.auth_time <= seconds


def recent(request: Request, seconds: int | None = REAUTH_SECONDS) -> SSOSession | None:
    """The browser's session if the person signed in within ``REAUTH_SECONDS``, in this
    browser, at the level the policy asks of them (a teacher: two factors): the pages
    that change how one signs in (factors, recovery codes) need it, so a session left
    open on a shared school computer, one started by approving a QR code, or a single
    factor of someone who needs two cannot be used to add an attacker's factor."""
    found = load_standing(request)
    if found is None:
        return None
    (_token, session), roles = found
    needed = policy.required_level(roles, request.app.state.settings.mfa_required_roles)
    if not session.proven_here or policy.level(session.acr) < needed:
        return None
    return session if seconds is None or is_recent(session, seconds) else None


def proven(request: Request) -> SSOSession | None:
    """The browser's session if it is at the level the policy asks of the person and was
    proven in this browser, however long ago (``recent`` without the time): what the
    admin console needs to show people, while its actions need ``recent``."""
    return recent(request, None)


def reauth_url(page: str) -> str:
    """Where to confirm it is you (the password again, and the second factor if the
    policy wants one) before coming back to ``page``."""
    return "/login?" + urlencode({"next": page})


def safe_next(value: str) -> str:
    """``value`` when it is a path on this site, else "" (a ``next`` that can never send
    the browser to another site: no open redirect)."""
    if value.startswith("/") and not value.startswith(("//", "/\\")) and len(value) <= 500 \
            and not any(ord(c) < 32 for c in value):
        return value
    return ""


def sign_in_expired() -> PageError:
    """The page for a pending sign-in (an app's request, a second-factor step) that is
    gone, or was never this browser's, or cannot be read."""
    return PageError(400, N_("This sign-in has expired or was started in another browser. "
                             "Go back to the app and sign in again."),
                     title=N_("Sign-in expired"))


SIGN_IN_STOPPED = N_("This sign-in was stopped: the account's password or second factor "
                     "was reset meanwhile, or it may no longer sign in. Please sign in again.")


def sign_in_stopped() -> PageError:
    """The page for a sign-in step (second factor, new password, a QR approval) whose
    account was signed out everywhere since it began (a password or second-factor reset),
    or may no longer sign in."""
    return PageError(400, SIGN_IN_STOPPED, title=N_("Sign-in stopped"))


UNSAVED = "unsaved_session"  # request.state member: the token of a session not yet written


def mark_unsaved(request: Request, token: str) -> None:
    """The session of ``token`` was just started and is not in the store yet: its first
    write is a plain ``SET`` (``add_app``), the rest replace only what exists."""
    setattr(request.state, UNSAVED, token)


def is_unsaved(request: Request, token: str) -> bool:
    return getattr(request.state, UNSAVED, None) == token


def mark_saved(request: Request) -> None:
    setattr(request.state, UNSAVED, None)


def add_app(store: Store, token: str, session: SSOSession, client_id: str, *,
            unsaved: bool = False) -> None:
    """Record that ``client_id`` was signed in to in this session. Two tabs of a portal may
    add apps at once: each write returns what it replaced, and apps another tab added
    meanwhile are merged back in, so none is lost (back-channel logout tells them all).
    Never brings back a session ended meanwhile; ``unsaved`` (``is_unsaved``): the
    session was just started and this is its first write."""
    if client_id not in session.apps:
        session.apps.append(client_id)
    if unsaved:
        save(store, token, session)
        return
    _write_merging(store, token, session)


def _write_merging(store: Store, token: str, session: SSOSession) -> bool:
    """Write ``session`` over the stored one, only if it is still there (False: it ended
    meanwhile), merging back apps another request wrote since ``session`` was read."""
    for _ in range(10):
        replaced = store.replace(_key(token), json.dumps(asdict(session)).encode(),
                                 ttl=_ttl(session), only_existing=True)
        if not replaced:
            return False
        missing = [a for a in SSOSession.from_json(json.loads(replaced)).apps
                   if a not in session.apps]
        if not missing:
            break
        session.apps.extend(missing)
    store.set(_live_key(session.sid), b"1", ttl=_ttl(session))  # as long as it lives
    return True


def end(store: Store, token: str, request: Request | None = None, *,
        read: SSOSession | None = None) -> SSOSession | None:
    """End the session of ``token`` and return it (``None``: it had ended already, and no
    ``read`` says which sid it was); with
    ``request``, its apps are told (back-channel logout, in the background) and the
    refresh tokens that live with it (no ``offline_access``) are revoked.

    With ``request``, what ends is the session's ``sid``, whichever token it lives under
    by now: ``read`` (the session as this request read it) ends it even if another tab
    moved it to a new token meanwhile (a step-up, the same person signing in again), and
    every copy of it in the account's sessions ends too (two tabs stepping up at once
    leave one). A move that saves its copy after this finds the sid ended (``save``)."""
    if request is None:  # nobody to tell, nothing revoked: the store's part of an end
        _mark_ended(store, _key(token))
        return None
    state = request.app.state
    ended = _mark_ended(store, _key(token))
    if ended is None and read is not None:  # moved to another token meanwhile (or ended)
        store.set(_ended_key(read.sid), b"1", ttl=MAX_SECONDS)
        store.delete(_live_key(read.sid))
        ended = read
    if ended is None:
        return None
    try:
        _end_copies(store, ended)
    except store.errors:  # the sid has ended (its copies are worth nothing): tell its apps
        log.warning("the other copies of an ended session could not be removed now; "
                    "they idle out")
    _tell_and_revoke(state, ended)
    return ended


def _end_copies(store: Store, ended: SSOSession) -> None:
    """End the account's other sessions with ``ended``'s sid (its sso-ended mark is set),
    adding their apps to ``ended``'s: they are told with it."""
    index = _index(ended.account_id)
    keys = sorted(store.members(index))
    for key, raw in zip(keys, store.get_many(keys), strict=True):
        if raw and (copy := SSOSession.from_json(json.loads(raw))).sid == ended.sid:
            ended.apps.extend(a for a in copy.apps if a not in ended.apps)
            store.delete(key)
            store.remove_member(index, key)


def _retire(store: Store, token: str, session: SSOSession) -> bool:
    """The session moves to a new token (``renew``, the same person signing in again):
    the old token is worth nothing, and nobody is told. Its ``sso-live`` key stays (or
    is written, for a session saved before those keys), so that its refresh tokens never
    find it gone before the new token is saved. False: it ended meanwhile (a sign-out in
    another tab: never undone). Moved meanwhile by another tab of the browser (its
    step-up), it goes on: this move makes a second copy under another token, and the
    browser keeps one cookie; a sign-out ends the sid and both copies (``end``)."""
    taken = store.take(_key(token))
    if taken == b"" or (taken is None and store.get(_ended_key(session.sid)) is not None):
        return False  # being ended right now, or ended
    store.set(_live_key(session.sid), b"1", ttl=_ttl(session))
    if taken is not None:
        store.remove_member(_index(session.account_id), _key(token))
    return True


def end_everywhere(state: Any, account_id: int, *, begun_before: float) -> int:
    """End each of the account's sessions begun before ``begun_before`` (the instant it
    was signed out everywhere: ``Account.signed_out_at``), in every browser, as a sign-out
    does: its apps are told (back-channel logout) and its refresh tokens revoked. A session
    begun since (the browser that changed the password) stays. ``state``: the app's state,
    or the CLI's equivalent (``settings``, ``db``, ``store``, ``keys``, ``clients``).

    Called once the sign-out is committed, which already voids every session: a failure
    here (the store or the database out of reach) is logged, not raised, and a session
    not ended now is ended when next used, its apps told then (``load_standing``).
    Returns how many ended."""
    ended = 0
    try:
        for key in _begun_before(state.store, account_id, begun_before):
            ended += _end_stored(state, key) is not None
    except Exception:  # the action itself stands: the sessions end when next used
        log.exception("the sessions of an account signed out everywhere could not all be "
                      "ended now (%d were); the rest end when next used", ended)
    return ended


def _begun_before(store: Store, account_id: int, begun_before: float) -> list[str]:
    """The store keys of the account's sessions begun before ``begun_before``, forgetting
    the index members whose session has gone (b"": being ended right now)."""
    index, keys = _index(account_id), sorted(store.members(_index(account_id)))
    wanted = []
    for key, raw in zip(keys, store.get_many(keys), strict=True):
        if not raw:
            store.remove_member(index, key)
            continue
        found = SSOSession.from_json(json.loads(raw))
        if found.account_id == account_id and (found.begun or found.created) < begun_before:
            wanted.append(key)
    return wanted


def _mark_ended(store: Store, key: str) -> SSOSession | None:
    """The store's part of an end: the session of ``key`` read and ended at once, its
    ``sso-ended`` mark, its keys gone. None: it had ended already."""
    raw = store.replace(key, b"", ttl=1, only_existing=True)  # read and end at once
    if not raw:
        store.delete(key)
        return None
    ended = SSOSession.from_json(json.loads(raw))
    # before the key goes: a move racing this (_retire) finds it b"" or this mark; before
    # the revocation: a token made meanwhile checks it (is_live), and it wins over an
    store.set(_ended_key(ended.sid), b"1", ttl=MAX_SECONDS)  # sso-live a racing touch
    store.delete_many([key, _live_key(ended.sid)])  # writes back
    store.remove_member(_index(ended.account_id), key)
    return ended


def _end_stored(state: Any, key: str) -> SSOSession | None:
    """End the session of ``key``, tell its apps, revoke its refresh tokens. None: it had
    ended, or its sid had (a second copy, which two tabs stepping up at once leave)."""
    ended = _mark_ended(state.store, key)
    return ended if ended is not None and _tell_and_revoke(state, ended) else None


def _tell_and_revoke(state: Any, ended: SSOSession) -> bool:
    """An ended session's apps are told, once per sid (False: told already, when another
    copy of it ended), and its refresh tokens revoked. Told once, not "ended first": a
    store failure between the mark and the telling (a 503) leaves them to the browser's
    next sign-out, which reads the sid again (``end``), not untold for good."""
    first = state.store.set_if_absent(_told_key(ended.sid), b"1", ttl=MAX_SECONDS)
    if first:
        backchannel_logout.tell(state, ended)
    from idp.oidc import refresh_tokens  # it reads MAX_SECONDS from here

    refresh_tokens.revoke_session(state.db, state.store, ended.sid)
    return first


def _ended_key(sid: str) -> str:
    return "sso-ended:" + sid


def _told_key(sid: str) -> str:
    return "sso-told:" + sid


def is_live(store: Store, account_id: int, sid: str) -> bool:
    """Whether the session ``sid`` of the account still goes on: not ended (signed out,
    replaced by another person's sign-in, suspended), not idle for ``IDLE_SECONDS``, not
    past ``MAX_SECONDS``. A code minted before it ended, or a refresh token that lives with
    it, brings no token that would outlive it (``idp.oidc.grants``). A session saved by a
    version before ``sso-live`` keys is looked for among the account's sessions, and given
    its key: an upgrade signs nobody out of their apps. Ended is ended: ``sso-ended``
    wins over an ``sso-live`` that a use racing the end wrote back, and over a copy of the
    session left under another token (two tabs stepping up at once)."""
    ended, live = store.get_many([_ended_key(sid), _live_key(sid)])
    if ended is not None:
        return False
    if live is not None:
        return True
    keys = sorted(store.members(_index(account_id)))
    for key, raw in zip(keys, store.get_many(keys), strict=True):
        if raw and SSOSession.from_json(json.loads(raw)).sid == sid:
            store.set(_live_key(sid), b"1", ttl=store.ttl(key) or 1.0)
            return True
    return False


def set_cookie(response: Response, request: Request, token: str) -> None:
    """The session cookie. Over https it is ``SameSite=None; Secure``: an app may send its
    authorization request as a cross-site ``POST`` (OIDC Core 3.1.2.1), and a ``Lax``
    cookie would not come with it, so a signed-in person would look signed out
    (``prompt=none`` would answer ``login_required``). Nothing the cookie authorizes is
    reachable cross-site without more: every state-changing form also needs the
    ``SameSite=Lax`` CSRF cookie and its token. Over plain http (development) browsers
    refuse ``SameSite=None`` without ``Secure``, so it stays ``Lax``. It is a browser-session
    cookie (no ``Max-Age``): closing the browser of a shared classroom computer signs out;
    the store's idle and maximum lifetimes bound it either way."""
    https = request.url.scheme == "https"
    response.set_cookie(cookies.name(request, COOKIE), token, httponly=True,
                        samesite="none" if https else "lax", path="/", secure=https)


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(cookies.name(request, COOKIE), path="/",
                           secure=request.url.scheme == "https")
