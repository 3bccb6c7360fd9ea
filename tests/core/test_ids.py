"""Public ids: random (``new_id``) and time-ordered (``new_sortable_id``, a UUIDv7)."""

from __future__ import annotations

import time
import uuid

from core.db import new_id, new_sortable_id


def test_sortable_ids_are_uuid7_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(3):
        made += [new_sortable_id() for _ in range(200)]
        time.sleep(0.002)  # the next millisecond
    parsed = [uuid.UUID(i) for i in made]
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(made)) == len(made) and all(len(i) == 32 for i in made)
    millis = [u.int >> 80 for u in parsed]
    assert millis == sorted(millis)  # ordered by the time of making, to the millisecond
    assert abs(millis[-1] - time.time_ns() // 1_000_000) < 5_000
    assert max(made[:200]) < min(made[-200:])  # as strings too: what the index sorts


def test_random_ids_stay_uuid4() -> None:
    assert uuid.UUID(new_id()).version == 4
