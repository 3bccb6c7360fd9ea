"""Brute-force guards: progressive delays, temporary locks and password-spraying detection.

Failures are counted in the store per *subject* for a window (``WINDOW_SECONDS``):

- per account (``ACCOUNT``; a login that names no account is counted under a keyed MAC
  of what was typed, so unknown and known names behave alike and locks tell nothing);
- per client IP (``IP``).

After a few free attempts each further failure doubles the wait before the next attempt
is even checked (1 s, 2 s, 4 s ... up to the limit's ``max_delay``), so guessing is slow while a
person who mistyped twice notices nothing. The wait is enforced by refusing early
attempts, not by holding a server thread. When a subject's failures in the window reach
``lock_after`` it is *locked* for ``lock_seconds``: every attempt is refused, even with
the right password, until the lock expires or an administrator lifts it (:func:`unlock`).

**Password spraying** — one IP trying a few passwords on many accounts stays under every
per-account limit. So each IP's failures are also counted per *distinct* account
(``SPRAY_ACCOUNTS`` distinct accounts within ``SPRAY_WINDOW``); reaching the threshold
locks the IP for ``SPRAY_LOCK_SECONDS``, unless more accounts signed in from it than
failed: a school shares one address, and its morning (hundreds of sign-ins, dozens of
typos) never locks it, while a spraying run (far more failures than successes) does
(docs/lockout.md).

A success clears the account's counter (not the IP's, not the spraying count). Every
lock is reported to the caller once (when it is set) so it can be audited.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.audit import Context, record
from core.store import Store
from mfa import recovery, totp

WINDOW_SECONDS = 900
MAX_DELAY = 300
SPRAY_ACCOUNTS = 30
SPRAY_WINDOW = 3600
SPRAY_LOCK_SECONDS = 3600


@dataclass(frozen=True)
class Limit:
    name: str
    free_attempts: int
    lock_after: int  # failures within the window that lock the subject
    lock_seconds: int
    max_delay: int = MAX_DELAY  # the longest progressive wait


ACCOUNT = Limit("account", 3, 10, 900)
# One address is often a whole school (its NAT): pupils mistyping must not make every
# pupil there wait minutes. Guessing one account is the account limit's job, many
# accounts the spraying count's; the address limit only slows a flood, gently.
IP = Limit("ip", 30, 300, 900, max_delay=15)


def _keys(limit: Limit, subject: str) -> tuple[str, str]:
    return f"fail:{limit.name}:{subject}", f"fail-at:{limit.name}:{subject}"


def _lock_key(limit: Limit, subject: str) -> str:
    return f"lock:{limit.name}:{subject}"


def locked_seconds(store: Store, limit: Limit, subject: str) -> int:
    """Seconds left on a lock of ``subject`` (0: not locked)."""
    return _seconds_left(store.get(_lock_key(limit, subject)))


def _seconds_left(until: bytes | None) -> int:
    """Whole seconds until the stored time ``until`` (0: none, or passed)."""
    return max(0, int(float(until) - time.time() + 0.999)) if until else 0


def failures(store: Store, limit: Limit, subject: str) -> int:
    """Failures of ``subject`` counted in the current window."""
    return int(store.get(_keys(limit, subject)[0]) or 0)


def wait_seconds(store: Store, limit: Limit, subject: str) -> int:
    """Seconds before the next attempt for ``subject`` may be checked (0: go ahead)."""
    return _wait(limit, *store.get_many(_keys(limit, subject)))


def _wait(limit: Limit, count: bytes | None, last: bytes | None) -> int:
    failed = int(count or 0)
    if failed < limit.free_attempts:
        return 0
    delay = min(MAX_DELAY, limit.max_delay, 2 ** (failed - limit.free_attempts))
    return max(0, int(float(last or 0) + delay - time.time() + 0.999))


def refusal_seconds(store: Store, limit: Limit, subject: str) -> tuple[bool, int]:
    """``(locked, seconds)``: whether an attempt now is refused, and for how long.

    One read of the lock, the count and the last failure (one round trip on Redis)."""
    until, count, last = store.get_many([_lock_key(limit, subject), *_keys(limit, subject)])
    if locked := _seconds_left(until):
        return True, locked
    return False, _wait(limit, count, last)


def _lock(store: Store, limit: Limit, subject: str, seconds: int) -> bool:
    """Lock ``subject``; True when this call set the lock (False: it was locked already)."""
    until = str(time.time() + seconds).encode()
    return store.set_if_absent(_lock_key(limit, subject), until, ttl=seconds)


@dataclass(frozen=True)
class Counted:
    """A failure just counted: how many more the window allows before a lock (0: none),
    and whether this one set the lock."""
    left: int
    locked: bool


def _count(store: Store, limit: Limit, subject: str) -> Counted:
    count_key, at_key = _keys(limit, subject)
    store.set(at_key, str(time.time()).encode(), ttl=WINDOW_SECONDS)
    count = store.incr(count_key, ttl=WINDOW_SECONDS)
    locked = count >= limit.lock_after and _lock(store, limit, subject, limit.lock_seconds)
    return Counted(max(0, limit.lock_after - count), locked)


def record_failure(store: Store, limit: Limit, subject: str) -> bool:
    """Count a failure; True when it locked ``subject`` (report it once, to the audit)."""
    return _count(store, limit, subject).locked


def count_failure(session: Session, store: Store, limit: Limit, subject: str, *,
                  target: str, context: Context | None = None) -> Counted:
    """Count a failure of ``subject``; audit the lock it sets (once, when it is set)."""
    counted = _count(store, limit, subject)
    if counted.locked:
        record(session, actor="system", action="security.lock", outcome="success",
               target=target, context=context,
               detail={"scope": limit.name, "seconds": limit.lock_seconds})
    return counted


def record_spraying(store: Store, ip: str, account_subject: str) -> bool:
    """Count a failure of ``ip`` on ``account_subject``; True when it reveals spraying.

    Only the first failure per (IP, account) in the window counts; when the distinct
    accounts reach ``SPRAY_ACCOUNTS`` and are at least as many as the accounts that signed
    in from ``ip`` meanwhile (``record_sign_in``), the IP is locked (the True is returned
    once)."""
    first = store.set_if_absent(f"spray-seen:{ip}:{account_subject}", b"1", ttl=SPRAY_WINDOW)
    if not first:
        return False
    distinct = store.incr(f"spray:{ip}", ttl=SPRAY_WINDOW)
    if distinct < SPRAY_ACCOUNTS:
        return False
    signed_in = int(store.get(f"spray-ok:{ip}") or 0)
    return distinct >= signed_in and _lock(store, IP, ip, SPRAY_LOCK_SECONDS)


def record_sign_in(store: Store, ip: str, account_subject: str) -> None:
    """A password sign-in from ``ip`` (an allowed account, the right password): the
    address's distinct failures lock it for spraying only while they are at least as
    many as the accounts that signed in there within ``SPRAY_WINDOW``. A school's address
    sees hundreds of pupils sign in and dozens mistype; a spraying run sees far fewer
    successes than failures (each account it tries still locks on its own)."""
    if store.set_if_absent(f"spray-ok-seen:{ip}:{account_subject}", b"1", ttl=SPRAY_WINDOW):
        store.incr(f"spray-ok:{ip}", ttl=SPRAY_WINDOW)


CHECK_SECONDS = 30  # the longest one password check may hold its subject's turn
TURN_WAIT_SECONDS = 3.0  # how long an attempt waits for the check under way to end
_TURN_POLL_SECONDS = (0.01, 0.02, 0.04)  # the first pauses between tries; then 50 ms


@contextmanager
def sole_check(store: Store, limit: Limit, subject: str,
               wait: float | None = None) -> Iterator[bool]:
    """One check at a time for ``subject``: waits up to ``wait`` seconds (default
    ``TURN_WAIT_SECONDS``) for the check under way to end, then yields False if it still
    has not. Without it, attempts sent at once would all read the count before any of them
    added its failure, and a burst would get past the delays and the lock; with it, each
    check reads what the previous one recorded. Waiting (rather than refusing at once)
    lets the pupils of a class that shares one account press "sign in" together, and
    does not tell whether two identifiers name one account. A waiting thread is held
    only briefly: once the count has earned a delay, each turn is a refusal that takes a
    millisecond. A turn is released when the check ends, or after ``CHECK_SECONDS`` if
    its process died."""
    key = f"checking:{limit.name}:{subject}"
    turn = secrets.token_bytes(16)
    if not _take_turn(store, key, turn, TURN_WAIT_SECONDS if wait is None else wait):
        yield False
        return
    try:
        yield True
    finally:  # only this turn: past CHECK_SECONDS another check may hold the key now
        store.take_if(key, turn)


def _take_turn(store: Store, key: str, turn: bytes, wait: float) -> bool:
    deadline = time.monotonic() + wait
    pauses = itertools.chain(_TURN_POLL_SECONDS, itertools.repeat(0.05))
    while not store.set_if_absent(key, turn, ttl=CHECK_SECONDS):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(next(pauses), left))
    return True


def clear(store: Store, limit: Limit, subject: str, *also: str) -> None:
    """Forget the failures of ``subject`` (after a success), and the keys ``also`` in the
    same round trip; a lock stays."""
    store.delete_many([*_keys(limit, subject), *also])


def unlock(store: Store, limit: Limit, subject: str) -> bool:
    """Lift a lock and forget the failures (an administrator's unlock). True if it was locked."""
    was_locked = store.take(_lock_key(limit, subject)) is not None
    clear(store, limit, subject)
    if limit is IP:
        store.delete(f"spray:{subject}")
    elif subject.isdigit():  # an account: its second-factor code limits too
        was_locked = bool(totp.locked_seconds(store, int(subject))) or was_locked
        totp.forget_failures(store, int(subject))
        recovery.forget_failures(store, int(subject))
    return was_locked


def lift(session: Session, store: Store, limit: Limit, subject: str, *, actor: str,
         context: Context | None = None) -> bool:
    """An administrator's unlock of an account or an IP, audited. True if it was locked."""
    was_locked = unlock(store, limit, subject)
    target = f"ip:{subject}" if limit is IP else f"account:{subject}"
    record(session, actor=actor, action="security.unlock", outcome="success", target=target,
           context=context, detail={"scope": limit.name, "was_locked": was_locked})
    return was_locked
