"""A real HTTP server for relying-party libraries that cannot use a TestClient.

``live_server`` runs the app with uvicorn on a free 127.0.0.1 port in a thread,
with the issuer set to the server's own URL (RP libraries compare discovery's
``issuer`` with the URL they fetched it from), on the per-test ``db`` and
``store``. ``live_rp`` registers a client and a person for it.

Tests using these import them by name::

    from tests.idp.live import live_rp, live_server  # noqa: F401
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import uvicorn

from core.db import Database
from core.settings import Settings
from core.store import Store
from tests.conftest import make_settings
from tests.idp.conftest import REDIRECT_URI, Person, RegisteredClient

START_SECONDS = 15.0


@dataclass(frozen=True)
class LiveServer:
    url: str
    settings: Settings
    app: Any  # its state.settings may be swapped for a test


@pytest.fixture
def live_server(var_dir: Path, database_url: str, db: Database,
                store: Store) -> Iterator[LiveServer]:
    from idp.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed to uvicorn: no port race
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(var_dir, database_url, issuer=url)
    app = create_app(settings, db=db, store=store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"live-idp-{port}", daemon=True)
    thread.start()
    try:
        _wait_until_healthy(url, thread)
        yield LiveServer(url, settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the live server did not stop"


def _wait_until_healthy(url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError("the live server thread died while starting")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the live server at {url} did not answer /healthz")


@dataclass(frozen=True)
class LiveRP:
    """A registered client and a person, ready to be handed to a node RP script."""

    server: LiveServer
    client: RegisteredClient
    person: Person

    def peer_config(self, **extra: Any) -> dict[str, Any]:
        return {
            "issuer": self.server.url,
            "client_id": self.client.client_id,
            "client_secret": self.client.secret,
            "alg": self.client.metadata["id_token_signed_response_alg"],
            "redirect_uri": REDIRECT_URI,
            "login": self.person.login,
            "password": self.person.password,
            **extra,
        }


@pytest.fixture
def live_rp(live_server: LiveServer, make_client, make_person) -> Callable[..., LiveRP]:
    """``live_rp(person=None, first_party=True, **metadata)``: a client (and a person,
    made once per test unless given) of ``live_server``."""
    people: list[Person] = []

    def make(person: Person | None = None, first_party: bool = True,
             **metadata: Any) -> LiveRP:
        if person is None:
            if not people:
                people.append(make_person())
            person = people[0]
        return LiveRP(live_server, make_client(first_party=first_party, **metadata), person)

    return make


# -- the browser side, in Python (for the Python RP library and the SM2 checks) ---------

_FORM_ACTION = re.compile(r'<form method="post" action="(/[^"?]*)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def login_through_form(authorization_url: str, login: str, password: str,
                       redirect_uri_prefix: str = REDIRECT_URI) -> str:
    """Drive the provider's login (and consent) pages like a browser; return the
    callback URL the provider redirects to (code, state, iss)."""
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        url, method, form = authorization_url, "GET", None
        for _ in range(20):
            response = browser.request(method, url, data=form)
            if response.is_redirect:
                location = urljoin(url, response.headers["location"])
                if location.startswith(redirect_uri_prefix):
                    return location
                url, method, form = location, "GET", None
                continue
            assert response.status_code == 200, f"{url}: {response.status_code} " \
                                                 f"{response.text[:300]}"
            hidden = {k: html.unescape(v) for k, v in _HIDDEN.findall(response.text)}
            action = _FORM_ACTION.search(response.text)  # the sign-in page may be served
            path = action[1] if action else urlsplit(url).path  # by /oauth2/authorize itself
            if path == "/login":
                form = {**hidden, "login": login, "password": password}
            elif path == "/consent":
                form = {**hidden, "decision": "allow"}
            else:
                raise AssertionError(f"unexpected page {url}")
            url, method = urljoin(url, path), "POST"
    raise AssertionError("too many redirects")
