"""The SSO session's lifetime: idle timeout pushed back by use, never past the maximum."""

from __future__ import annotations

import json
import time

import pytest
from starlette.requests import Request

from core.store import MemoryStore, Store
from idp import sessions


def _request(token: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"cookie", f"{sessions.COOKIE}={token}".encode())]})


class _Writes(MemoryStore):
    """The memory store, counting writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, float | None]] = []

    def set(self, key, value, ttl=None):
        self.writes.append((key, ttl))
        super().set(key, value, ttl)

    def replace(self, key, value, ttl=None, *, only_existing=False):
        self.writes.append((key, ttl))
        return super().replace(key, value, ttl, only_existing=only_existing)


def test_use_pushes_the_idle_timeout_back(monkeypatch) -> None:
    store = _Writes()
    token, _ = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                              acr="urn:edu:acr:sfa")
    key = sessions._key(token)
    store.writes.clear()
    assert sessions.load(store, _request(token)) is not None
    assert store.writes == []  # a use right away writes nothing
    later = time.time() + sessions.TOUCH_SECONDS + 1
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    loaded = sessions.load(store, _request(token))
    assert loaded is not None and loaded[1].touched == int(later)
    live = sessions._live_key(loaded[1].sid)  # what its refresh tokens check: the same
    assert store.writes == [(key, sessions.IDLE_SECONDS),  # a full idle period from now
                            (live, sessions.IDLE_SECONDS)]
    assert sessions.SSOSession(**json.loads(store.get(key))).touched == int(later)
    assert sessions.load(store, _request(token)) is not None and len(store.writes) == 2


def test_a_session_ended_meanwhile_is_not_brought_back(monkeypatch) -> None:
    """A logout (or a step-up's new token) between the read and the touch wins."""
    store = _Writes()
    token, _ = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                              acr="urn:edu:acr:sfa")
    key = sessions._key(token)
    real_get = store.get

    def get_then_logout(name):
        value = real_get(name)
        store.delete(key)  # a concurrent /logout lands right after this read
        return value

    monkeypatch.setattr(store, "get", get_then_logout)
    later = time.time() + sessions.TOUCH_SECONDS + 1
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    assert sessions.load(store, _request(token)) is None
    assert real_get(key) is None


def test_the_maximum_lifetime_holds(store: Store, monkeypatch) -> None:
    _token, session = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                                     acr="urn:edu:acr:sfa")
    monkeypatch.setattr(sessions.time, "time",
                        lambda: session.created + sessions.MAX_SECONDS - 60)
    assert sessions._ttl(session) <= 60


def test_use_never_pushes_a_session_past_its_maximum(monkeypatch) -> None:
    """The idle timeout moves with use; the 7-day end does not."""
    store = _Writes()
    token, session = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                                    acr="urn:edu:acr:sfa")
    store.writes.clear()
    monkeypatch.setattr(sessions.time, "time",
                        lambda: session.created + sessions.MAX_SECONDS - 60)
    assert sessions.load(store, _request(token)) is not None
    [(_key, ttl), (_live, live_ttl)] = store.writes  # the session and its sso-live key
    assert ttl <= 60 and live_ttl == ttl


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_start_page_names_the_person_and_signs_out(app, make_person, scheme: str) -> None:
    """After a sign-in without an app, the start page says who is signed in, links the
    account pages, and its sign-out button ends the session (over https too, where the
    cookie is __Host-idp_session)."""
    from fastapi.testclient import TestClient

    from tests.idp import flow

    browser = TestClient(app, base_url=f"{scheme}://127.0.0.1:8000")
    person = make_person()
    anonymous = browser.get("/")
    assert 'href="/login"' in anonymous.text and "data-sign-out" not in anonymous.text
    signed = flow.login(browser, browser.get("/login"), person.login, person.password)
    assert signed.headers["location"] == "/"
    home = browser.get("/")
    assert "您已登录为 赵同学" in home.text and 'href="/account/apps"' in home.text
    out = browser.post("/logout", data={"csrf_token": flow.csrf_of(home.text)},
                       follow_redirects=False)
    assert out.status_code == 303
    cleared = [h for h in out.headers.get_list("set-cookie") if "idp_session=" in h]
    assert cleared and all("max-age=0" in h.lower() for h in cleared)
    assert ("__Host-idp_session=" in cleared[0]) == (scheme == "https")
    assert out.headers["location"] == "/?signed_out=1"
    after = browser.get(out.headers["location"])
    assert "data-sign-out" not in after.text and "您已退出登录" in after.text
    forged = browser.post("/logout", data={}, follow_redirects=False)
    assert forged.status_code == 403  # CSRF: another site cannot sign the person out


def test_stored_sessions_and_requests_load_what_a_newer_worker_wrote() -> None:
    """A rolling deploy: members this version does not know are left out, and the old
    boolean flags of a pending request name no account (``True == 1`` would name #1)."""
    from idp.oidc.authorize import AuthorizationRequest

    session = sessions.SSOSession.from_json({
        "sid": "s", "account_id": 1, "sub": "x", "auth_time": 1, "amr": ["pwd"],
        "acr": "urn:edu:acr:sfa", "created": 1, "from_the_future": True})
    assert session.account_id == 1 and not hasattr(session, "from_the_future")
    request = AuthorizationRequest.from_json({
        "client_id": "c", "redirect_uri": "https://app/cb", "scope": "openid",
        "account_chosen": True, "consent_given": True, "from_the_future": 1})
    assert request.account_chosen is None and request.consent_given is None


@pytest.mark.parametrize("status", ["suspended", None])
def test_account_pages_end_the_session_of_someone_who_may_no_longer_sign_in(
        client, make_person, db, status: str | None) -> None:
    """``sessions.current`` checks the account's standing (suspended, or disabled)."""
    from directory.models import Account, Person
    from tests.idp import flow

    person = make_person()
    flow.login(client, client.get("/login"), person.login, person.password)
    assert client.get("/account/apps", follow_redirects=False).status_code == 200
    with db.session() as session:
        account = session.get(Account, person.account_id)
        if status:
            session.get(Person, account.person_id).status = status
        else:
            account.disabled = True
    assert client.get("/account/apps", follow_redirects=False).status_code == 303
    assert "data-signed-in" not in client.get("/").text


def test_a_touch_keeps_an_app_another_tab_added_meanwhile(store: Store, monkeypatch) -> None:
    """The 5-minute touch rewrites the session: it merges what it replaced, like add_app."""
    token, _ = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                              acr="urn:edu:acr:sfa")
    tab_two = sessions.load(store, _request(token))[1]
    later = time.time() + sessions.TOUCH_SECONDS + 1
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    real_get = store.get

    def get_then_other_tab(key):
        value = real_get(key)
        if key == sessions._key(token):
            sessions.add_app(store, token, tab_two, "app-two")  # between read and touch
        return value

    monkeypatch.setattr(store, "get", get_then_other_tab)
    sessions.load(store, _request(token))  # tab one, any page: the touch
    monkeypatch.setattr(store, "get", real_get)
    assert sessions.load(store, _request(token))[1].apps == ["app-two"]


def _started(store: Store) -> tuple[str, sessions.SSOSession]:
    return sessions.start(store, account_id=1, sub="s", amr=["pwd"], acr="urn:edu:acr:sfa")


def test_a_use_racing_a_sign_out_does_not_make_it_live_again(app, monkeypatch) -> None:
    """A page load pushes the idle timeout back (the session, then its sso-live key) while
    another tab signs out in between: the sso-live key written back does not count, the
    sign-out's sso-ended does."""
    state, store = app.state, app.state.store
    token, session = _started(store)
    key, real_replace, raced = sessions._key(token), store.replace, []

    def replace(name, value, ttl=None, *, only_existing=False):
        old = real_replace(name, value, ttl, only_existing=only_existing)
        if name == key and value != b"" and not raced:
            raced.append(1)
            sessions._end_stored(state, key)  # a /logout in another tab lands here
        return old

    monkeypatch.setattr(store, "replace", replace)
    later = time.time() + sessions.TOUCH_SECONDS + 1
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    sessions.load(store, _request(token))
    assert raced and store.get(key) is None
    assert store.get(sessions._live_key(session.sid)) is not None  # written back ...
    assert not sessions.is_live(store, 1, session.sid)  # ... and outweighed


def _told(monkeypatch) -> list[str]:
    """The sids whose apps an end tells (back-channel logout), in order."""
    told: list[str] = []
    monkeypatch.setattr(sessions.backchannel_logout, "tell",
                        lambda _state, ended: told.append(ended.sid))
    return told


def _two_tabs_stepped_up(store: Store) -> tuple[sessions.SSOSession, str, str]:
    """Both tabs renew from the same cookie token: the second finds it moved, not ended,
    and goes on; the browser keeps one of the two cookies, the other copy is nobody's."""
    token, session = _started(store)
    first = sessions.renew(store, token, session)
    second = sessions.renew(store, token, session)
    assert first and second and first != second
    return session, first, second


def test_two_tabs_stepping_up_at_once_and_a_sign_out_end_the_sid(app, monkeypatch) -> None:
    """Signing out ends the sid of both copies; signed out everywhere later, the copy
    nobody holds ends without its apps being told a second time."""
    state, store, told = app.state, app.state.store, _told(monkeypatch)
    session, _first, second = _two_tabs_stepped_up(store)
    sessions._end_stored(state, sessions._key(second))  # ended everywhere, this one first
    assert not sessions.is_live(store, 1, session.sid) and told == [session.sid]
    assert sessions.end_everywhere(state, 1, begun_before=time.time() + 1) == 0
    assert told == [session.sid] and store.members(sessions._index(1)) == set()


def _signed_out(state, token: str, read: sessions.SSOSession) -> sessions.SSOSession | None:
    """The browser's sign-out, with the cookie ``token`` and the session it read."""
    request = _request(token)
    request.scope["app"] = type("App", (), {"state": state})()
    return sessions.end(state.store, token, request, read=read)


def test_a_sign_out_ends_both_copies_of_two_tabs_stepping_up(app, monkeypatch) -> None:
    state, store, told = app.state, app.state.store, _told(monkeypatch)
    session, first, second = _two_tabs_stepped_up(store)
    assert _signed_out(state, second, session) is not None
    assert told == [session.sid] and store.members(sessions._index(1)) == set()
    assert store.get(sessions._key(first)) is None


def test_a_sign_out_racing_a_step_up_ends_the_moved_session(app, monkeypatch) -> None:
    """Tab A read the session, then tab B's step-up moved it to a new token (with an app
    added since) before A's sign-out came: the sid ends all the same, the app is told."""
    state, store, told = app.state, app.state.store, _told(monkeypatch)
    token, session = _started(store)
    tab_a_read = sessions.load(store, _request(token))[1]
    moved = sessions.renew(store, token, session)
    sessions.add_app(store, moved, session, "app-one")
    ended = _signed_out(state, token, tab_a_read)
    assert ended is not None and ended.apps == ["app-one"] and told == [session.sid]
    assert store.get(sessions._key(moved)) is None
    assert not sessions.is_live(store, 1, session.sid)
    _signed_out(state, moved, session)  # the other tab signs out too: nobody told again
    assert told == [session.sid]


def test_a_step_up_whose_session_is_signed_out_as_it_moves_stays_ended(app, monkeypatch
                                                                       ) -> None:
    """The sign-out comes after the step-up took the old token and before it saved the new
    one: the sign-out finds no token, ends the sid; the step-up finds it ended."""
    state, store, told = app.state, app.state.store, _told(monkeypatch)
    token, session = _started(store)
    real_save = sessions.save

    def save_after_a_sign_out(store_, fresh, moving):
        _signed_out(state, token, session)
        real_save(store_, fresh, moving)

    monkeypatch.setattr(sessions, "save", save_after_a_sign_out)
    assert sessions.renew(store, token, session) is None
    assert told == [session.sid] and store.members(sessions._index(1)) == set()
    assert not sessions.is_live(store, 1, session.sid)


def test_two_copies_of_a_session_signed_out_everywhere_tell_its_apps_once(
        app, monkeypatch) -> None:
    state, store, told = app.state, app.state.store, _told(monkeypatch)
    session, first, second = _two_tabs_stepped_up(store)
    assert sessions.end_everywhere(state, 1, begun_before=time.time() + 1) == 1
    assert told == [session.sid] and not sessions.is_live(store, 1, session.sid)
    assert store.get(sessions._key(first)) is None and store.get(sessions._key(second)) is None


def test_a_move_racing_a_sign_out_does_not_undo_it(app) -> None:
    """A step-up (or a re-sign-in of the same person) whose old token another tab signed
    out meanwhile: nothing is moved, and nothing comes back."""
    state, store = app.state, app.state.store
    token, session = _started(store)
    sessions._end_stored(state, sessions._key(token))
    assert sessions.renew(store, token, session) is None
    assert not sessions.is_live(store, 1, session.sid)
    again = sessions.instead_of_current(store, _request(token), account_id=1, sub="s",
                                        amr=["pwd"])
    assert again.session.sid != session.sid  # a session of its own


def test_a_step_up_racing_a_re_sign_in_keeps_one_sid(app, monkeypatch) -> None:
    """Tab A steps up (the session moves to a new token) while tab B, which read the old
    token, has the same person sign in again: B's session keeps the sid and apps, so the
    browser's sign-out, whichever cookie it kept, ends the sid the apps' tokens live with."""
    store = app.state.store
    token, session = _started(store)
    sessions.add_app(store, token, session, "app-one")
    tab_b_read = sessions.load(store, _request(token))
    assert sessions.renew(store, token, session) is not None  # tab A
    monkeypatch.setattr(sessions, "load", lambda _store, _request: tab_b_read)
    signed_in = sessions.instead_of_current(store, _request(token), account_id=1, sub="s",
                                            amr=["pwd"])
    monkeypatch.undo()
    assert signed_in.session.sid == session.sid and signed_in.session.apps == ["app-one"]
    sessions.save(store, signed_in.token, signed_in.session)
    sessions._end_stored(app.state, sessions._key(signed_in.token))
    assert not sessions.is_live(store, 1, session.sid)


def test_a_session_from_before_live_keys_stays_live_while_it_moves(app) -> None:
    """The same person signing in again: the old token is retired at once and the new one
    saved at the end of the sign-in; a session an earlier version saved (no sso-live key)
    is live all the while, so a refresh meanwhile is not refused (nor its family revoked)."""
    store = app.state.store
    token, session = _started(store)
    store.delete(sessions._live_key(session.sid))
    signed_in = sessions.instead_of_current(store, _request(token), account_id=1, sub="s",
                                            amr=["pwd"])
    assert signed_in.session.sid == session.sid and store.get(sessions._key(token)) is None
    assert sessions.is_live(store, 1, session.sid)


def test_a_re_sign_in_racing_a_sign_out_leaves_no_session_with_an_ended_sid(
        app, monkeypatch) -> None:
    """Tab B has the same person sign in again (its old token retired at once, the new
    session, which keeps the sid, saved at the end of the sign-in); tab A's sign-out, which
    read the session, lands in between and ends the sid. The save finds it ended and ends
    its copy: no session the provider shows as signed in under an ended sid (every app's
    code exchange would fail until it idled out)."""
    state, store, told = app.state, app.state.store, _told(monkeypatch)
    token, session = _started(store)
    tab_a_read = sessions.load(store, _request(token))[1]
    signed_in = sessions.instead_of_current(store, _request(token), account_id=1, sub="s",
                                            amr=["pwd"])
    assert _signed_out(state, token, tab_a_read) is not None and told == [session.sid]
    assert not sessions.save(store, signed_in.token, signed_in.session)
    assert sessions.load(store, _request(signed_in.token)) is None
    assert store.members(sessions._index(1)) == set()
    assert not sessions.is_live(store, 1, session.sid) and told == [session.sid]


def test_a_store_failure_ending_the_copies_still_tells_the_apps(app, monkeypatch) -> None:
    """Only the first end of a sid tells its apps: a store failure after its mark, while
    the other copies are looked for, must not leave them untold for good."""
    from core.store import StoreUnavailable

    state, store, told = app.state, app.state.store, _told(monkeypatch)
    token, session = _started(store)

    def unavailable(_key):
        raise StoreUnavailable("down")

    monkeypatch.setattr(store, "members", unavailable)
    assert _signed_out(state, token, session) is not None and told == [session.sid]
    assert not sessions.is_live(store, 1, session.sid)


def test_a_store_failure_before_the_apps_are_told_leaves_them_to_the_next_sign_out(
        app, monkeypatch) -> None:
    """The sign-out marks the sid ended, then the store fails before its apps are told
    (the person sees a 503): signing out again tells them, the sid being ended already."""
    from core.store import StoreUnavailable

    state, store, told = app.state, app.state.store, _told(monkeypatch)
    token, session = _started(store)
    real_delete_many = store.delete_many

    def unavailable(_keys):
        raise StoreUnavailable("down")

    monkeypatch.setattr(store, "delete_many", unavailable)
    with pytest.raises(StoreUnavailable):
        sessions._end_stored(state, sessions._key(token))
    assert told == [] and not sessions.is_live(store, 1, session.sid)
    monkeypatch.setattr(store, "delete_many", real_delete_many)
    assert _signed_out(state, token, session) is not None and told == [session.sid]
    _signed_out(state, token, session)
    assert told == [session.sid]
