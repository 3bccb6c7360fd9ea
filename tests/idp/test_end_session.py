"""RP-Initiated Logout 1.0: the end-session endpoint ``/oauth2/logout``."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.audit import AuditEvent
from idp import sessions
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

BACK = "https://app.example.cn/signed-out"


def _signed_in(client: TestClient, make_client, make_person, **metadata):
    """A first-party app with a registered post-logout address, and an ID token for a
    person signed in in ``client``'s browser."""
    registered = make_client(post_logout_redirect_uris=[BACK], **metadata)
    person = make_person()
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    tokens = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI}).json()
    return registered, person, tokens["id_token"]


def _session_alive(client: TestClient) -> bool:
    """Whether the browser's SSO session still answers prompt=none (no sign-in needed)."""
    return client.get("/", follow_redirects=False).text.count("data-sign-out") == 1


def test_discovery_advertises_the_end_session_endpoint(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["end_session_endpoint"] == "http://127.0.0.1:8000/oauth2/logout"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_hint_for_this_session_signs_out_and_goes_back_with_state(
        client: TestClient, make_client, make_person, app, method: str) -> None:
    registered, person, id_token = _signed_in(client, make_client, make_person)
    assert _session_alive(client)
    params = {"id_token_hint": id_token, "post_logout_redirect_uri": BACK, "state": "bye-1"}
    response = (client.get("/oauth2/logout", params=params, follow_redirects=False)
                if method == "GET" else
                client.post("/oauth2/logout", data=params, follow_redirects=False))
    assert response.status_code == 303, response.text[:300]
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == BACK
    assert parse_qs(location.query) == {"state": ["bye-1"]}
    cleared = [h for h in response.headers.get_list("set-cookie") if "idp_session=" in h]
    assert cleared and "max-age=0" in cleared[0].lower()
    assert not _session_alive(client)
    # the app's next prompt=none request hears that nobody is signed in
    again = flow.authorize(client, client_id=registered.client_id, prompt="none")
    assert flow.Redirect(again.headers["location"]).params["error"] == "login_required"
    with app.state.db.session() as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.action == "logout")).all()
    assert [(e.actor, e.target) for e in events] == [
        (f"account:{person.account_id}", f"app:{registered.client_id}")]


def test_the_return_address_keeps_its_query(client: TestClient, make_client,
                                            make_person) -> None:
    back = BACK + "?from=idp"
    registered = make_client(post_logout_redirect_uris=[back])
    response = client.get("/oauth2/logout", params={
        "client_id": registered.client_id, "post_logout_redirect_uri": back, "state": "s"},
        follow_redirects=False)  # nobody signed in: nothing to ask, straight back
    assert response.headers["location"] == back + "&state=s"


def test_an_expired_hint_still_names_the_session(client: TestClient, make_client,
                                                 make_person, monkeypatch) -> None:
    """Section 2: the OP accepts an expired ID token as a hint."""
    _registered, _person, id_token = _signed_in(client, make_client, make_person)
    later = time.time() + 2 * 3600  # the ID token (1 h) has expired; the session has not
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    response = client.get("/oauth2/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": BACK}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == BACK


def test_without_a_hint_the_person_is_asked_first(client: TestClient, make_client,
                                                  make_person) -> None:
    """Section 2: the OP MUST ask when there is no hint, so a link or image on any page
    cannot sign someone out."""
    registered, _person, _id_token = _signed_in(client, make_client, make_person)
    params = {"client_id": registered.client_id, "post_logout_redirect_uri": BACK,
              "state": "s-2"}
    page = client.get("/oauth2/logout", params=params, follow_redirects=False)
    assert page.status_code == 200
    assert "退出统一身份认证？" in page.text and "测试应用 请求在此浏览器上退出" in page.text
    assert _session_alive(client)
    forged = client.post("/oauth2/logout", data={**params, "confirm": "yes"},
                         follow_redirects=False)  # another site's form: no CSRF token
    assert forged.status_code == 200 and "退出统一身份认证？" in forged.text
    assert _session_alive(client)
    confirmed = client.post("/oauth2/logout", data={
        **params, "confirm": "yes", "csrf_token": flow.csrf_of(page.text)},
        follow_redirects=False)
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == BACK + "?state=s-2"
    assert not _session_alive(client)


def test_a_hint_from_an_earlier_session_asks(client: TestClient, make_client,
                                             make_person) -> None:
    registered, person, old_token = _signed_in(client, make_client, make_person)
    client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})
    flow.code_flow(client, registered.client_id, person)  # signed in again: a new sid
    page = client.get("/oauth2/logout", params={"id_token_hint": old_token},
                      follow_redirects=False)
    assert page.status_code == 200 and 'name="confirm"' in page.text
    assert _session_alive(client)


def test_without_a_return_address_the_page_says_signed_out(client: TestClient, make_client,
                                                           make_person) -> None:
    _registered, _person, id_token = _signed_in(client, make_client, make_person)
    page = client.get("/oauth2/logout", params={"id_token_hint": id_token})
    assert page.status_code == 200 and "您已退出登录" in page.text
    assert "您已从 测试应用 退出统一身份认证" in page.text
    assert not _session_alive(client)
    english = client.get("/oauth2/logout", params={"ui_locales": "en"})
    assert "You are not signed in" in english.text  # nothing left to end: no "were told"
    assert "were told" not in english.text and 'href="/login"' in english.text


@pytest.mark.parametrize("case", ["unregistered", "no_app", "other_app_uri", "bad_hint",
                                  "hint_and_client_disagree", "unknown_client", "repeated"])
def test_requests_that_cannot_be_checked_ask_and_never_redirect(
        client: TestClient, make_client, make_person, case: str) -> None:
    """Section 3: no redirect to an address that cannot be checked. The person is told
    why and asked, and may still sign out (a misconfigured app must not keep a pupil
    signed in on a shared computer)."""
    registered, _person, id_token = _signed_in(client, make_client, make_person)
    other = make_client(post_logout_redirect_uris=["https://other.example.cn/bye"])
    params: dict[str, str | list[str]] = {
        "unregistered": {"id_token_hint": id_token,
                         "post_logout_redirect_uri": "https://evil.example/x"},
        "no_app": {"post_logout_redirect_uri": BACK},
        "other_app_uri": {"id_token_hint": id_token,
                          "post_logout_redirect_uri": "https://other.example.cn/bye"},
        "bad_hint": {"id_token_hint": id_token[:-4] + "AAAA", "post_logout_redirect_uri": BACK},
        "hint_and_client_disagree": {"id_token_hint": id_token, "client_id": other.client_id,
                                     "post_logout_redirect_uri": BACK},
        "unknown_client": {"client_id": "nobody", "post_logout_redirect_uri": BACK},
        "repeated": {"client_id": [registered.client_id, registered.client_id],
                     "post_logout_redirect_uri": BACK},
    }[case]
    page = client.get("/oauth2/logout", params=params, follow_redirects=False)
    assert page.status_code == 200 and "location" not in page.headers
    assert 'name="confirm"' in page.text and "data-problem" in page.text
    assert "不会跳转回该应用" in page.text
    assert _session_alive(client)
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    done = client.post("/oauth2/logout", data={**form, "confirm": "yes"},
                       follow_redirects=False)
    assert done.status_code == 200 and "location" not in done.headers
    assert "您已退出登录" in done.text and not _session_alive(client)


def test_a_repeated_parameter_it_does_not_read_is_ignored(client: TestClient, make_client,
                                                          make_person) -> None:
    """Only a repeat of what the endpoint reads makes the request untrusted (which value was
    meant?); any other parameter, repeated or not, is ignored."""
    _registered, _person, id_token = _signed_in(client, make_client, make_person)
    response = client.get("/oauth2/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": BACK, "state": "s",
        "utm_source": ["a", "b"]}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == BACK + "?state=s"


def test_a_suspended_apps_users_can_still_sign_out(client: TestClient, make_client,
                                                   make_person, db) -> None:
    from directory.apps import App

    registered, _person, id_token = _signed_in(client, make_client, make_person)
    with db.session() as session:
        session.execute(update(App).where(App.client_id == registered.client_id).values(
            status="suspended"))
    client.app.state.clients.forget(registered.client_id)
    page = client.get("/oauth2/logout", params={"id_token_hint": id_token,
                                                "post_logout_redirect_uri": BACK})
    assert page.status_code == 200 and "已被停用" in page.text and 'name="confirm"' in page.text


def test_the_confirmation_page_lets_its_answer_reach_the_app(client: TestClient, make_client,
                                                             make_person) -> None:
    """Chromium applies form-action to the redirect answering the form: the app's origin
    must be in it, or the confirmed sign-out would stop on this page."""
    registered, _person, _id_token = _signed_in(client, make_client, make_person)
    page = client.get("/oauth2/logout", params={"client_id": registered.client_id,
                                                "post_logout_redirect_uri": BACK})
    assert "form-action 'self' https://app.example.cn;" in page.headers[
        "content-security-policy"]


def test_ui_locales_and_the_switcher_work_for_a_posted_request(
        client: TestClient, make_client, make_person) -> None:
    registered, _person, _id_token = _signed_in(client, make_client, make_person)
    page = client.post("/oauth2/logout", data={
        "client_id": registered.client_id, "post_logout_redirect_uri": BACK, "ui_locales": "en"})
    assert "Sign out of the city account?" in page.text
    switch = re.search(r'href="(\?[^"]*lang=zh-CN[^"]*)"', page.text)
    assert switch and "post_logout_redirect_uri=" in html.unescape(switch.group(1))
    again = client.get("/oauth2/logout" + html.unescape(switch.group(1)))
    assert "退出统一身份认证？" in again.text and "测试应用" in again.text


def test_the_start_page_sign_out_is_recorded(client: TestClient, make_person, app) -> None:
    person = make_person()
    flow.login(client, client.get("/login"), person.login, person.password)
    client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})
    with app.state.db.session() as db:
        [event] = db.scalars(select(AuditEvent).where(AuditEvent.action == "logout")).all()
    assert event.actor == f"account:{person.account_id}" and event.target == ""


@pytest.mark.parametrize(("metadata", "message"), [
    ({"post_logout_redirect_uris": ["javascript:alert(1)"]}, "post_logout_redirect_uris"),
    ({"post_logout_redirect_uris": ["https://app.example.cn/bye#x"]}, "fragment"),
    ({"backchannel_logout_uri": "ftp://app.example.cn/bc"}, "backchannel_logout_uri"),
    ({"frontchannel_logout_uri": "https://app.example.cn/fc"}, "frontchannel_logout_uri"),
])
def test_registration_checks_logout_metadata(make_client, metadata, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_client(**metadata)
