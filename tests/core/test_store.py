"""The store conformance suite: every backend must pass all of it."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest

from core.store import MemoryStore, RedisStore, Store, StoreUnavailable
from tests.conftest import REDIS_URL, RUN_ID


@pytest.fixture(params=["memory", "redis"])
def kv(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if not REDIS_URL:
        pytest.skip("IDP_TEST_REDIS_URL is not set (make test sets it in the PostgreSQL+Redis run)")
    store = RedisStore(REDIS_URL, prefix=f"idp-test:{RUN_ID}:conf:{secrets.token_hex(4)}:")
    yield store
    store.delete_prefix()
    store.close()


def test_get_set_delete(kv: Store) -> None:
    assert kv.get("a") is None
    kv.set("a", b"1")
    assert kv.get("a") == b"1"
    kv.set("a", b"2")
    assert kv.get("a") == b"2"
    kv.delete("a")
    assert kv.get("a") is None
    kv.delete("never-there")


def test_get_many_and_delete_many(kv: Store) -> None:
    kv.set("m1", b"one")
    kv.set("m3", b"three", ttl=60)
    assert kv.get_many(["m1", "m2", "m3"]) == [b"one", None, b"three"]
    assert kv.get_many([]) == []
    kv.delete_many(["m1", "m2", "m3"])
    assert kv.get_many(["m1", "m3"]) == [None, None]
    kv.delete_many([])


def test_set_many_sets_each_with_the_one_ttl(kv: Store) -> None:
    kv.set("s2", b"old")
    kv.set_many([("s1", b"one"), ("s2", b"two")], ttl=60)
    assert kv.get_many(["s1", "s2"]) == [b"one", b"two"]
    assert all(50 < kv.ttl(key) <= 60 for key in ("s1", "s2"))
    kv.set_many([("s3", b"short")], ttl=0.2)
    kv.set_many([])
    time.sleep(0.3)
    assert kv.get("s3") is None


def test_set_many_reads_a_key_after_its_writes(kv: Store) -> None:
    assert kv.set_many([("w1", b"one")], ttl=60, then_get="mark") is None
    kv.set("mark", b"ended", ttl=60)
    assert kv.set_many([("w2", b"two")], ttl=60, then_get="mark") == b"ended"
    assert kv.set_many([("w1", b"three")], ttl=60, then_get="w1") == b"three"
    assert kv.get("w2") == b"two"


def test_values_are_bytes_exactly(kv: Store) -> None:
    value = bytes(range(256))
    kv.set("bin", value)
    assert kv.get("bin") == value


def test_ttl_expires(kv: Store) -> None:
    kv.set("short", b"x", ttl=0.2)
    kv.set("long", b"y", ttl=60)
    kv.set("forever", b"z")
    assert 0 < kv.ttl("short") <= 0.2
    assert 59 < kv.ttl("long") <= 60
    assert kv.ttl("forever") is None
    assert kv.ttl("absent") is None
    time.sleep(0.3)
    assert kv.get("short") is None
    assert kv.take("short") is None
    assert kv.get("long") == b"y"


def test_set_if_absent(kv: Store) -> None:
    assert kv.set_if_absent("k", b"first", ttl=10) is True
    assert kv.set_if_absent("k", b"second", ttl=10) is False
    assert kv.get("k") == b"first"


def test_set_if_absent_after_expiry(kv: Store) -> None:
    assert kv.set_if_absent("k", b"1", ttl=0.1)
    time.sleep(0.2)
    assert kv.set_if_absent("k", b"2", ttl=10)
    assert kv.get("k") == b"2"


def test_take_reads_and_deletes(kv: Store) -> None:
    kv.set("code", b"v", ttl=30)
    assert kv.take("code") == b"v"
    assert kv.take("code") is None
    assert kv.get("code") is None


def test_take_and_mark_leaves_the_mark_only_for_a_present_key(kv: Store) -> None:
    kv.set("code", b"v", ttl=30)
    assert kv.take_and_mark("code", "used", b"pending", ttl=0.4) == b"v"
    assert kv.get("code") is None and kv.get("used") == b"pending"
    assert kv.take_and_mark("code", "used2", b"pending", ttl=30) is None
    assert kv.get("used2") is None
    time.sleep(0.5)
    assert kv.get("used") is None  # the mark expires


def test_give_back_undoes_take_and_mark_only_while_the_mark_stands(kv: Store) -> None:
    kv.set("code", b"v", ttl=30)
    kv.take_and_mark("code", "used", b"pending", ttl=30)
    assert kv.give_back("code", b"v", 0.4, "used", b"pending")
    assert kv.get("code") == b"v" and kv.get("used") is None
    time.sleep(0.5)
    assert kv.get("code") is None  # back for the time given
    kv.set("code", b"v", ttl=30)
    kv.take_and_mark("code", "used", b"pending", ttl=30)
    kv.replace("used", b"reused", ttl=30)  # someone tried it meanwhile
    assert not kv.give_back("code", b"v", 30, "used", b"pending")
    assert kv.get("code") is None and kv.get("used") == b"reused"
    assert not kv.give_back("code", b"v", 30, "absent", b"pending")
    assert kv.get("code") is None


def test_replace_returns_the_previous_value(kv: Store) -> None:
    assert kv.replace("k", b"1", ttl=30) is None
    assert kv.replace("k", b"2", ttl=30) == b"1" and kv.get("k") == b"2"
    assert kv.replace("absent", b"x", ttl=30, only_existing=True) is None
    assert kv.get("absent") is None
    assert kv.replace("k", b"3", ttl=30, only_existing=True) == b"2"
    assert kv.get("k") == b"3"


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_take_and_mark_has_exactly_one_winner(kv: Store, round_: int) -> None:
    kv.set("one-time", b"code", ttl=30)
    results = _race(kv, 16, lambda: kv.take_and_mark("one-time", "mark", b"m", ttl=30))
    assert results.count(b"code") == 1 and kv.get("mark") == b"m"


def test_incr_counts_and_keeps_first_expiry(kv: Store) -> None:
    assert kv.incr("n", ttl=0.4) == 1
    assert kv.incr("n", ttl=100) == 2
    assert kv.incr("n", ttl=100, amount=5) == 7
    assert kv.ttl("n") <= 0.4  # the second call did not extend the window
    time.sleep(0.5)
    assert kv.get("n") is None
    assert kv.incr("n", ttl=10) == 1


def _race(kv: Store, threads: int, action) -> list:
    barrier = threading.Barrier(threads)
    results: list = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        value = action()
        with lock:
            results.append(value)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_take_has_exactly_one_winner(kv: Store, round_: int) -> None:
    kv.set("one-time", b"code", ttl=30)
    results = _race(kv, 16, lambda: kv.take("one-time"))
    assert results.count(b"code") == 1
    assert results.count(None) == 15


def test_concurrent_set_if_absent_has_exactly_one_winner(kv: Store) -> None:
    results = _race(kv, 16, lambda: kv.set_if_absent("lock", b"x", ttl=30))
    assert results.count(True) == 1


def test_concurrent_incr_loses_no_update(kv: Store) -> None:
    results = _race(kv, 16, lambda: [kv.incr("c", ttl=30) for _ in range(25)])
    assert int(kv.get("c")) == 400
    assert sorted(v for batch in results for v in batch) == list(range(1, 401))


def test_swap_sets_only_the_expected_value_and_keeps_the_expiry(kv: Store) -> None:
    assert not kv.swap("absent", b"a", b"b") and kv.get("absent") is None
    kv.set("k", b"a", ttl=0.4)
    assert not kv.swap("k", b"other", b"b") and kv.get("k") == b"a"
    assert kv.swap("k", b"a", b"b") and kv.get("k") == b"b"
    assert kv.ttl("k") <= 0.4
    time.sleep(0.5)
    assert kv.get("k") is None


def test_take_if_deletes_only_the_expected_value(kv: Store) -> None:
    kv.set("k", b"newer", ttl=30)
    assert not kv.take_if("k", b"older") and kv.get("k") == b"newer"
    assert kv.take_if("k", b"newer") and kv.get("k") is None
    assert not kv.take_if("k", b"newer")


def test_advance_only_raises_and_renews_the_expiry(kv: Store) -> None:
    assert kv.advance("mark", 10, ttl=0.4)
    assert not kv.advance("mark", 10, ttl=30) and not kv.advance("mark", 9, ttl=30)
    assert kv.ttl("mark") <= 0.4  # a refusal leaves the expiry alone
    assert kv.advance("mark", 11, ttl=30) and kv.get("mark") == b"11"
    assert kv.ttl("mark") > 1  # a raise renews it
    kv.set("short", b"5", ttl=0.2)
    time.sleep(0.3)
    assert kv.advance("short", 1, ttl=30)  # an expired mark counts as absent


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_advance_lets_each_value_win_at_most_once(kv: Store, round_: int) -> None:
    values = iter(list(range(16)) * 2)
    lock = threading.Lock()

    def one() -> tuple[int, bool]:
        with lock:
            value = next(values)
        return value, kv.advance("mark", value, ttl=30)

    results = _race(kv, 32, one)
    won = [value for value, ok in results if ok]
    assert len(won) == len(set(won)) and 15 in won  # no value twice; the highest always
    assert kv.get("mark") == b"15"


def test_a_queue_hands_out_due_members_with_a_lease(kv: Store) -> None:
    now = time.time()
    kv.schedule("q", "later", now + 60)
    kv.schedule("q", "b", now - 1)
    kv.schedule("q", "a", now - 2)
    assert kv.claim_due("q", lease=0.3, limit=1) == ["a"]  # the earliest first
    assert kv.claim_due("q", lease=0.3, limit=5) == ["b"]  # "a" is leased, "later" not due
    assert kv.claim_due("q", lease=0.3, limit=5) == []
    kv.unschedule("q", "b")
    time.sleep(0.4)  # "a"'s lease ran out (its claimer died): it comes back
    assert kv.claim_due("q", lease=30, limit=5) == ["a"]
    kv.schedule("q", "a", time.time() - 1)  # rescheduled: due at its new time
    assert kv.claim_due("q", lease=30, limit=5) == ["a"]
    kv.unschedule("q", "a")
    kv.unschedule("q", "never-there")
    kv.schedule("q", "later", time.time() - 1)
    assert kv.claim_due("q", lease=30, limit=0) == []
    assert kv.claim_due("q", lease=30, limit=5) == ["later"]


def test_reschedule_renews_many_and_puts_back_none(kv: Store) -> None:
    now = time.time()
    for member in ("a", "b"):
        kv.schedule("q", member, now - 1)
    kv.unschedule("q", "b")  # done with meanwhile
    kv.reschedule("q", ["a", "b"], now + 60)
    kv.reschedule("q", [], now + 60)
    assert kv.claim_due("q", lease=30, limit=5) == []  # "a" renewed, "b" not put back
    kv.reschedule("q", ["a"], now - 1)
    assert kv.claim_due("q", lease=30, limit=5) == ["a"]


def test_concurrent_claims_share_out_the_due_members(kv: Store) -> None:
    for number in range(20):
        kv.schedule("q", f"m{number}", time.time() - 1)
    results = _race(kv, 8, lambda: kv.claim_due("q", lease=30, limit=5))
    claimed = [member for batch in results for member in batch]
    assert sorted(claimed) == sorted(f"m{number}" for number in range(20))


def test_sets_add_list_and_remove_members(kv: Store) -> None:
    assert kv.members("index") == set()
    kv.add_member("index", "a1", ttl=60)
    kv.add_member("index", "b2", ttl=30)
    kv.add_member("index", "a1", ttl=60)
    assert kv.members("index") == {"a1", "b2"}
    kv.remove_member("index", "a1")
    kv.remove_member("index", "never-there")
    kv.remove_member("absent-index", "a1")
    assert kv.members("index") == {"b2"}
    kv.remove_member("index", "b2")
    assert kv.members("index") == set() and kv.ttl("index") is None  # gone when empty
    kv.add_member("index", "c3", ttl=60)
    kv.delete("index")
    assert kv.members("index") == set()


def test_set_members_expire_each_on_its_own(kv: Store) -> None:
    """An index of things that expire: each member lives its own time, and the set as long
    as its longest-lived member (removing one changes neither)."""
    kv.add_member("expiring", "short", ttl=0.5)
    kv.add_member("expiring", "long", ttl=30)
    kv.add_member("expiring", "middle", ttl=20)
    assert 29 < kv.ttl("expiring") <= 30
    kv.remove_member("expiring", "long")
    assert 29 < kv.ttl("expiring") <= 30
    time.sleep(0.7)
    assert kv.members("expiring") == {"middle"}
    kv.add_member("expiring", "middle", ttl=0.5)  # added again: its time is set anew
    kv.add_member("lone", "x", ttl=0.5)
    time.sleep(0.7)
    assert kv.members("expiring") == set()
    assert kv.members("lone") == set() and kv.ttl("lone") is None  # the set went with it


def test_concurrent_additions_lose_no_member(kv: Store) -> None:
    counter = iter(range(10_000))
    lock = threading.Lock()

    def add_some() -> list[str]:
        added = []
        for _ in range(20):
            with lock:
                member = f"m{next(counter)}"
            kv.add_member("busy-index", member, ttl=30)
            added.append(member)
        return added

    results = _race(kv, 8, add_some)
    assert kv.members("busy-index") == {m for batch in results for m in batch}


def test_redis_down_is_reported() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.ping()
