"""What counts against spraying at an address: only allowed sign-ins hold the lock off."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.store import MemoryStore
from mfa import guards
from tests.idp import flow
from tests.idp.test_lockout import LOCKED_IP, no_delays  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("no_delays")


def test_a_suspended_accounts_right_password_does_not_raise_the_threshold(
        client: TestClient, make_client, make_person, monkeypatch: pytest.MonkeyPatch) -> None:
    """A password that is refused (suspended, graduated, disabled) is no sign-in: it must not
    buy a spraying run more room."""
    monkeypatch.setattr(guards, "SPRAY_ACCOUNTS", 5)
    for n in range(3):
        make_person(f"s7{n}", "Summer2026!", status="suspended")
    start = flow.authorize(client, client_id=make_client().client_id)
    for n in range(3):  # the spray's password is right for three suspended accounts: refused
        refused = flow.login(client, start, f"s7{n}", "Summer2026!")
        assert refused.status_code == 400, refused.status_code
    for n in range(5):  # then wrong on five distinct accounts: the threshold is 5
        flow.login(client, start, f"s9{n}", "Summer2026!")
    blocked = flow.login(client, start, "s95", "Summer2026!")
    assert blocked.status_code == 429 and LOCKED_IP in blocked.text, blocked.status_code


def test_a_spray_that_hits_half_its_accounts_is_never_locked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A spray with a common default password (half the accounts still use it): its hits
    must not hold the lock off however many accounts it tries."""
    monkeypatch.setattr(guards, "SPRAY_ACCOUNTS", 5)
    store = MemoryStore()
    locked = False
    for n in range(200):
        if n % 2:
            guards.record_sign_in(store, "203.0.113.9", str(n))
        else:
            locked |= guards.record_spraying(store, "203.0.113.9", str(n))
    assert locked, "100 distinct failures from one address, never locked"
