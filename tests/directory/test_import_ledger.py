"""The import's ledger: keys seen so far, on disk, with a Bloom filter in front."""

from __future__ import annotations

from directory.importer.ledger import Ledger


def test_claim_reports_repeats_within_and_across_calls() -> None:
    with Ledger() as ledger:
        assert ledger.claim("key", [("S1", 1), ("S2", 2), ("S1", 3)]) == {3: 1}
        assert ledger.claim("key", [("S2", 9), ("S3", 10)]) == {9: 2}
        assert ledger.claim("other", [("S1", 11)]) == {}  # kinds do not mix


def test_put_get_mark_and_seen_find_every_recorded_key() -> None:
    keys = [f"K{n}" for n in range(60_000)]
    with Ledger() as ledger:
        ledger.put("n", [(k, n) for n, k in enumerate(keys)])
        ledger.put("n", [("K7", -7)])  # replaced
        ledger.mark("m", [("M1", 1)])
        found = ledger.get("n", [*keys, "absent"])
        assert len(found) == len(keys) and found["K7"] == -7 and found["K59999"] == 59_999
        assert ledger.seen("m", ["M1", "M2"]) == {"M1"}
        assert ledger.get("m", ["K1"]) == {}


def test_keys_never_recorded_are_mostly_answered_without_sqlite() -> None:
    with Ledger() as ledger:
        ledger.put("n", [(f"K{n}", n) for n in range(10_000)])
        queries: list[str] = []
        ledger._db.set_trace_callback(queries.append)
        assert ledger.get("n", [f"absent{n}" for n in range(5_000)]) == {}
        assert not [q for q in queries if q.startswith("SELECT")]
        assert ledger.get("n", ["K1", "absent"]) == {"K1": 1}
        assert [q for q in queries if q.startswith("SELECT")]
