"""QR tickets updated by two parties at once: each update is a compare-and-set of the ticket
as it was read (``Store.swap``), so a read-then-write cannot overwrite what another phone or
the desktop did in between (a concurrency review raced both over HTTP)."""

from __future__ import annotations

import pytest

from core.store import Store
from mfa import qr_login as qr


def _new(store: Store) -> str:
    ticket_id, _secret, _ticket = qr.create(store, user_agent="", ip="10.0.0.1")
    return ticket_id


def test_two_phones_scanning_at_once_one_owns_the_ticket(store: Store) -> None:
    ticket_id = _new(store)
    first, second = qr._load(store, ticket_id), qr._load(store, ticket_id)  # both: pending
    first.status, first.scanned_by = qr.SCANNED, 1
    qr._save(store, ticket_id, first)
    second.status, second.scanned_by = qr.SCANNED, 2
    with pytest.raises(qr.QrError) as refused:
        qr._save(store, ticket_id, second)
    assert refused.value.reason == "other_phone"
    assert qr._load(store, ticket_id).scanned_by == 1


def test_a_refusal_after_the_desktop_took_the_ticket_is_told_used(store: Store) -> None:
    ticket_id = _new(store)
    phone = qr._load(store, ticket_id)  # the phone read it (approved) ...
    assert store.set_if_absent(qr._used_key(ticket_id), b"1", ttl=60)  # ... the desktop
    assert store.take(qr._key(ticket_id)) is not None                 # redeemed it ...
    phone.status = qr.DENIED                                             # ... then "deny"
    with pytest.raises(qr.QrError) as refused:
        qr._save(store, ticket_id, phone)
    assert refused.value.reason == qr.USED  # not "refused, nothing was unlocked"


def test_swap_keeps_the_time_to_live(store: Store) -> None:
    store.set("swap-test", b"a", ttl=30)
    assert store.swap("swap-test", b"a", b"b") and store.get("swap-test") == b"b"
    assert not store.swap("swap-test", b"a", b"c") and store.get("swap-test") == b"b"
    assert 0 < (store.ttl("swap-test") or 0) <= 30
    assert not store.swap("swap-missing", b"a", b"b") and store.get("swap-missing") is None
