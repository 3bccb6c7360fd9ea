"""The SSO session's lifetime: idle timeout pushed back by use, never past the maximum."""

from __future__ import annotations

import json
import time

from starlette.requests import Request

from core.store import Store
from idp import sessions


def _request(token: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"cookie", f"{sessions.COOKIE}={token}".encode())]})


def test_use_pushes_the_idle_timeout_back(store: Store, monkeypatch) -> None:
    token, _ = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                              acr="urn:edu:acr:sfa")
    key = sessions._key(token)
    began = time.time()
    assert sessions.load(store, _request(token)) is not None
    assert store.ttl(key) <= sessions.IDLE_SECONDS  # a use right away writes nothing
    later = began + sessions.TOUCH_SECONDS + 1
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    loaded = sessions.load(store, _request(token))
    assert loaded is not None and loaded[1].touched == int(later)
    saved = sessions.SSOSession(**json.loads(store.get(key)))
    assert saved.touched == int(later)  # the idle timeout now counts from this use


def test_the_maximum_lifetime_holds(store: Store, monkeypatch) -> None:
    _token, session = sessions.start(store, account_id=1, sub="s", amr=["pwd"],
                                     acr="urn:edu:acr:sfa")
    monkeypatch.setattr(sessions.time, "time",
                        lambda: session.created + sessions.MAX_SECONDS - 60)
    assert sessions._ttl(session) <= 60
