"""Students: a national ID or phone number that two new people of one file share.

A national ID is one person's: whether the two rows fall in one chunk or in two, the second
is refused with the same per-row error. A phone number may be shared (siblings often give a
parent's): both are created. Either way the dry run shows what the real run then does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.db import Database
from core.settings import Settings
from directory.importer import Kind
from tests.directory.cityfiles import STUDENT_HEADER, run, seed_city, student, write


@pytest.mark.parametrize("chunk_size", [1, 2, 5000])
@pytest.mark.parametrize("shared", ["national_id", "phone"])
def test_two_new_students_sharing_an_identity(db: Database, settings: Settings, tmp_path: Path,
                                              chunk_size: int, shared: str) -> None:
    seed_city(db, settings, tmp_path, people=False)
    first = student("N1", "甲", seq=41, phone="13700000041")
    second = student("N2", "乙", seq=42, phone="13700000042")
    third = student("N3", "丙", seq=43, phone="13700000043")
    if shared == "national_id":
        second[7] = first[7]
    else:
        second[8] = first[8]
    path = write(tmp_path / "shared.csv", (STUDENT_HEADER, [first, second, third]))
    options = {"chunk_size": chunk_size, "skip_invalid": True, "workers": 0}
    dry = run(db, settings, path, Kind.students, dry_run=True, **options)
    real = run(db, settings, path, Kind.students, **options)
    assert real.status == "applied"
    assert dry.diff.counts == real.diff.counts, (dry.diff.summary(), real.diff.summary())
    refused = 1 if shared == "national_id" else 0
    assert real.diff.counts["created"] == 3 - refused
    assert real.diff.counts["invalid"] == real.errors == refused
