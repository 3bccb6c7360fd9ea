"""OpenID Connect Front-Channel Logout 1.0: the signed-out page loads the apps' logout
pages in frames, with ``iss`` and the app's ``sid`` where the app asked for them."""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.live import live_server  # noqa: F401 - fixture
from tests.idp.test_browser_redirects import _Callback, app_origin  # noqa: F401 - fixture

BACK = "https://app.example.edu.cn/signed-out"
FRONT = "https://app.example.edu.cn/frontchannel-logout"


def _payload(jwt: str) -> dict:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _signed_in(client: TestClient, registered, person) -> dict:
    code = flow.code_flow(client, registered.client_id, person).params["code"]
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": REDIRECT_URI}).json()


def _frames(page: str) -> list[str]:
    found = re.search(r'data-frames="([^"]*)"', page)
    return found[1].replace("&amp;", "&").split(" ") if found else []


def _session_alive(client: TestClient) -> bool:
    return client.get("/").text.count("data-sign-out") == 1


def test_discovery_advertises_front_channel_logout(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["frontchannel_logout_supported"] is True
    assert document["frontchannel_logout_session_supported"] is True


@pytest.mark.parametrize("metadata", [
    {"frontchannel_logout_uri": "https://other.example.edu.cn/fc"},  # not a redirect URI's host
    {"frontchannel_logout_uri": "http://app.example.edu.cn/fc"},  # nor its scheme
    {"frontchannel_logout_uri": "https://app.example.edu.cn:8443/fc"},  # nor its port
    {"frontchannel_logout_uri": FRONT + "#x"},
    {"frontchannel_logout_uri": "javascript:alert(1)"},
    {"frontchannel_logout_uri": ["https://app.example.edu.cn/fc"]},
    {"frontchannel_logout_uri": FRONT + " x"},
    {"frontchannel_logout_uri": FRONT, "frontchannel_logout_session_required": "yes"},
    # no CSP source can name these: the page could not frame them
    {"frontchannel_logout_uri": "https://x@app.example.edu.cn/fc"},
    {"frontchannel_logout_uri": "https://app.example.edu.cn:/fc"},
    {"redirect_uris": ["https://odd_host.example.edu.cn/cb"],
     "frontchannel_logout_uri": "https://odd_host.example.edu.cn/fc"},
])
def test_registration_refuses_a_logout_page_off_the_apps_origin(make_client,
                                                                metadata: dict) -> None:
    with pytest.raises(ValueError, match="frontchannel_logout"):
        make_client(**metadata)


def test_registration_takes_a_logout_page_on_a_redirect_uris_origin(make_client) -> None:
    make_client(frontchannel_logout_uri="https://APP.example.edu.cn:443/fc?tenant=1",
                frontchannel_logout_session_required=True)


def test_end_session_loads_each_apps_logout_page_then_goes_back(
        client: TestClient, make_client, make_person) -> None:
    person = make_person()
    asking = make_client(frontchannel_logout_uri=FRONT + "?school=7",
                         frontchannel_logout_session_required=True,
                         post_logout_redirect_uris=[BACK])
    plain = make_client(frontchannel_logout_uri=FRONT)
    silent = make_client()  # registered no logout page
    make_client(frontchannel_logout_uri=FRONT + "/unused")  # not signed in to
    tokens = _signed_in(client, asking, person)
    for other in (plain, silent):
        _signed_in(client, other, person)
    page = client.get("/oauth2/logout", params={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BACK,
        "state": "s 1"}, follow_redirects=False)
    assert page.status_code == 200 and "location" not in page.headers
    first, second = _frames(page.text)
    assert second == FRONT  # no session asked for: the URL as registered
    parts = urlsplit(first)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == FRONT
    assert parse_qs(parts.query) == {"school": ["7"], "iss": ["http://127.0.0.1:8000"],
                                     "sid": [_payload(tokens["id_token"])["sid"]]}
    assert re.search(r'id="continue" href="([^"]*)"', page.text)[1] == BACK + "?state=s+1"
    policy = page.headers["content-security-policy"]
    assert policy.endswith("; frame-src https://app.example.edu.cn")
    assert "script-src 'self';" in policy and "frontchannel_logout.js" in page.text
    assert "<noscript><iframe" in page.text and 'data-wait-ms="5000"' in page.text
    assert not _session_alive(client)
    assert any("max-age=0" in h.lower() for h in page.headers.get_list("set-cookie")
               if "idp_session=" in h)


def test_a_pairwise_app_gets_the_sid_of_its_id_tokens(client: TestClient, make_client,
                                                      make_person) -> None:
    registered = make_client(subject_type="pairwise", frontchannel_logout_uri=FRONT,
                             frontchannel_logout_session_required=True)
    tokens = _signed_in(client, registered, make_person())
    page = client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)},
                       follow_redirects=False)
    assert page.status_code == 200  # the start page's sign-out shows the frames too
    sid = parse_qs(urlsplit(_frames(page.text)[0]).query)["sid"][0]
    assert sid == _payload(tokens["id_token"])["sid"]
    assert 'id="continue"' not in page.text and 'href="/login"' in page.text


def test_no_frames_no_detour(client: TestClient, make_client, make_person) -> None:
    registered = make_client(post_logout_redirect_uris=[BACK])
    person = make_person()
    tokens = _signed_in(client, registered, person)
    out = client.get("/oauth2/logout", params={"id_token_hint": tokens["id_token"],
                                               "post_logout_redirect_uri": BACK},
                     follow_redirects=False)
    assert out.status_code == 303 and "frame-src" not in out.headers.get(
        "content-security-policy", "")
    _signed_in(client, registered, person)
    assert client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)},
                       follow_redirects=False).status_code == 303


def test_a_suspended_app_is_not_loaded(client: TestClient, make_client, make_person,
                                       db) -> None:
    from directory.apps import App

    registered = make_client(frontchannel_logout_uri=FRONT)
    _signed_in(client, registered, make_person())
    with db.session() as session:
        session.execute(update(App).where(App.client_id == registered.client_id).values(
            status="suspended"))
    client.app.state.clients.forget(registered.client_id)
    out = client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)},
                      follow_redirects=False)
    assert out.status_code == 303


def test_a_logout_page_no_csp_can_name_leaves_the_others_framed(
        client: TestClient, make_client, make_person, db) -> None:
    """Stored before registration checked it: left out, the other apps still framed."""
    from directory.apps import App

    person = make_person()
    good = make_client(frontchannel_logout_uri=FRONT)
    odd = make_client()
    with db.session() as session:
        row = session.query(App).filter_by(client_id=odd.client_id).one()
        row.metadata_json = json.dumps({**json.loads(row.metadata_json),
                                        "frontchannel_logout_uri": "https://x@odd.edu.cn/fc"})
    client.app.state.clients.forget(odd.client_id)
    _signed_in(client, good, person)
    _signed_in(client, odd, person)
    page = client.post("/logout", data={"csrf_token": flow.csrf_of(client.get("/").text)})
    assert _frames(page.text) == [FRONT]
    assert page.headers["content-security-policy"].endswith(
        "; frame-src https://app.example.edu.cn")


def test_the_next_persons_sign_in_tells_the_previous_persons_apps_first(
        client: TestClient, make_client, make_person) -> None:
    """A classroom computer: pupil B signs in for an app where pupil A is still signed in.
    A's front-channel apps get their frames (A's sid) before B's code goes to the app."""
    a_app = make_client(frontchannel_logout_uri=FRONT, frontchannel_logout_session_required=True)
    b_app = make_client()
    first = _signed_in(client, a_app, make_person())
    pupil_b = make_person("s20260002", "Another-Pass-2", name="钱同学")
    start = flow.authorize(client, client_id=b_app.client_id, prompt="login")
    signed_in = flow.login(client, start, pupil_b.login, pupil_b.password)
    detour = signed_in.headers["location"]
    assert signed_in.status_code == 303 and detour.startswith("/signed-out/previous?k=")
    page = client.get(detour)
    assert page.status_code == 200 and "data-signed-out-previous" in page.text
    assert parse_qs(urlsplit(_frames(page.text)[0]).query)["sid"] == [
        _payload(first["id_token"])["sid"]]
    assert page.headers["content-security-policy"].endswith("; frame-src https://app.example.edu.cn")
    onward = re.search(r'id="continue" href="([^"]*)"', page.text)[1].replace("&amp;", "&")
    assert onward.startswith("/oauth2/authorize/resume?ia=")
    assert client.get(detour).status_code == 200  # a reload shows the page again
    redirect = flow.follow(client, client.get(onward, follow_redirects=False))
    assert redirect.headers["location"].startswith(REDIRECT_URI + "?code=")
    tokens = client.post("/oauth2/token", auth=(b_app.client_id, b_app.secret), data={
        "grant_type": "authorization_code",
        "code": flow.Redirect(redirect.headers["location"]).params["code"],
        "redirect_uri": REDIRECT_URI}).json()
    assert _payload(tokens["id_token"])["sub"] != _payload(first["id_token"])["sub"]


def test_no_detour_for_the_same_person_or_apps_without_front_channel(
        client: TestClient, make_client, make_person) -> None:
    person = make_person()
    fc_app = make_client(frontchannel_logout_uri=FRONT)
    _signed_in(client, fc_app, person)
    again = flow.login(client, flow.authorize(client, client_id=fc_app.client_id,
                                              prompt="login"), person.login, person.password)
    assert again.headers["location"].startswith(REDIRECT_URI)  # a re-authentication
    client.cookies.clear()
    plain = make_client()
    _signed_in(client, plain, person)
    other = make_person("s20260003", "Third-Pass-3", name="孙同学")
    next_one = flow.login(client, flow.authorize(client, client_id=plain.client_id,
                                                 prompt="login"), other.login, other.password)
    assert next_one.headers["location"].startswith(REDIRECT_URI)


def test_a_passkey_sign_in_detours_too(client: TestClient, make_client, make_person,
                                       db, store) -> None:
    from tests.idp.test_lockout import _passkey
    from tests.mfa.test_webauthn import _enrol

    a_app = make_client(frontchannel_logout_uri=FRONT)
    _signed_in(client, a_app, make_person())
    pupil_b = make_person("s20260004", "Fourth-Pass-4", name="李同学")
    key, _ = _enrol(db, client.app.state.settings, store, pupil_b)
    signed = _passkey(client, flow.authorize(client, client_id=a_app.client_id,
                                             prompt="login"), key)
    assert signed.status_code == 200, signed.text
    detour = signed.json()["redirect"]
    assert detour.startswith("/signed-out/previous?k=")
    assert _frames(client.get(detour).text) == [FRONT]


def test_an_unknown_detour_goes_to_the_start_page(client: TestClient) -> None:
    for key in ("nope", "x" * 500, ""):
        answer = client.get("/signed-out/previous", params={"k": key}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/"


@pytest.mark.interop
@pytest.mark.parametrize("javascript", [True, False], ids=["script", "no-script"])
def test_chromium_loads_the_frames_and_reaches_the_app(
        live_server, app_origin, browser, make_client, make_person,  # noqa: F811
        javascript: bool) -> None:
    import httpx

    base, seen = app_origin, _Callback.seen
    registered = make_client(redirect_uris=[base + "/callback"],
                             frontchannel_logout_uri=base + "/fc",
                             frontchannel_logout_session_required=True,
                             post_logout_redirect_uris=[base + "/bye"])
    person = make_person()
    context = browser.new_context(locale="zh-CN", java_script_enabled=javascript)
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    verifier, challenge = flow.pkce_pair()
    page.goto(live_server.url + "/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": registered.client_id,
        "redirect_uri": base + "/callback", "scope": "openid", "state": "st", "nonce": "n",
        "code_challenge": challenge, "code_challenge_method": "S256"}))
    page.fill("#login", person.login)
    page.fill("#password", person.password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(base + "/callback?*", timeout=15_000)
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    id_token = httpx.post(live_server.url + "/oauth2/token", auth=(
        registered.client_id, registered.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": base + "/callback",
        "code_verifier": verifier}).json()["id_token"]
    page.goto(live_server.url + "/oauth2/logout?" + urlencode({
        "id_token_hint": id_token, "post_logout_redirect_uri": base + "/bye", "state": "z"}))
    if not javascript:  # the <noscript> frame loads; the person follows the link
        deadline = time.monotonic() + 15
        while not any(p.startswith("/fc") for p in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        page.click("#continue")
    page.wait_for_url(base + "/bye?state=z", timeout=15_000)
    frame = next(p for p in seen if p.startswith("/fc"))
    assert parse_qs(urlsplit(frame).query) == {"iss": [live_server.url],
                                               "sid": [_payload(id_token)["sid"]]}
    assert not blocked
    context.close()
