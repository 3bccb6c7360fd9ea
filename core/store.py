"""Short-lived state: a small key-value interface with two backends.

SSO sessions, authorization codes, OTP attempts, WebAuthn challenges,
rate-limit counters, QR-login tickets and device codes live here, never in the
relational database. :class:`MemoryStore` serves one process (the embedded
default); :class:`RedisStore` serves many processes and hosts. Both pass one
conformance suite (``tests/core/test_store.py``).

One-time values are consumed with :meth:`Store.take`, which reads and deletes
in one atomic step (``GETDEL`` on Redis), so a code is redeemed at most once
even across workers.
"""

from __future__ import annotations

import heapq
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

from core.settings import ConfigError, Settings


class StoreUnavailable(Exception):
    """The store cannot be reached; the message names it without credentials."""


class Store(ABC):
    """Keys are ``str``, values ``bytes``; ``ttl`` is in seconds (``None``: no expiry)."""

    # what a call raises when the backend is out of reach (a caller that carries on without
    # the store catches these, and lets a programming error through)
    errors: tuple[type[Exception], ...] = (StoreUnavailable,)

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    @abstractmethod
    def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True when it was stored."""

    @abstractmethod
    def take(self, key: str) -> bytes | None:
        """Read and delete ``key`` atomically: of many concurrent takers one wins."""

    @abstractmethod
    def take_and_mark(self, key: str, mark_key: str, mark: bytes, ttl: float) -> bytes | None:
        """Take ``key`` and, when it was there, set ``mark_key`` to ``mark`` (expiring after
        ``ttl``) in the same atomic step: no moment shows neither."""

    @abstractmethod
    def give_back(self, key: str, value: bytes, ttl: float, mark_key: str,
                  mark: bytes) -> bool:
        """The inverse of :meth:`take_and_mark`, atomically: if ``mark_key`` still holds
        ``mark``, delete it and set ``key`` to ``value`` (expiring after ``ttl``); False,
        and nothing written, when the mark changed or is gone."""

    @abstractmethod
    def replace(self, key: str, value: bytes, ttl: float | None = None, *,
                only_existing: bool = False) -> bytes | None:
        """Set ``key`` and return the value it had, atomically; ``only_existing``: set it
        only when it exists (the answer is then ``None`` and nothing is written)."""

    @abstractmethod
    def swap(self, key: str, expected: bytes, value: bytes) -> bool:
        """Set ``key`` to ``value`` only if it holds ``expected`` now (compare-and-set),
        keeping its time to live; False when it changed or is gone meanwhile."""

    @abstractmethod
    def take_if(self, key: str, expected: bytes) -> bool:
        """Delete ``key`` only if it holds ``expected`` now (compare-and-delete); False when
        it changed (a newer value stays) or is gone meanwhile."""

    @abstractmethod
    def advance(self, key: str, value: int, ttl: float) -> bool:
        """Set the counter ``key`` to ``value`` only if it is absent or holds less, with a
        new time to live, atomically: of concurrent callers only those that raise it win
        (a high-water mark). False when it already holds ``value`` or more."""

    @abstractmethod
    def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        """Add ``amount`` atomically; a new counter expires ``ttl`` seconds after creation."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (Redis: one ``MGET``, one round trip)."""
        return [self.get(key) for key in keys]

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (Redis: one ``DEL``)."""
        for key in keys:
            self.delete(key)

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float | None = None, *,
                 then_get: str | None = None) -> bytes | None:
        """Set each key to its value, all with ``ttl`` (Redis: one round trip, not atomic:
        what must expire together, written together); then read ``then_get`` in the same
        round trip, and return it (None without ``then_get``): whether something that
        outweighs the writes appeared before them."""
        for key, value in items:
            self.set(key, value, ttl)
        return self.get(then_get) if then_get is not None else None

    @abstractmethod
    def add_member(self, key: str, member: str, ttl: float) -> None:
        """Add ``member`` to the set ``key`` for ``ttl`` seconds (adding it again sets its
        time anew); members past their time are dropped, and the set lives as long as its
        longest-lived member. An index that trims itself: a set of what expires anyway."""

    @abstractmethod
    def members(self, key: str) -> set[str]:
        """The live members of the set ``key`` (empty when it is absent)."""

    @abstractmethod
    def remove_member(self, key: str, member: str) -> None: ...

    @abstractmethod
    def schedule(self, key: str, member: str, due: float) -> None:
        """Put ``member`` in the queue ``key``, due at ``due`` (seconds since the epoch:
        the wall clock, shared by every process); again, and it is due then instead."""

    @abstractmethod
    def claim_due(self, key: str, lease: float, limit: int) -> list[str]:
        """Up to ``limit`` members of the queue ``key`` that are due, each made due again
        ``lease`` seconds from now in the same atomic step: of processes claiming at once,
        each member goes to one, and comes back if it is not unscheduled or rescheduled
        within its lease (its claimer died)."""

    @abstractmethod
    def reschedule(self, key: str, members: Sequence[str], due: float) -> None:
        """Make those of ``members`` still in the queue ``key`` due at ``due``, in one step
        (a lease renewed for many); a member taken out meanwhile is not put back."""

    @abstractmethod
    def unschedule(self, key: str, member: str) -> None:
        """Take ``member`` out of the queue ``key`` (done with)."""

    @abstractmethod
    def ttl(self, key: str) -> float | None:
        """Seconds left, ``None`` when the key is absent or never expires."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` when the backend cannot be used."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def _lines(members: dict[str, float]) -> bytes:
    return "\n".join(f"{m} {expiry!r}" for m, expiry in sorted(members.items())).encode()


class MemoryStore(Store):
    """A thread-safe in-process store with expiry. One process only."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._expiries: list[tuple[float, str]] = []
        self._queues: dict[str, dict[str, float]] = {}  # member: due (the wall clock)
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> tuple[bytes, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            self._live(key, now)

    def _put(self, key: str, value: bytes, ttl: float | None, now: float) -> None:
        expires = None if ttl is None else now + ttl
        self._data[key] = (value, expires)
        if expires is not None:
            heapq.heappush(self._expiries, (expires, key))

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._live(key, time.monotonic())
            return None if item is None else item[0]

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        with self._lock:
            now = time.monotonic()
            self._purge(now)
            self._put(key, value, ttl, now)

    def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is not None:
                return False
            self._put(key, value, ttl, now)
            return True

    def take(self, key: str) -> bytes | None:
        with self._lock:
            item = self._live(key, time.monotonic())
            if item is None:
                return None
            del self._data[key]
            return item[0]

    def take_and_mark(self, key: str, mark_key: str, mark: bytes, ttl: float) -> bytes | None:
        with self._lock:
            now = time.monotonic()
            item = self._live(key, now)
            if item is None:
                return None
            del self._data[key]
            self._put(mark_key, mark, ttl, now)
            return item[0]

    def give_back(self, key: str, value: bytes, ttl: float, mark_key: str,
                  mark: bytes) -> bool:
        with self._lock:
            now = time.monotonic()
            item = self._live(mark_key, now)
            if item is None or item[0] != mark:
                return False
            del self._data[mark_key]
            self._put(key, value, ttl, now)
            return True

    def replace(self, key: str, value: bytes, ttl: float | None = None, *,
                only_existing: bool = False) -> bytes | None:
        with self._lock:
            now = time.monotonic()
            item = self._live(key, now)
            if item is None and only_existing:
                return None
            self._put(key, value, ttl, now)
            return None if item is None else item[0]

    def swap(self, key: str, expected: bytes, value: bytes) -> bool:
        with self._lock:
            item = self._live(key, time.monotonic())
            if item is None or item[0] != expected:
                return False
            self._data[key] = (value, item[1])
            return True

    def take_if(self, key: str, expected: bytes) -> bool:
        with self._lock:
            item = self._live(key, time.monotonic())
            if item is None or item[0] != expected:
                return False
            del self._data[key]
            return True

    def advance(self, key: str, value: int, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            item = self._live(key, now)
            if item is not None and int(item[0]) >= value:
                return False
            self._put(key, str(value).encode(), ttl, now)
            return True

    def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        with self._lock:
            now = time.monotonic()
            item = self._live(key, now)
            if item is None:
                self._put(key, str(amount).encode(), ttl, now)
                return amount
            value = int(item[0]) + amount
            self._data[key] = (str(value).encode(), item[1])
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    # A set is held as "member expiry" lines (members hold no whitespace; expiries in the
    # monotonic clock): sets here are small indexes, and this keeps one expiry mechanism
    # for every key.
    def add_member(self, key: str, member: str, ttl: float) -> None:
        with self._lock:
            now = time.monotonic()
            found = self._members(key, now)
            found[member] = now + ttl
            self._put(key, _lines(found), max(found.values()) - now, now)

    def members(self, key: str) -> set[str]:
        with self._lock:
            return set(self._members(key, time.monotonic()))

    def remove_member(self, key: str, member: str) -> None:
        with self._lock:
            found = self._members(key, time.monotonic())
            if found.pop(member, None) is None:
                return
            if found:  # the set keeps its expiry
                self._data[key] = (_lines(found), self._data[key][1])
            else:
                del self._data[key]

    def schedule(self, key: str, member: str, due: float) -> None:
        with self._lock:
            self._queues.setdefault(key, {})[member] = due

    def claim_due(self, key: str, lease: float, limit: int) -> list[str]:
        if limit < 1:
            return []
        with self._lock:
            now = time.time()
            queue = self._queues.get(key, {})
            due = sorted((at, member) for member, at in queue.items() if at <= now)[:limit]
            for _at, member in due:
                queue[member] = now + lease
            return [member for _at, member in due]

    def reschedule(self, key: str, members: Sequence[str], due: float) -> None:
        with self._lock:
            queue = self._queues.get(key, {})
            for member in members:
                if member in queue:
                    queue[member] = due

    def unschedule(self, key: str, member: str) -> None:
        with self._lock:
            queue = self._queues.get(key, {})
            queue.pop(member, None)
            if not queue:
                self._queues.pop(key, None)

    def _members(self, key: str, now: float) -> dict[str, float]:
        item = self._live(key, now)
        if item is None or not item[0]:
            return {}
        pairs = (line.split(" ") for line in item[0].decode().split("\n"))
        return {member: float(expiry) for member, expiry in pairs if float(expiry) > now}

    def ttl(self, key: str) -> float | None:
        with self._lock:
            now = time.monotonic()
            item = self._live(key, now)
            if item is None or item[1] is None:
                return None
            return item[1] - now

    def ping(self) -> None:
        return None


# INCRBY, then set the expiry only on a counter this call created.
_INCR_WITH_TTL = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# GETDEL the first key; if it held a value, SET the second (with PX) in the same step.
_TAKE_AND_MARK = """
local value = redis.call('GETDEL', KEYS[1])
if value then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
return value
"""


# The inverse of _TAKE_AND_MARK, only while the mark is the expected one (``give_back``).
_GIVE_BACK = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


# Compare-and-set that keeps the key's time to live (``Store.swap``).
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""
# Compare-and-delete (``Store.take_if``).
_TAKE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
# Raise a counter to ARGV[1] with a new expiry, only if absent or lower (``Store.advance``).
_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# ZADD the member with its expiry (ms since the epoch) as score, drop the members past
# theirs, and let the set live as long as its longest-lived member.
_ADD_MEMBER = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
redis.call('PEXPIREAT', KEYS[1], last)
"""


# The due members (score <= now, in ms), at most ARGV[3], each due again at ARGV[2].
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


class RedisStore(Store):
    """Redis (or a Redis-compatible server) through redis-py; keys get a prefix."""

    def __init__(self, url: str, prefix: str = "idp:") -> None:
        import redis

        self.errors = (StoreUnavailable, redis.RedisError, OSError)
        self._redis = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        self._prefix = prefix
        self._incr = self._redis.register_script(_INCR_WITH_TTL)
        self._take_and_mark = self._redis.register_script(_TAKE_AND_MARK)
        self._give_back = self._redis.register_script(_GIVE_BACK)
        self._add_member = self._redis.register_script(_ADD_MEMBER)
        self._swap = self._redis.register_script(_SWAP)
        self._take_if = self._redis.register_script(_TAKE_IF)
        self._advance = self._redis.register_script(_ADVANCE)
        self._claim_due = self._redis.register_script(_CLAIM_DUE)

    def _k(self, key: str) -> str:
        return self._prefix + key

    @staticmethod
    def _ms(ttl: float | None) -> int | None:
        return None if ttl is None else max(1, int(ttl * 1000))

    def get(self, key: str) -> bytes | None:
        return self._redis.get(self._k(key))

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._redis.set(self._k(key), value, px=self._ms(ttl))

    def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        return bool(self._redis.set(self._k(key), value, px=self._ms(ttl), nx=True))

    def take(self, key: str) -> bytes | None:
        return self._redis.getdel(self._k(key))

    def take_and_mark(self, key: str, mark_key: str, mark: bytes, ttl: float) -> bytes | None:
        return self._take_and_mark(keys=[self._k(key), self._k(mark_key)],
                                   args=[mark, self._ms(ttl)])

    def give_back(self, key: str, value: bytes, ttl: float, mark_key: str,
                  mark: bytes) -> bool:
        return bool(self._give_back(keys=[self._k(key), self._k(mark_key)],
                                    args=[mark, value, self._ms(ttl)]))

    def replace(self, key: str, value: bytes, ttl: float | None = None, *,
                only_existing: bool = False) -> bytes | None:
        return self._redis.set(self._k(key), value, px=self._ms(ttl), xx=only_existing,
                               get=True)

    def swap(self, key: str, expected: bytes, value: bytes) -> bool:
        return bool(self._swap(keys=[self._k(key)], args=[expected, value]))

    def take_if(self, key: str, expected: bytes) -> bool:
        return bool(self._take_if(keys=[self._k(key)], args=[expected]))

    def advance(self, key: str, value: int, ttl: float) -> bool:
        return bool(self._advance(keys=[self._k(key)], args=[value, self._ms(ttl)]))

    def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        return int(self._incr(keys=[self._k(key)], args=[amount, self._ms(ttl)]))

    def delete(self, key: str) -> None:
        self._redis.delete(self._k(key))

    def add_member(self, key: str, member: str, ttl: float) -> None:
        now = int(time.time() * 1000)
        self._add_member(keys=[self._k(key)], args=[member, now + self._ms(ttl), now])

    def members(self, key: str) -> set[str]:
        now = int(time.time() * 1000)
        return {m.decode() for m in self._redis.zrangebyscore(self._k(key), f"({now}", "+inf")}

    def remove_member(self, key: str, member: str) -> None:
        self._redis.zrem(self._k(key), member)

    def schedule(self, key: str, member: str, due: float) -> None:
        self._redis.zadd(self._k(key), {member: int(due * 1000)})

    def claim_due(self, key: str, lease: float, limit: int) -> list[str]:
        if limit < 1:
            return []
        now = int(time.time() * 1000)
        claimed = self._claim_due(keys=[self._k(key)], args=[now, now + self._ms(lease), limit])
        return [member.decode() for member in claimed]

    def reschedule(self, key: str, members: Sequence[str], due: float) -> None:
        if members:
            self._redis.zadd(self._k(key), dict.fromkeys(members, int(due * 1000)), xx=True)

    def unschedule(self, key: str, member: str) -> None:
        self._redis.zrem(self._k(key), member)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._redis.mget([self._k(key) for key in keys]) if keys else []

    def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            self._redis.delete(*(self._k(key) for key in keys))

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float | None = None, *,
                 then_get: str | None = None) -> bytes | None:
        pipe = self._redis.pipeline(transaction=False)
        for key, value in items:
            pipe.set(self._k(key), value, px=self._ms(ttl))
        if then_get is not None:
            pipe.get(self._k(then_get))
        answers = pipe.execute()
        return answers[-1] if then_get is not None else None

    def ttl(self, key: str) -> float | None:
        left = self._redis.pttl(self._k(key))
        return None if left < 0 else left / 1000

    def ping(self) -> None:
        """A write, not a PING: a Redis that answers but refuses writes (a replica after a
        failover: READONLY; full under noeviction: OOM) cannot serve sign-ins either."""
        try:
            self._redis.set(self._prefix + "ready", b"1", px=10_000)
        except self.errors as exc:
            refused = type(exc).__name__ in ("ReadOnlyError", "OutOfMemoryError")
            reason = "refuses writes" if refused else "is unreachable"
            raise StoreUnavailable(f"Redis {reason} ({type(exc).__name__})") from None

    def delete_prefix(self) -> int:
        """Remove every key under this store's prefix (test clean-up)."""
        removed = 0
        for key in self._redis.scan_iter(match=self._prefix + "*", count=500):
            removed += self._redis.delete(key)
        return removed

    def close(self) -> None:
        self._redis.close()


def make_store(settings: Settings) -> Store:
    """The store the settings ask for; a Redis URL that does not answer is a ConfigError."""
    if not settings.redis_url:
        return MemoryStore()
    store = RedisStore(settings.redis_url, settings.store_prefix)
    try:
        store.ping()
    except StoreUnavailable as exc:
        raise ConfigError(f"IDP_REDIS_URL: {exc}; start Redis or unset IDP_REDIS_URL") from None
    return store
