"""``idp rollover``: promote, graduate, disable after the grace period; dry run; idempotence."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from directory.models import Affiliation, IdentifierKind, OrgUnit
from directory.people import find_account
from directory.rollover import RolloverOptions, rollover
from tests.directory.cityfiles import STUDENT_HEADER, cli_env, run, seed_city, student, write

START = date(2027, 9, 1)


@pytest.fixture
def school_year(db: Database, settings: Settings, tmp_path: Path) -> Path:
    seed_city(db, settings, tmp_path, people=False)
    rows = [
        student("R1", "一年级生", grade="1", klass="2", seq=11),  # promoted, G2-2 created
        student("R6", "小学毕业", grade="6", seq=16),  # primary school: graduates
        student("R9", "初中毕业", school="3100000002", grade="9", seq=19),  # graduates
        student("R12", "高中毕业", school="3100000002", grade="12", seq=22),  # graduates
        student("R7", "一贯制", school="3100000003", grade="6", seq=26),  # has G7: promoted
    ]
    assert run(db, settings, write(tmp_path / "s.csv", (STUDENT_HEADER, rows))).ok
    return tmp_path


def _roll(db: Database, **options: object):
    options.setdefault("today", START)
    return rollover(db, RolloverOptions(year=2027, **options))


def _state(db: Database, number: str) -> tuple[str, bool, list[str]]:
    with db.session() as session:
        account = find_account(session, IdentifierKind.student_number, number)
        current = session.scalars(select(OrgUnit.code).join(Affiliation).where(
            Affiliation.person_id == account.person_id, Affiliation.valid_to.is_(None))).all()
        return account.person.status, account.disabled, list(current)


def test_promote_and_graduate(db: Database, school_year: Path) -> None:
    dry = _roll(db, dry_run=True)
    assert (dry.diff.counts["promoted"], dry.diff.counts["graduated"]) == (2, 3)
    assert _state(db, "R1") == ("active", False, ["3100000001-G1-2"])  # dry: nothing written

    assert dry.graduated_accounts == ()
    result = _roll(db)
    assert result.diff.counts == dry.diff.counts
    with db.session() as session:  # whose sessions `idp rollover` then ends (apps told)
        assert result.graduated_accounts == tuple(sorted(
            find_account(session, IdentifierKind.student_number, n).id
            for n in ("R6", "R9", "R12")))
    assert _state(db, "R1") == ("active", False, ["3100000001-G2-2"])
    assert _state(db, "R7") == ("active", False, ["3100000003-G7-1"])
    for number in ("R6", "R9", "R12"):
        assert _state(db, number) == ("graduated", False, [])  # account kept for now
    with db.session() as session:
        person = find_account(session, IdentifierKind.student_number, "R1").person_id
        history = session.execute(select(Affiliation.valid_from, Affiliation.valid_to).where(
            Affiliation.person_id == person).order_by(Affiliation.id)).all()
        assert history == [(date(2026, 9, 10), START), (START, None)]
        assert session.scalar(select(OrgUnit.name).where(OrgUnit.code == "3100000001-G2"))
        assert "directory.rollover" in session.scalars(select(AuditEvent.action)).all()


def test_second_run_for_the_same_year_changes_nothing(db: Database, school_year: Path) -> None:
    _roll(db)
    again = _roll(db)
    assert again.diff.empty and again.graduated_accounts == ()
    assert _state(db, "R1")[2] == ["3100000001-G2-2"]


def test_graduates_are_disabled_after_the_grace_period(db: Database, school_year: Path) -> None:
    _roll(db, grace_days=180)
    early = _roll(db, grace_days=180, today=START + timedelta(days=179))
    assert early.diff.counts["disabled"] == 0
    late = _roll(db, grace_days=180, today=START + timedelta(days=181), dry_run=True)
    assert late.diff.counts["disabled"] == 3
    assert _state(db, "R6")[1] is False
    _roll(db, grace_days=180, today=START + timedelta(days=181))
    assert _state(db, "R6") == ("graduated", True, [])
    assert _state(db, "R1")[1] is False
    assert _roll(db, grace_days=180, today=START + timedelta(days=200)).diff.empty


def test_final_grades_are_configurable(db: Database, school_year: Path) -> None:
    result = _roll(db, final_grades=frozenset({12}))
    assert result.diff.counts["graduated"] == 1  # only grade 12
    assert _state(db, "R6")[2] == ["3100000001-G7-1"]


def test_a_rollover_fails_at_once_while_an_import_runs(db: Database, settings: Settings,
                                                       school_year: Path, monkeypatch) -> None:
    """The import lock held (an import, erase-departed or another rollover): ImportBusy,
    nothing written, and `idp rollover` says so in one line with exit code 2. A dry run
    takes no lock, as an import's."""
    from typer.testing import CliRunner

    from directory.importer.lock import MESSAGE, ImportBusy, hold_import_lock
    from idp.cli import app

    cli_env(monkeypatch, db, settings, school_year)
    with db.sessions.begin() as importing:
        hold_import_lock(importing)
        with pytest.raises(ImportBusy, match="another import is running"):
            _roll(db)
        assert _roll(db, dry_run=True).diff.counts["promoted"] == 2
        result = CliRunner().invoke(app, ["rollover", "--year", "2027"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip() == f"error: {MESSAGE}"
    assert _state(db, "R1") == ("active", False, ["3100000001-G1-2"])
    assert _roll(db).diff.counts["promoted"] == 2


def test_two_rollovers_at_once_promote_once(db: Database, school_year: Path,
                                            monkeypatch) -> None:
    """Both read the same placements: each student was promoted twice (two current
    classes). The second now stops at once (ImportBusy); the first finishes."""
    import threading

    from directory import rollover as rollover_module
    from directory.importer.lock import ImportBusy

    first_read, second_done = threading.Event(), threading.Event()
    handle = rollover_module._Rollover.handle

    def slow_handle(self, batch):  # the first run waits, its placements read, for the second
        if threading.current_thread().name == "first":
            first_read.set()
            second_done.wait(30)
        return handle(self, batch)

    monkeypatch.setattr(rollover_module._Rollover, "handle", slow_handle)
    outcome: dict[str, object] = {}

    def roll(name: str) -> None:
        try:
            outcome[name] = _roll(db)
        except ImportBusy as busy:
            outcome[name] = busy
        finally:
            if name == "second":
                second_done.set()

    first = threading.Thread(target=roll, args=("first",), name="first")
    first.start()
    assert first_read.wait(30)
    roll("second")
    first.join(60)
    assert isinstance(outcome["second"], ImportBusy)
    assert outcome["first"].diff.counts["promoted"] == 2
    with db.session() as session:
        current = session.scalars(select(Affiliation.person_id).where(
            Affiliation.role == "student", Affiliation.valid_to.is_(None))).all()
    assert len(current) == len(set(current)) == 2  # R1 and R7, once each
