"""The SSO session's lifetime: idle timeout pushed back by use, never past the maximum."""

from __future__ import annotations

import json
import time

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
    [(written, ttl)] = store.writes
    assert written == key and ttl == sessions.IDLE_SECONDS  # a full idle period from now
    assert sessions.SSOSession(**json.loads(store.get(key))).touched == int(later)
    assert sessions.load(store, _request(token)) is not None and len(store.writes) == 1


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
