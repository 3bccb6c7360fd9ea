"""Brute-force guards: progressive delays per account and per client IP.

Failures are counted in the store for a window (``WINDOW_SECONDS``). After a
few free attempts each further failure doubles the wait before the next
attempt is even checked (1 s, 2 s, 4 s ... up to ``MAX_DELAY``), so guessing is
slow while a person who mistyped twice notices nothing. The wait is enforced
by refusing early attempts, not by holding a server thread. A success clears
the account's counter (not the IP's: one IP trying many accounts is spraying).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.store import Store

WINDOW_SECONDS = 900
MAX_DELAY = 300


@dataclass(frozen=True)
class Limit:
    name: str
    free_attempts: int


ACCOUNT = Limit("account", 3)
IP = Limit("ip", 10)


def _keys(limit: Limit, subject: str) -> tuple[str, str]:
    return f"fail:{limit.name}:{subject}", f"fail-at:{limit.name}:{subject}"


def wait_seconds(store: Store, limit: Limit, subject: str) -> int:
    """Seconds before the next attempt for ``subject`` may be checked (0: go ahead)."""
    count_key, at_key = _keys(limit, subject)
    count = int(store.get(count_key) or 0)
    if count < limit.free_attempts:
        return 0
    delay = min(MAX_DELAY, 2 ** (count - limit.free_attempts))
    last = float(store.get(at_key) or 0)
    return max(0, int(last + delay - time.time() + 0.999))


def record_failure(store: Store, limit: Limit, subject: str) -> int:
    count_key, at_key = _keys(limit, subject)
    store.set(at_key, str(time.time()).encode(), ttl=WINDOW_SECONDS)
    return store.incr(count_key, ttl=WINDOW_SECONDS)


def clear(store: Store, limit: Limit, subject: str) -> None:
    for key in _keys(limit, subject):
        store.delete(key)
