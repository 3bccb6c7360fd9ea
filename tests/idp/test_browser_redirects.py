"""A real browser follows the sign-in and consent answers to the app on another origin.

Chromium applies a page's ``form-action`` CSP directive to the redirects that follow a
form's submission: a sign-in page that allowed only ``'self'`` would strand every person
whose app lives elsewhere on a blocked navigation. These tests submit the real forms in
Chromium and check that it reaches the app's redirect URI (a small HTTP server on another
port, so another origin) with the code.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.idp.flow import pkce_pair
from tests.idp.live import live_server  # noqa: F401 - fixture


class _Callback(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []  # the paths the browser loaded

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"<!doctype html><title>app</title><p>app callback</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def app_origin() -> Iterator[str]:
    """An app on another origin: its callback page answers 200 to any GET (the paths
    asked for are in ``_Callback.seen``)."""
    _Callback.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Callback)  # any free port
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _authorize_url(server: str, client_id: str, redirect_uri: str) -> str:
    _, challenge = pkce_pair()
    return server + "/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "scope": "openid profile", "state": "st-browser", "nonce": "n-browser",
        "code_challenge": challenge, "code_challenge_method": "S256"})


def _sign_in(page, person) -> None:
    page.fill("#login", person.login)
    page.fill("#password", person.password)
    page.click("form[action='/login'] button[type=submit]")


@pytest.mark.interop
@pytest.mark.parametrize("first_party", [True, False], ids=["first-party", "consent"])
def test_chromium_reaches_the_app_after_the_forms(live_server, app_origin, browser,  # noqa: F811
                                                  make_client, make_person,
                                                  first_party: bool) -> None:
    redirect_uri = app_origin + "/callback"
    client = make_client(first_party=first_party, redirect_uris=[redirect_uri])
    person = make_person()
    page = browser.new_context(locale="zh-CN").new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(_authorize_url(live_server.url, client.client_id, redirect_uri))
    _sign_in(page, person)
    if not first_party:
        page.wait_for_selector("form[action='/consent']")
        page.click("button[name=decision][value=allow]")
    page.wait_for_url(redirect_uri + "?*", timeout=15_000)
    params = parse_qs(urlsplit(page.url).query)
    assert params["state"] == ["st-browser"] and params["code"][0]
    assert params["iss"] == [live_server.url]
    assert not blocked


@pytest.mark.parametrize(("url", "source"), [
    ("https://app.example.edu.cn/callback?x=1", "https://app.example.edu.cn"),
    ("http://localhost:8080/cb", "http://localhost:8080"),
    ("cn.edu.example.app:/oauth2redirect", "cn.edu.example.app:"),
])
def test_form_action_widened_to_the_app_only(url: str, source: str) -> None:
    from core.web.middleware import CSP, csp_widened

    policy = csp_widened(form_target=url)
    assert policy == CSP.replace("form-action 'self'", f"form-action 'self' {source}")
    assert f"form-action 'self' {source};" in policy and policy != CSP


@pytest.mark.parametrize("url", ["https://a.example;script-src *", "//no-scheme.example/",
                                 "https://user@app.example/", "https://a b.example/"])
def test_form_action_refuses_what_is_no_source(url: str) -> None:
    from core.web.middleware import csp_widened

    assert csp_widened(form_target=url) is None


APP_FORM_ACTION = "form-action 'self' https://app.example.edu.cn;"


def test_second_factor_and_account_choice_pages_allow_the_app(client, make_client,
                                                              make_person) -> None:
    """Their forms' answers, too, end in the redirect to the app."""
    from directory.models import Role
    from tests.idp import flow

    registered = make_client()
    make_person("t9", "pw-teacher-9", role=Role.teacher)
    start = flow.authorize(client, client_id=registered.client_id)
    assert flow.login(client, start, "t9", "pw-teacher-9").headers["location"] == "/mfa"
    assert APP_FORM_ACTION in client.get("/mfa").headers["content-security-policy"]
    client.cookies.clear()
    student = make_person()
    flow.code_flow(client, registered.client_id, student)
    asked = flow.follow(client, flow.authorize(client, client_id=registered.client_id,
                                               prompt="select_account"))
    page = client.get(asked.headers["location"])
    assert APP_FORM_ACTION in page.headers["content-security-policy"]


def test_sign_in_page_allows_its_app_and_no_other(client, make_client) -> None:
    from tests.idp import flow

    registered = make_client()
    page = flow.authorize(client, client_id=registered.client_id)
    policy = page.headers["content-security-policy"]
    assert "form-action 'self' https://app.example.edu.cn;" in policy
    plain = client.get("/login")
    assert "form-action 'self';" in plain.headers["content-security-policy"]


@pytest.mark.interop
def test_chromium_qr_sign_in_page_reaches_the_app(live_server, app_origin, browser,  # noqa: F811
                                                  make_client, make_person) -> None:
    """The "show a QR code" page (``/login/qr?ia=...``) asks "continue as 赵*学" once the
    phone approves; the answer is the redirect to the app, which its CSP must allow."""
    server, person = live_server.url, make_person()
    redirect_uri = app_origin + "/callback"
    client = make_client(redirect_uris=[redirect_uri])
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                                is_mobile=True, has_touch=True).new_page()
    phone.goto(server + "/login")
    _sign_in(phone, person)
    phone.wait_for_url(server + "/")
    desktop = browser.new_context(viewport={"width": 1280, "height": 900},
                                  locale="zh-CN").new_page()
    blocked: list[str] = []
    desktop.on("console", lambda message: blocked.append(message.text)
               if "Content Security Policy" in message.text else None)
    desktop.goto(_authorize_url(server, client.client_id, redirect_uri))
    ia = desktop.get_attribute("form[action='/login'] input[name=ia]", "value")
    desktop.goto(f"{server}/login/qr?ia={ia}")
    phone.goto(desktop.get_attribute("[data-qr-login]", "data-qr-url"))
    desktop.wait_for_selector("[data-qr-state=scanned]")
    phone.click("[data-qr-approve]")
    desktop.click("form[data-qr-redeem] button:has-text('以 赵*学 的身份继续')")
    desktop.wait_for_url(redirect_uri + "?*", timeout=15_000)
    assert parse_qs(urlsplit(desktop.url).query)["state"] == ["st-browser"]
    assert not blocked


@pytest.mark.interop
def test_chromium_demo_app_shows_a_verified_sm2_id_token(live_server, browser,  # noqa: F811
                                                         db) -> None:
    """The newcomer's path: ``idp demo``'s app at /demo/rp, "sign in", a demo student's
    password, and back on the app a verified SM2 signature with the ID token's claims."""
    from idp import demo

    with db.session() as session:
        content = demo.seed(session, live_server.settings)
    written = demo.write(live_server.settings, content)
    try:
        student = next(u for u in content["users"] if u["roles"] == ["student"])
        page = browser.new_context(locale="zh-CN").new_page()
        page.goto(live_server.url + "/demo/rp")
        page.click("a.button[href='/demo/rp/login']")
        page.fill("#login", student["login"])
        page.fill("#password", student["password"])
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(live_server.url + "/demo/rp/callback?*")
        text = page.inner_text("main")
        # RP-initiated logout: the app's sign-out ends the SSO session and comes back
        page.click("a[data-sign-out]")
        page.wait_for_url(live_server.url + "/demo/rp?state=*")
        page.goto(live_server.url + "/")
        start_page = page.inner_text("main")
    finally:
        written.unlink()  # the test var directory is shared by the session's tests
    assert "✔" in text and "SM2" in text and '"alg": "SM2"' in text
    assert '"edu_roles"' not in text and '"nonce"' in text  # the ID token's own claims
    assert "你已登录" not in start_page and "登录" in start_page


FETCH_TOKENS = """async ([server, body]) => {
  const tokens = await (await fetch(server + '/oauth2/token', {method: 'POST',
    headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body})).json();
  const userinfo = await (await fetch(server + '/oauth2/userinfo', {
    headers: {Authorization: 'Bearer ' + tokens.access_token}})).json();
  const discovery = await (await fetch(server + '/.well-known/openid-configuration')).json();
  return {tokens, userinfo, issuer: discovery.issuer};
}"""
FETCH_OR_ERROR = """async ([url, init]) => {
  try { return (await fetch(url, init)).status; } catch (error) { return String(error); }
}"""


@pytest.mark.interop
def test_chromium_single_page_app_reads_tokens_cross_origin(
        live_server, app_origin, browser, make_client, make_person) -> None:  # noqa: F811
    """A public client living in a page on another origin: after the sign-in, the page
    itself redeems the code (PKCE), calls UserInfo and reads discovery with fetch; a page
    on an origin the app did not register reads discovery but not the token answer."""
    redirect_uri = app_origin + "/callback"
    spa = make_client(token_endpoint_auth_method="none", redirect_uris=[redirect_uri],
                      grant_types=["authorization_code"])
    person = make_person()
    verifier, challenge = pkce_pair()
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(live_server.url + "/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": spa.client_id, "redirect_uri": redirect_uri,
        "scope": "openid profile", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256"}))
    _sign_in(page, person)
    page.wait_for_url(redirect_uri + "?*", timeout=15_000)
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    body = urlencode({"grant_type": "authorization_code", "code": code, "client_id":
                      spa.client_id, "redirect_uri": redirect_uri, "code_verifier": verifier})
    read = page.evaluate(FETCH_TOKENS, [live_server.url, body])
    assert read["tokens"]["token_type"] == "Bearer" and read["tokens"]["id_token"]
    assert read["userinfo"]["sub"] == person.sub and read["issuer"] == live_server.url

    stranger = browser.new_context().new_page()  # 127.0.0.1 vs localhost: another origin
    stranger.goto(app_origin.replace("localhost", "127.0.0.1") + "/elsewhere")
    assert stranger.evaluate(FETCH_OR_ERROR, [
        live_server.url + "/.well-known/openid-configuration", {}]) == 200
    refused = stranger.evaluate(FETCH_OR_ERROR, [live_server.url + "/oauth2/token", {
        "method": "POST", "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        "body": body}])
    assert "Failed to fetch" in str(refused)  # the browser keeps the answer from the page


@pytest.mark.interop
def test_chromium_reaches_the_app_after_a_new_password(live_server, app_origin, browser,  # noqa: F811
                                                       make_client, make_person, db) -> None:
    """Signed in with a temporary password, the person chooses a new one: the answer to
    that form is the redirect to the app, which the page's CSP must allow."""
    from directory.models import Account
    from idp import password_change

    redirect_uri = app_origin + "/callback"
    client = make_client(first_party=True, redirect_uris=[redirect_uri])
    person = make_person()
    with db.session() as session:
        temporary = password_change.reset(session, live_server.settings, None,
                                          session.get(Account, person.account_id),
                                          actor="operator:test")
    page = browser.new_context(locale="zh-CN").new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(_authorize_url(live_server.url, client.client_id, redirect_uri))
    page.fill("#login", person.login)
    page.fill("#password", temporary)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_selector("form[action='/password/new']")
    page.fill("#password", "a-new-password-of-mine")
    page.fill("#again", "a-new-password-of-mine")
    page.click("form[action='/password/new'] button[type=submit]")
    page.wait_for_url(redirect_uri + "?*", timeout=15_000)
    assert parse_qs(urlsplit(page.url).query)["code"][0] and not blocked
