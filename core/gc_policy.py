"""Garbage-collector settings for long batch work (bulk import).

CPython's cyclic collector runs a *full* collection when enough objects have
survived two younger collections since the last one (``threshold2``, 10 by
default, and more than a quarter of the long-lived objects). A bulk import
keeps each chunk's thousands of plans, rows and lookups alive across many young
collections, so they reach the oldest generation and then die by reference
counting when the chunk is written; the count of survivors keeps rising, and
every few chunks a full collection walks every object the process holds. In
``bench/import.py --scale 0.2`` that was 86 full collections and 10 s of CPU,
about a quarter of the main process's time.

:func:`batch_collections` raises ``threshold2`` while a batch runs: young
collections go on as usual (cycles among short-lived objects are still freed
soon), full collections become a hundred times rarer, and the settings come
back when the last batch in the process ends. It is process-wide, like the
collector; nested and concurrent uses are counted. Garbage in cycles that
reached the oldest generation would then wait long for a collection (memory
grew with the file in a test), so the batch collects fully itself every
``FULL_EVERY`` steps it reports (``step()``, once per chunk): ten times fewer
full collections than before, and memory flat again.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

BATCH_THRESHOLD2 = 1000  # young collections between full ones while a batch runs
FULL_EVERY = 10  # steps (import chunks) between the batch's own full collections

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def batch_collections(threshold2: int = BATCH_THRESHOLD2
                      ) -> Iterator[Callable[[], None]]:
    """Make full collections rarer for the duration of the ``with`` block; it gives
    ``step()``, to call once per unit of work (a full collection every ``FULL_EVERY``)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            young, middle, old = _saved
            gc.set_threshold(young, middle, max(old, threshold2))
        _depth += 1
    steps = 0

    def step() -> None:
        nonlocal steps
        steps += 1
        if steps % FULL_EVERY == 0:
            gc.collect()

    try:
        yield step
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
