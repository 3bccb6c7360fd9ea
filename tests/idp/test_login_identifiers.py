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
    """Switching the login page to English keeps ``ia``: signing in still reaches the app."""
    person = make_person("s52", "pw-right-52")
    start = flow.authorize(client, client_id=make_client().client_id)
    page = client.get(start.headers["location"])
    ia = start.headers["location"].split("ia=")[1].split("&")[0]
    links = re.findall(r'<a href="([^"]*ui_locales=en[^"]*)"', page.text)
    assert links and f"ia={ia}" in links[0], links
    english = client.get("/login" + links[0].replace("&amp;", "&"))
    assert english.status_code == 200 and 'lang="en"' in english.text
    assert f'name="ia" value="{ia}"' in english.text
    done = client.post("/login", data={"csrf_token": flow.csrf_of(english.text), "ia": ia,
                                       "login": person.login, "password": person.password},
                       follow_redirects=False)
    assert "code=" in done.headers["location"]
