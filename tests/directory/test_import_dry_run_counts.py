"""``idp import --dry-run`` of a guardians file: the diff a real import of the file then shows.

A real run writes each chunk before planning the next, so a guardian created or changed by an
earlier row is found in the directory; a dry run writes nothing and must remember it. Every
case is planned with several chunk sizes (a guardian's rows in one chunk, or across chunks),
and the real run's diff is checked against what it wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import Database
from core.settings import Settings
from directory.importer import ImportResult, Kind
from directory.models import Affiliation, GuardianLink, LoginIdentifier, Person
from tests.directory.cityfiles import STUDENT_HEADER, national_id, run, seed_city, student, write

HEADER = ["监护人姓名", "手机号", "关系", "学号", "身份证号"]
CHUNK_SIZES = (1, 2, 3, 5000)
TABLES = (Person, LoginIdentifier, Affiliation, GuardianLink)


def guardian(name: str, phone: int, relation: str, number: str, nid: int | None = None
             ) -> list[str]:
    return [name, f"137{phone:08d}", relation, number,
            national_id("19800101", nid) if nid else ""]


@pytest.fixture
def city(db: Database, settings: Settings, tmp_path: Path) -> Path:
    """The schools and classes, and eight pupils in two schools."""
    seed_city(db, settings, tmp_path, people=False)
    pupils = [student(f"K{n}", f"学生{n}", seq=n, klass=str(1 + n % 2)) for n in range(1, 6)]
    pupils += [student(f"K{n}", f"学生{n}", school="3100000002", grade="初一", seq=n)
               for n in range(6, 9)]
    assert run(db, settings, write(tmp_path / "pupils.csv", (STUDENT_HEADER, pupils)),
               Kind.students).status == "applied"
    return tmp_path


def _sizes(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t))
                for t in TABLES}


def _dry_then_real(db: Database, settings: Settings, path: Path, chunk_size: int
                   ) -> tuple[ImportResult, ImportResult, dict[str, int]]:
    """The dry run (which writes nothing), the real run, and what the real run wrote."""
    options = {"chunk_size": chunk_size, "skip_invalid": True, "workers": 0}
    before = _sizes(db)
    dry = run(db, settings, path, Kind.guardians, dry_run=True, **options)
    assert dry.status == "dry-run" and _sizes(db) == before
    real = run(db, settings, path, Kind.guardians, **options)
    after = _sizes(db)
    return dry, real, {name: after[name] - before[name] for name in after}


def _check(db: Database, settings: Settings, path: Path, chunk_size: int
           ) -> dict[str, int]:
    dry, real, wrote = _dry_then_real(db, settings, path, chunk_size)
    assert dry.diff.counts == real.diff.counts, (chunk_size, dry.diff.summary(),
                                                real.diff.summary())
    assert real.diff.counts["created"] == wrote["person"] + wrote["guardian_link"]
    return real.diff.counts


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_siblings_share_a_new_guardian(db: Database, settings: Settings, city: Path,
                                       chunk_size: int) -> None:
    rows = [guardian("张父", 1, "父亲", "K1"), guardian("李母", 2, "母亲", "K1"),
            guardian("张父", 1, "父亲", "K2"), guardian("王监", 3, "监护人", "K6"),
            guardian("张父", 1, "父亲", "K3"), guardian("李母", 2, "母亲", "K6"),
            guardian("张父", 1, "父亲", "K7")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert counts["created"] == 3 + 7 and counts["updated"] == counts["invalid"] == 0
    with db.session() as session:
        assert session.scalar(select(func.count()).where(Person.name == "张父")) == 1


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_guardian_listed_twice(db: Database, settings: Settings, city: Path,
                                 chunk_size: int) -> None:
    rows = [guardian("张父", 1, "父亲", "K1"), guardian("张父", 1, "父亲", "K2"),
            guardian("张父", 1, "父亲", "K1"), guardian("张父", 1, "父亲", "K2")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert counts["created"] == 1 + 2 and counts["invalid"] == 2


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_new_guardian_completed_by_later_rows(db: Database, settings: Settings, city: Path,
                                                chunk_size: int) -> None:
    """A later row names the new guardian differently or adds the national ID.

    (Rows in the chunk that creates the guardian do not change it, later chunks do: how many
    are updated depends on the chunk size, the same for both runs.)
    """
    rows = [guardian("张父", 1, "父亲", "K1"), guardian("张父", 1, "父亲", "K2"),
            guardian("张大父", 1, "父亲", "K3"), guardian("张大父", 1, "父亲", "K4", nid=7),
            guardian("张大父", 1, "父亲", "K5", nid=7), guardian("李母", 2, "母亲", "K5", nid=8),
            guardian("李母", 2, "母亲", "K6", nid=8)]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert counts["created"] == 2 + 7


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_known_guardians_changed_by_earlier_rows(db: Database, settings: Settings, city: Path,
                                                 chunk_size: int) -> None:
    """Guardians already in the directory: renamed, given a national ID, linked again."""
    first = [guardian("张父", 1, "父亲", "K1"), guardian("李母", 2, "母亲", "K2")]
    assert run(db, settings, write(city / "first.csv", (HEADER, first)),
               Kind.guardians).status == "applied"
    rows = [guardian("张大父", 1, "父亲", "K1"), guardian("张大父", 1, "父亲", "K3"),
            guardian("张大父", 1, "父亲", "K4"), guardian("李母", 2, "监护人", "K2", nid=8),
            guardian("李母", 2, "母亲", "K5", nid=8), guardian("李母", 2, "母亲", "K6")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert counts["created"] == 4 and counts["updated"] == 3 and counts["unchanged"] == 1


def test_a_new_guardian_found_again_by_national_id(db: Database, settings: Settings,
                                                   city: Path) -> None:
    """The same national ID with another phone, in a later chunk: the phone is added.

    (Row 3 then finds the guardian by the added phone; row 4, by the first phone, makes it
    the guardian's phone again: updated twice.)
    """
    rows = [guardian("张父", 1, "父亲", "K1", nid=7), guardian("张父", 4, "父亲", "K2", nid=7),
            guardian("张父", 4, "父亲", "K3"), guardian("张父", 1, "父亲", "K4")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), 1)
    assert counts["created"] == 1 + 4 and counts["updated"] == 2
    with db.session() as session:
        assert session.scalar(select(func.count()).where(Person.name == "张父")) == 1
