"""A guardian reached through several phones (one national ID) in one guardians file.

The result must not depend on the chunk size: the rows of one guardian in one chunk are
planned as if they were in consecutive chunks. The real import never fails on the database's
unique constraints (national ID blind index, guardian link), writes nothing half-way, and
its diff is the dry run's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import Database
from core.settings import Settings
from directory.importer import ImportResult, Kind
from directory.models import GuardianLink, IdentifierKind, LoginIdentifier, Person
from tests.directory.cityfiles import national_id, run, write
from tests.directory.test_import_dry_run_counts import (
    HEADER,
    _check,
    _dry_then_real,
    _sizes,
    city,  # noqa: F401 (fixture)
    guardian,
)

CHUNK_SIZES = (1, 2, 5000)


def _errors(result: ImportResult) -> list[tuple[int, str]]:
    if result.errors_path is None:
        return []
    with result.errors_path.open(encoding="utf-8-sig", newline="") as handle:
        return [(int(r["row"]), r["message"]) for r in csv.DictReader(handle)]


def _phone_logins(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(LoginIdentifier).where(
            LoginIdentifier.kind == IdentifierKind.phone.value))


def _people(db: Database, name: str) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).where(Person.name == name))


# --- one new guardian, one national ID, two phones ------------------------------------------

@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_new_guardian_with_two_phones(db: Database, settings: Settings, city: Path,  # noqa: F811
                                        chunk_size: int) -> None:
    """Row 3 finds row 2's new guardian by national ID: its phone is added (updated), and
    rows 4 and 5 find the guardian by it.

    (A row with the first phone again would make it the guardian's phone again in a later
    chunk, not in the same one: see ``test_a_new_guardian_found_again_by_national_id``.)"""
    rows = [guardian("张父", 1, "父亲", "K1", nid=7), guardian("张父", 4, "父亲", "K2", nid=7),
            guardian("张父", 4, "父亲", "K3"), guardian("张父", 4, "父亲", "K6")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert (counts["created"], counts["updated"], counts["invalid"]) == (1 + 4, 1, 0)
    assert _people(db, "张父") == 1 and _phone_logins(db) == 2


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_two_new_guardians_with_one_national_id_and_a_known_phone(
        db: Database, settings: Settings, city: Path, chunk_size: int) -> None:  # noqa: F811
    """The phone belongs to a known guardian, the national ID to a new one: an error."""
    first = [guardian("李母", 2, "母亲", "K5")]
    assert run(db, settings, write(city / "first.csv", (HEADER, first)),
               Kind.guardians).status == "applied"
    rows = [guardian("张父", 1, "父亲", "K1", nid=7), guardian("张父", 2, "父亲", "K2", nid=7),
            guardian("李母", 2, "母亲", "K3")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert (counts["created"], counts["invalid"]) == (1 + 1 + 1, 1)
    assert _people(db, "张父") == 1 and _people(db, "李母") == 1


def _known_father(db: Database, settings: Settings, folder: Path) -> None:
    """张父 is in the directory already: phone 1, national ID 7, guardian of K1."""
    first = [guardian("张父", 1, "父亲", "K1", nid=7)]
    assert run(db, settings, write(folder / "first.csv", (HEADER, first)),
               Kind.guardians).status == "applied"


# Found by national ID with a new phone (row 1), then by that phone (row 2); or given two
# more phones (rows 1 and 2), then found by the last one.
KNOWN_GUARDIAN_CASES = {
    "one more phone": ([guardian("张父", 4, "父亲", "K2", nid=7),
                        guardian("张父", 4, "父亲", "K3")], (2, 1, 0), 2),
    "two more phones": ([guardian("张父", 4, "父亲", "K2", nid=7),
                         guardian("张父", 5, "父亲", "K3", nid=7),
                         guardian("张父", 5, "父亲", "K4"), guardian("张父", 5, "父亲", "K6")],
                        (4, 2, 0), 3),
}


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("case", KNOWN_GUARDIAN_CASES)
def test_a_known_guardian_found_by_national_id_then_by_phone(
        db: Database, settings: Settings, city: Path, chunk_size: int,  # noqa: F811
        case: str) -> None:
    """The known guardian gains the phones of rows found by national ID; later rows find it
    by them."""
    rows, expected, phone_logins = KNOWN_GUARDIAN_CASES[case]
    _known_father(db, settings, city)
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert (counts["created"], counts["updated"], counts["invalid"]) == expected
    assert _people(db, "张父") == 1 and _phone_logins(db) == phone_logins


# --- one guardian, one child, reached through two phones ------------------------------------

@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_new_guardian_linked_twice_through_two_phones(
        db: Database, settings: Settings, city: Path, chunk_size: int) -> None:  # noqa: F811
    rows = [guardian("张父", 1, "父亲", "K1", nid=7), guardian("张父", 4, "父亲", "K1", nid=7),
            guardian("张父", 1, "父亲", "K2")]
    dry, real, _ = _dry_then_real(db, settings, write(city / "g.csv", (HEADER, rows)),
                                  chunk_size)
    assert dry.diff.counts == real.diff.counts
    counts = real.diff.counts
    assert (counts["created"], counts["updated"], counts["invalid"]) == (1 + 2, 0, 1)
    assert [row for row, _ in _errors(real)] == [3]
    assert "repeats row 2" in _errors(real)[0][1]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(GuardianLink)) == 2
    assert _phone_logins(db) == 1  # the invalid row adds nothing


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_known_guardian_linked_twice_through_two_phones(
        db: Database, settings: Settings, city: Path, chunk_size: int) -> None:  # noqa: F811
    _known_father(db, settings, city)
    rows = [guardian("张父", 1, "父亲", "K2"), guardian("张父", 4, "父亲", "K2", nid=7),
            guardian("张父", 4, "父亲", "K1", nid=7), guardian("张父", 1, "父亲", "K1")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    # row 2 links K2; row 3 repeats it; row 4 adds the phone (K1 is linked already); row 5
    # repeats row 4's pair
    assert (counts["created"], counts["updated"], counts["invalid"]) == (1, 1, 2)
    assert _people(db, "张父") == 1 and _phone_logins(db) == 2


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_rejected_file_writes_nothing(db: Database, settings: Settings, city: Path,  # noqa: F811
                                        chunk_size: int) -> None:
    """Without --skip-invalid the repeated link rejects the file, with no database error."""
    rows = [guardian("张父", 1, "父亲", "K1", nid=7), guardian("张父", 4, "父亲", "K2", nid=7),
            guardian("张父", 4, "父亲", "K1"), guardian("李母", 2, "母亲", "K3")]
    path = write(city / "g.csv", (HEADER, rows))
    before = _sizes(db)
    dry = run(db, settings, path, Kind.guardians, dry_run=True, chunk_size=chunk_size,
              workers=0)
    real = run(db, settings, path, Kind.guardians, chunk_size=chunk_size, workers=0)
    assert real.status == "rejected" and _sizes(db) == before
    assert dry.diff.counts == real.diff.counts and real.diff.counts["invalid"] == 1
    assert [row for row, _ in _errors(real)] == [4]


# --- a student's national ID in a guardian's row --------------------------------------------

@pytest.mark.parametrize("whose", ["the child's own", "another pupil's"])
def test_a_students_national_id_makes_no_guardian_of_the_student(
        db: Database, settings: Settings, city: Path, whose: str) -> None:  # noqa: F811
    """A parent's row carrying a pupil's national ID (the child's, typed in the wrong
    column) is an error: the pupil is not renamed to the parent's name, given the parent's
    phone as a login, or linked as a guardian (of themselves)."""
    nid = national_id("20140305", 1 if whose == "the child's own" else 2)
    row = ["张妈妈", "13700137099", "母亲", "K1", nid]
    result = run(db, settings, write(city / "g.csv", (HEADER, [row])), Kind.guardians)
    assert result.status == "rejected"
    assert _errors(result) == [(2, "national ID belongs to a student: a student cannot be "
                                   "a guardian")]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(GuardianLink)) == 0
    assert _people(db, "学生1") == 1 and _people(db, "学生2") == 1 and _phone_logins(db) == 0
