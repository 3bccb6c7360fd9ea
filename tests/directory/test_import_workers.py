"""``idp import`` with worker processes, and one writing import at a time."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from core.db import Database
from core.field_crypto import open_
from core.settings import Settings, load_settings
from directory.importer import ImportBusy, Kind, workers
from directory.importer.lock import ADVISORY_KEY, MESSAGE
from directory.importer.runs import ImportRun
from directory.models import NATIONAL_ID, PHONE, GuardianLink, Person
from tests.conftest import TEST_MASTER_KEY
from tests.directory.cityfiles import (
    SCHOOLS,
    STUDENT_HEADER,
    STUDENTS,
    run,
    seed_city,
    student,
    write,
)
from tests.idp.test_cli import idp

GUARDIAN_HEADER = ["监护人姓名", "手机号", "关系", "学号"]


@pytest.fixture
def city(db: Database, settings: Settings, tmp_path: Path) -> Path:
    seed_city(db, settings, tmp_path, people=False)
    return tmp_path


def _students(folder: Path) -> Path:
    rows = [student(f"W{n:03d}", f"学生{n}", seq=n, phone=f"138{n:08d}") for n in range(1, 41)]
    rows[5][7] = "310101201403050000"  # a wrong check digit
    rows[12][3] = rows[11][3]  # a repeated student number
    rows[20][1] = "13"  # no such grade
    return write(folder / "students.csv", (STUDENT_HEADER, rows))


def _errors(path: Path | None) -> list[list[str]]:
    assert path is not None
    with path.open(encoding="utf-8-sig") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("pool", [1, 2])
def test_worker_processes_give_the_result_of_one_process(
        db: Database, settings: Settings, city: Path, monkeypatch: pytest.MonkeyPatch,
        pool: int) -> None:
    monkeypatch.setattr(workers, "POOL_AFTER", 10)  # a pool from the second batch on
    path = _students(city)
    alone = run(db, settings, path, Kind.students, dry_run=True, workers=0, chunk_size=10,
                errors_path=city / "alone.csv")
    pooled = run(db, settings, path, Kind.students, workers=pool, chunk_size=10,
                 skip_invalid=True, errors_path=city / "pooled.csv")
    assert pooled.diff.counts == alone.diff.counts
    assert pooled.diff.counts["created"] == 37 and pooled.diff.counts["invalid"] == 3
    assert _errors(pooled.errors_path) == _errors(alone.errors_path)
    with db.session() as session:
        people = session.scalars(select(Person).where(Person.name.like("学生%"))).all()
        assert len(people) == 37
        for person in people:  # sealed in a worker, bound to the uid the person got
            number = int(person.name.removeprefix("学生"))
            assert open_(settings, PHONE, person) == f"138{number:08d}"
            assert open_(settings, NATIONAL_ID, person).endswith(
                student("", "", seq=number)[7][-4:])
    again = run(db, settings, path, Kind.students, workers=2, chunk_size=10,
                skip_invalid=True, errors_path=city / "again.csv")
    assert again.diff.counts["created"] == 0 and again.diff.counts["unchanged"] == 37


def test_guardians_sharing_a_phone_across_batches_are_one_person(
        db: Database, settings: Settings, city: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "POOL_AFTER", 4)
    run(db, settings, _students(city), Kind.students, skip_invalid=True)
    rows = [["家长", f"137{n % 4:08d}", "母亲", f"w{n:03d}"] for n in (1, 2, 3, 4, 9, 10, 11, 14)]
    path = write(city / "guardians.csv", (GUARDIAN_HEADER, rows))
    result = run(db, settings, path, Kind.guardians, workers=2, chunk_size=2)
    assert result.status == "applied" and result.diff.counts["created"] == 12  # 4 + 8 links
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(GuardianLink)) == 8
        assert session.scalar(select(func.count()).where(Person.name == "家长")) == 4


@contextmanager
def _another_import(db: Database) -> Iterator[None]:
    """Hold what a running import holds: the advisory lock, or SQLite's write lock."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": ADVISORY_KEY})
                connection.commit()
            return
        connection.execute(text("DELETE FROM import_run WHERE 0"))  # takes the write lock
        try:
            yield
        finally:
            connection.rollback()


def test_a_second_import_fails_while_one_is_running(db: Database, settings: Settings,
                                                    city: Path) -> None:
    path = write(city / "students.csv", STUDENTS)
    with _another_import(db):
        with pytest.raises(ImportBusy, match="another import is running"):
            run(db, settings, path, Kind.students)
        dry = run(db, settings, path, Kind.students, dry_run=True)  # reads only: no lock
        assert dry.status == "dry-run" and dry.diff.counts["created"] == 3
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ImportRun)) == 2  # the seed
        assert session.scalar(select(func.count()).select_from(Person)) == 0
    assert run(db, settings, path, Kind.students).status == "applied"


def test_the_cli_names_the_running_import(tmp_path: Path) -> None:
    env = {"IDP_VAR_DIR": str(tmp_path / "var"), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    assert idp("db", "upgrade", env=env).returncode == 0
    database = Database(load_settings({**env, "IDP_LOG_LEVEL": "WARNING"}))
    path = write(tmp_path / "schools.csv", SCHOOLS)
    try:
        with _another_import(database):
            result = idp("import", str(path), env=env)
    finally:
        database.dispose()
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {MESSAGE}"
