"""Guardians planned ahead: what a later chunk does to a guardian an earlier chunk wrote.

On PostgreSQL a guardians run plans each chunk on a second connection while the previous
chunk is written (``directory.importer.pipeline``), so a plan never sees the run's own writes:
it knows a guardian an earlier chunk created by its planned number, and the writer must give
the later chunk's links, affiliations and updates the guardian's real id, account and uid.
On SQLite the same cases run the sequential way; the outcome must be the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import Database
from core.field_crypto import open_
from core.settings import Settings
from directory.importer import Kind
from directory.models import NATIONAL_ID, Affiliation, GuardianLink, OrgUnit, Person
from tests.directory.cityfiles import run, write
from tests.directory.test_import_dry_run_counts import (
    HEADER,
    _check,
    city,  # noqa: F401 (fixture)
    guardian,
)
from tests.directory.test_import_dry_run_counts import national_id as nid_of

CHUNK_SIZES = (1, 2, 5000)


def _schools_of(db: Database, name: str) -> list[str]:
    """The codes of the units a guardian is currently affiliated with, one per affiliation."""
    with db.session() as session:
        return sorted(session.scalars(
            select(OrgUnit.code).join(Affiliation, Affiliation.org_unit_id == OrgUnit.id)
            .join(Person, Person.id == Affiliation.person_id)
            .where(Person.name == name, Affiliation.role == "guardian",
                   Affiliation.valid_to.is_(None))))


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_guardian_is_affiliated_once_per_school(db: Database, settings: Settings,
                                                   city: Path, chunk_size: int) -> None:  # noqa: F811
    """Children in two schools, in several chunks: one affiliation per school, never two."""
    first = [guardian("李母", 2, "母亲", "K2")]
    assert run(db, settings, write(city / "first.csv", (HEADER, first)),
               Kind.guardians).status == "applied"
    rows = [guardian("张父", 1, "父亲", "K1"), guardian("张父", 1, "父亲", "K3"),
            guardian("张父", 1, "父亲", "K6"), guardian("张父", 1, "父亲", "K7"),
            guardian("李母", 2, "母亲", "K4"), guardian("李母", 2, "母亲", "K6"),
            guardian("李母", 2, "母亲", "K8")]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), chunk_size)
    assert counts["created"] == 1 + 7
    schools = ["3100000001", "3100000002"]
    assert _schools_of(db, "张父") == schools
    assert _schools_of(db, "李母") == schools
    with db.session() as session:
        father = session.scalar(select(Person.id).where(Person.name == "张父"))
        children = session.scalars(select(GuardianLink.student_id)
                                   .where(GuardianLink.guardian_id == father)).all()
        assert len(children) == 4


def test_a_later_chunk_gives_a_new_guardian_a_national_id(db: Database, settings: Settings,
                                                          city: Path) -> None:  # noqa: F811
    """The national ID a later chunk adds is sealed under the uid the guardian was written
    with (a wrong uid would not open), and is found by its blind index."""
    rows = [guardian("张父", 1, "父亲", "K1"), guardian("张父", 1, "父亲", "K2", nid=7),
            guardian("张父", 1, "父亲", "K3", nid=7)]
    counts = _check(db, settings, write(city / "g.csv", (HEADER, rows)), 1)
    assert counts["created"] == 1 + 3 and counts["updated"] == 1
    with db.session() as session:
        father = session.scalars(select(Person).where(Person.name == "张父")).one()
        assert open_(settings, NATIONAL_ID, father) == nid_of("19800101", 7)
