"""The login form accepts any login identifier, phone numbers through their blind index."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.field_crypto import blind_index_candidates
from core.settings import Settings
from directory.models import IdentifierKind, LoginIdentifier
from tests.idp import flow


def test_phone_number_signs_in_through_the_blind_index(
        client: TestClient, make_client, make_person, db: Database, settings: Settings) -> None:
    person = make_person("s50", "pw-right-50")
    with db.session() as session:
        session.add(LoginIdentifier(account_id=person.account_id,
                                    kind=IdentifierKind.phone.value,
                                    value=blind_index_candidates(settings, "phone",
                                                                 "13912345678")[0]))
    start = flow.authorize(client, client_id=make_client().client_id)
    done = flow.follow(client, flow.login(client, start, "139 1234 5678", "pw-right-50"))
    assert "code=" in done.headers["location"]
    again = flow.authorize(client, client_id=make_client().client_id, prompt="login")
    wrong = flow.login(client, again, "13912345679", "pw-right-50")
    assert wrong.status_code == 400


def test_login_goes_straight_back_to_the_app(client: TestClient, make_client,
                                             make_person) -> None:
    """No detour through /oauth2/authorize/resume: the login answer carries the code."""
    person = make_person("s51", "pw-right-51")
    start = flow.authorize(client, client_id=make_client().client_id)
    done = flow.login(client, start, person.login, person.password)
    assert done.status_code in (302, 303) and "code=" in done.headers["location"]


@pytest.mark.parametrize(("given", "lands"), [
    ("/login/qr/scan?t=abc", "/login/qr/scan?t=abc"),
    ("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
])
def test_next_stays_on_this_site(client: TestClient, make_person, given: str,
                                 lands: str) -> None:
    person = make_person("s52", "pw-right-52")
    page = client.get("/login", params={"next": given})
    assert page.status_code == 200
    done = client.post("/login", data={"csrf_token": flow.csrf_of(page.text), "ia": "",
                                       "login": person.login, "password": person.password,
                                       "next": given}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == lands


def test_language_switcher_keeps_the_pending_request(client: TestClient, make_client,
                                                     make_person) -> None:
    """Switching the sign-in page to English keeps the app's request: on the page the
    authorization endpoint shows, and on ``/login?ia=...`` (after a POST request)."""
    person = make_person("s52", "pw-right-52")
    registered = make_client()
    start = flow.authorize(client, client_id=registered.client_id)
    link = re.findall(r'<a href="([^"]*lang=en[^"]*)"', start.text)[0].replace("&amp;", "&")
    assert f"client_id={registered.client_id}" in link
    english = client.get("/oauth2/authorize" + link)
    assert english.status_code == 200 and 'lang="en"' in english.text
    done = flow.login(client, english, person.login, person.password)
    assert "code=" in flow.follow(client, done).headers["location"]

    posted = client.post("/oauth2/authorize", data={
        "response_type": "code", "client_id": registered.client_id, "prompt": "login",
        "redirect_uri": flow.REDIRECT_URI, "scope": "openid", "state": "st-1"},
        follow_redirects=False)
    ia = flow.ia_of(flow.login_form(client, posted))
    page = client.get(posted.headers["location"])
    link = re.findall(r'<a href="([^"]*lang=en[^"]*)"', page.text)[0].replace("&amp;", "&")
    assert f"ia={ia}" in link
    english = client.get("/login" + link)
    assert 'lang="en"' in english.text and flow.ia_of(english) == ia


def test_the_switcher_after_a_wrong_password_keeps_the_request(
        client: TestClient, make_client, make_person) -> None:
    """The page a wrong password answers (a POST) switches language on the GET address of
    the same sign-in: the app's request is not lost."""
    person = make_person("s53", "pw-right-53")
    registered = make_client()
    start = flow.authorize(client, client_id=registered.client_id)
    ia = flow.ia_of(flow.login_form(client, start))
    wrong = flow.login(client, start, person.login, "wrong")
    assert wrong.status_code == 400
    link = re.findall(r'<a href="([^"]*lang=en[^"]*)"', wrong.text)[0].replace("&amp;", "&")
    assert link == f"/login?ia={ia}&lang=en"
    english = client.get(link)
    assert 'lang="en"' in english.text and flow.ia_of(english) == ia
    done = flow.login(client, english, person.login, person.password)
    assert "code=" in flow.follow(client, done).headers["location"]


def test_a_posted_page_no_get_reaches_switches_on_the_start_page(client: TestClient) -> None:
    from starlette.requests import Request

    from core.web.templates import switch_locale_href

    scope = {"type": "http", "method": "POST", "path": "/login/qr/approve", "query_string": b"",
             "headers": [], "app": client.app, "state": {}}
    assert switch_locale_href(Request(scope), "en") == "/?lang=en"
    scope.update(path="/mfa", state={})  # a GET reaches it: the same page
    assert switch_locale_href(Request(scope), "en") == "?lang=en"


def test_a_legacy_password_hash_is_replaced_at_sign_in(client: TestClient, make_client,
                                                       make_person, db: Database) -> None:
    """A hash imported from an old school system (here unsalted MD5) signs in once and is
    stored again as argon2id, with the sign-in time and the password's change time."""
    from core.passwords import import_legacy_hash
    from directory.models import Account

    person = make_person("s53", "pw-right-53")
    with db.session() as session:
        account = session.get(Account, person.account_id)
        account.password_hash = import_legacy_hash("md5", "5f4dcc3b5aa765d61d8327deb882cf99")
    start = flow.authorize(client, client_id=make_client().client_id)
    done = flow.login(client, start, person.login, "password")
    assert "code=" in done.headers["location"]
    with db.session() as session:
        account = session.get(Account, person.account_id)
        assert account.password_hash.startswith("$argon2id$")
        assert account.last_login_at is not None and account.password_changed_at is not None
