"""core.gc_policy: full collections are rarer inside a batch, and only there."""

from __future__ import annotations

import gc
import threading

from core.gc_policy import BATCH_THRESHOLD2, batch_collections


def test_batch_raises_only_the_oldest_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    with batch_collections():
        young, middle, old = gc.get_threshold()
        assert (young, middle) == before[:2]
        assert old == max(before[2], BATCH_THRESHOLD2)
    assert gc.get_threshold() == before


def test_nested_and_concurrent_batches_restore_once_the_last_ends() -> None:
    before = gc.get_threshold()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def other_batch() -> None:
        with batch_collections():
            inner_started.set()
            outer_may_end.wait(5)
        seen.append(gc.get_threshold())

    with batch_collections():
        thread = threading.Thread(target=other_batch)
        thread.start()
        inner_started.wait(5)
        with batch_collections():
            pass
        assert gc.get_threshold()[2] == max(before[2], BATCH_THRESHOLD2)
    assert gc.get_threshold()[2] == max(before[2], BATCH_THRESHOLD2)  # the thread's batch runs
    outer_may_end.set()
    thread.join(5)
    assert seen == [before]
    assert gc.get_threshold() == before


def test_an_error_in_the_batch_restores_the_settings() -> None:
    before = gc.get_threshold()
    try:
        with batch_collections():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before


def test_a_batch_collects_fully_itself_every_few_steps() -> None:
    from core.gc_policy import FULL_EVERY

    full: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(note)
    try:
        with batch_collections() as step:
            for _ in range(FULL_EVERY - 1):
                step()
            before = len(full)
            step()
            assert len(full) == before + 1
    finally:
        gc.callbacks.remove(note)
