"""Drive the browser side of the authorization code flow with a TestClient."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from tests.idp.conftest import REDIRECT_URI

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IA = re.compile(r'<input type="hidden" name="ia" value="([^"]*)"')


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@dataclass
class Redirect:
    location: str

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


def authorize(client: TestClient, **params: str):
    query = {"response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
             "state": "st-1", "nonce": "n-1", **params}
    return client.get("/oauth2/authorize", params=query, follow_redirects=False)


def follow(client: TestClient, response):
    """Follow the provider's resume redirects; stop at a page (login, consent, account
    choice) or at the client's redirect URI."""
    while response.status_code in (302, 303) and response.headers["location"].startswith(
        "/oauth2/authorize/resume"
    ):
        response = client.get(response.headers["location"], follow_redirects=False)
    return response


def is_login_page(response) -> bool:
    """The authorization endpoint's answer asks for a sign-in: the sign-in page itself
    (a ``GET``) or a redirect to ``/login`` (a ``POST`` authorization request)."""
    if response.status_code in (302, 303):
        return response.headers["location"].startswith("/login?")
    return response.status_code == 200 and 'action="/login"' in response.text


def ia_of(page) -> str:
    """The interaction id of a sign-in page (its hidden ``ia`` field)."""
    found = IA.search(page.text)
    assert found, "no ia field on the page"
    return found.group(1)


def login_form(client: TestClient, page):
    """The sign-in page ``page`` shows or redirects to."""
    return client.get(page.headers["location"]) if page.status_code in (302, 303) else page


def login(client: TestClient, page, login: str, password: str):
    """Fill the sign-in page ``page`` (the authorization endpoint's answer, or a redirect
    to /login)."""
    form = login_form(client, page)
    return client.post("/login", data={"csrf_token": csrf_of(form.text), "ia": ia_of(form),
                                       "login": login, "password": password},
                       follow_redirects=False)


def allow(client: TestClient, redirect):
    """Allow on the consent page ``redirect`` leads to."""
    page = client.get(redirect.headers["location"])
    return client.post("/consent", data={"csrf_token": csrf_of(page.text), "ia": ia_of(page),
                                         "decision": "allow"}, follow_redirects=False)


def code_flow(client: TestClient, client_id: str, person, **params: str) -> Redirect:
    """Authorize and sign in if asked; return the redirect to the client. With
    ``prompt=consent`` the person allows on the consent page."""
    response = authorize(client, client_id=client_id, **params)
    if is_login_page(response):
        response = login(client, response, person.login, person.password)
    response = follow(client, response)
    if response.headers.get("location", "").startswith("/consent"):
        if "consent" not in params.get("prompt", "").split():
            raise AssertionError("consent page reached; use a first-party client or consent")
        response = follow(client, allow(client, response))
    assert response.status_code in (302, 303), response.text[:500]
    return Redirect(response.headers["location"])
