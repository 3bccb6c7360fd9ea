"""Erasing the people whose retention period is over (directory.retention), and nobody else."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import exists, func, select, update

import migrations.models  # noqa: F401 - every table, as the command has them
from core.audit import AuditEvent
from core.db import Base, Database
from core.settings import Settings
from directory.apps import Consent
from directory.models import (
    Account,
    Affiliation,
    GuardianLink,
    OrgUnit,
    Person,
    PersonStatus,
    Role,
)
from directory.people import find_login_account
from directory.retention import erase_departed
from mfa.credentials import MfaCredential
from tests.conftest import PG_ADMIN_URL
from tests.directory.cityfiles import cli_env, run, seed_city, write
from tests.idp.test_cli import idp

TODAY = date(2027, 11, 1)


def _person(db: Database, name: str) -> Person:
    with db.session() as session:
        return session.scalar(select(Person).where(Person.name == name))


def _ids(db: Database, name: str) -> tuple[int, int, str, str]:
    """The person's id, account id, uid and the account's sub."""
    with db.session() as session:
        return session.execute(select(Person.id, Account.id, Person.uid, Account.sub)
                               .join(Account, Account.person_id == Person.id)
                               .where(Person.name == name)).one()


def _depart(db: Database, name: str, status: PersonStatus, ended: date) -> None:
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.name == name))
        person.status = status.value
        session.execute(update(Affiliation).where(Affiliation.person_id == person.id)
                        .values(valid_to=ended))
        session.scalar(select(Account).where(Account.person_id == person.id)).disabled = True


def _referring_rows(db: Database, person_id: int, account_id: int) -> dict[str, int]:
    """Rows of every table with a foreign key to this person or account."""
    found: dict[str, int] = {}
    with db.session() as session:
        for table in Base.metadata.sorted_tables:
            for key in table.foreign_keys:
                target = {"person": person_id, "account": account_id}.get(key.column.table.name)
                if target is None or table.name == "account":
                    continue
                count = session.scalar(select(func.count()).select_from(table)
                                       .where(key.parent == target))
                if count:
                    found[f"{table.name}.{key.parent.name}"] = count
    return found


@pytest.fixture
def city(db: Database, settings: Settings, tmp_path: Path) -> None:
    """The demo files' city: 张小明 (S001) and 刘小刚 (S003) have 张大伟 as guardian, 陈小红
    (S002) has 陈静; 王丽 teaches."""
    seed_city(db, settings, tmp_path)
    long_ago, lately = TODAY - timedelta(days=400), TODAY - timedelta(days=100)
    _depart(db, "张小明", PersonStatus.left, long_ago)
    _depart(db, "陈小红", PersonStatus.graduated, long_ago)
    _depart(db, "王丽", PersonStatus.left, lately)  # within the period: kept
    with db.session() as session:  # what signing in left behind
        account_id = _ids(db, "张小明")[1]
        session.add_all([MfaCredential(account_id=account_id, kind="totp"),
                         Consent(account_id=account_id, client_id="app", scope="openid")])


def test_the_departed_are_erased_and_nobody_else(db: Database, settings: Settings,
                                                 city) -> None:
    before = {name: _ids(db, name) for name in ("张小明", "陈小红", "陈静", "张大伟")}
    ids = {name: found[:2] for name, found in before.items()}
    assert _referring_rows(db, *ids["张小明"]).keys() >= {
        "affiliation.person_id", "guardian_link.student_id", "login_identifier.account_id",
        "mfa_credential.account_id", "consent.account_id"}

    dry = erase_departed(settings, db.sessions, days=365, actor="test", dry_run=True,
                         today=TODAY)
    assert dry.people == 2 and _person(db, "张小明") is not None  # nothing written

    done = erase_departed(settings, db.sessions, days=365, actor="test", batch=1,
                          today=TODAY)
    assert (done.people, done.guardians) == (2, 1)  # 陈静 had no other child
    with db.session() as session:
        for name in ("张小明", "陈小红", "陈静"):
            person_id, account_id = ids[name]
            assert _referring_rows(db, person_id, account_id) == {}, name
            person = session.get(Person, person_id)
            assert person.erased_at is not None and person.name == ""
            assert (person.national_id_enc, person.national_id_bidx, person.phone_enc,
                    person.phone_bidx, person.address_enc, person.birth_date,
                    person.gender) == (None,) * 7
            account = session.get(Account, account_id)
            assert account.disabled and account.password_hash is None
            assert account.signed_out_at is not None and account.sub == before[name][3]
        assert find_login_account(session, settings, "s001") is None  # free for someone new
        kept = session.get(Person, ids["张大伟"][0])  # still 刘小刚's guardian
        assert kept.erased_at is None and kept.name == "张大伟"
        assert session.scalar(select(func.count()).select_from(GuardianLink)
                              .where(GuardianLink.guardian_id == kept.id)) == 1
        places = dict(session.execute(
            select(OrgUnit.code, Affiliation.valid_to)
            .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
            .where(Affiliation.person_id == kept.id, Affiliation.role == "guardian")).all())
        assert places == {"3100000001": TODAY, "3100000002": None}  # 张小明's school: ended
        assert _person(db, "王丽").erased_at is None
        assert _person(db, "刘小刚").erased_at is None
        erased = sorted(session.scalars(select(AuditEvent.target).where(
            AuditEvent.action == "directory.person.erase")))
    assert erased == sorted(f"person:{before[n][2]}" for n in ("张小明", "陈小红", "陈静"))
    again = erase_departed(settings, db.sessions, days=365, actor="test", today=TODAY)
    assert (again.people, again.guardians) == (0, 0)


def test_a_departed_parent_of_a_pupil_is_kept(db: Database, settings: Settings, city) -> None:
    """A guardian who also left a post of their own is still a current pupil's parent."""
    _depart(db, "张大伟", PersonStatus.left, TODAY - timedelta(days=400))
    done = erase_departed(settings, db.sessions, days=365, actor="test", today=TODAY)
    assert done.people == 2  # 张小明, 陈小红 (and their guardian 陈静)
    assert _person(db, "张大伟").erased_at is None


def test_a_short_period_is_refused(db: Database, settings: Settings) -> None:
    with pytest.raises(ValueError, match="at least 30"):
        erase_departed(settings, db.sessions, days=7, actor="test")


def test_the_command(tmp_path: Path) -> None:
    from tests.conftest import TEST_MASTER_KEY

    env = {"IDP_VAR_DIR": str(tmp_path / "var"), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    assert idp("db", "upgrade", env=env).returncode == 0
    short = idp("erase-departed", "--days", "7", env=env)
    assert short.returncode == 2 and "Traceback" not in short.stderr
    dry = idp("erase-departed", "--days", "365", "--dry-run", env=env)
    assert dry.returncode == 0 and "0 people would be erased" in dry.stdout, dry.stderr
    real = idp("erase-departed", "--days", "365", env=env)
    assert real.returncode == 0 and "erased 0 people" in real.stdout, real.stderr


def test_a_guardian_who_once_taught_is_erased_with_their_last_child(
        db: Database, settings: Settings, city) -> None:
    """陈静 is 陈小红's only guardian and once taught (the post ended long ago, she left).
    Her child is erased; she has no child and no place of her own left, so she must go too,
    now or in a later run. She never does: _orphaned refuses anyone with any non-guardian
    affiliation, even an ended one, and _due refuses her for ever because her guardian
    affiliation at the erased child's school is never closed (still "current")."""
    with db.session() as session:
        chen = session.scalar(select(Person).where(Person.name == "陈静"))
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "3100000001"))
        session.add(Affiliation(person_id=chen.id, org_unit_id=school.id,
                                role=Role.teacher.value, valid_from=date(2020, 9, 1),
                                valid_to=TODAY - timedelta(days=800)))
        chen.status = PersonStatus.left.value
    erase_departed(settings, db.sessions, days=365, actor="test", today=TODAY)
    assert _person(db, "陈小红") is None or _person(db, "陈小红").erased_at is not None
    later = TODAY + timedelta(days=3650)  # ten years on, any number of runs
    erase_departed(settings, db.sessions, days=365, actor="test", today=later)
    with db.session() as session:
        chen = session.scalar(select(Person).where(Person.id == chen.id))
        guardian_places = session.scalars(select(Affiliation.valid_to).where(
            Affiliation.person_id == chen.id, Affiliation.role == Role.guardian.value)).all()
    assert chen.erased_at is not None, (
        f"{chen.name} kept for ever; her guardian places {guardian_places} never end")


@pytest.mark.skipif(not PG_ADMIN_URL, reason="PostgreSQL: an import does not hold SQLite's "
                    "write lock against it there")
def test_an_erasure_during_an_import_does_not_leave_a_placed_tombstone(
        db: Database, settings: Settings, city, tmp_path, monkeypatch) -> None:
    """张小明 left long ago and comes back: the students file places him again. The
    monthly erase-departed runs while that import is between planning and writing his
    chunk (it takes no import lock). The import then writes its plan onto the tombstone:
    status active, a current class, no name, no student number, erased_at set, so it is
    never erased again and SCIM shows a nameless user without userName."""
    from directory.importer import Kind, apply
    from tests.directory.cityfiles import STUDENT_HEADER, student

    tried: list[object] = []

    def erase_meanwhile(w, plan) -> None:
        if tried:
            return
        try:
            tried.append(erase_departed(settings, db.sessions, days=365, actor="test",
                                        today=TODAY).people)
        except Exception as refused:  # a fix may refuse while an import runs: fine
            tried.append(refused)

    monkeypatch.setattr(apply, "WRITE_STEPS", [erase_meanwhile, *apply.WRITE_STEPS])
    back = [student("S001", "张小明", seq=1, phone="13800138001")]
    result = run(db, settings, write(tmp_path / "back.csv", (STUDENT_HEADER, back)),
                 Kind.students, today=TODAY)
    assert tried and result.status == "applied"
    with db.session() as session:
        placed_tombstones = session.scalars(select(Person.id).where(
            Person.erased_at.is_not(None),
            exists().where(Affiliation.person_id == Person.id,
                           Affiliation.valid_to.is_(None)))).all()
    assert placed_tombstones == [], "an erased person was placed again by the import"


def test_a_guardian_whose_post_ended_lately_goes_once_the_period_is_over(
        db: Database, settings: Settings, city) -> None:
    """docs/operations.md: "a guardian goes with the last of their children, unless a place
    of their own (a teacher's) ended less than N days ago". 陈静 taught until 100 days ago;
    the import closing that post left her ``active`` (her guardian place was current:
    snapshot._close). Her only child is erased: she is kept, rightly, with no child and no
    current place. She must go once her own post ended N days ago, but she never does:
    _orphaned runs only when a child is erased, and _due takes departed statuses only."""
    with db.session() as session:
        chen = session.scalar(select(Person).where(Person.name == "陈静"))
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "3100000001"))
        session.add(Affiliation(person_id=chen.id, org_unit_id=school.id,
                                role=Role.teacher.value, valid_from=date(2020, 9, 1),
                                valid_to=TODAY - timedelta(days=100)))
        assert chen.status == PersonStatus.active.value
        chen_id = chen.id
    erase_departed(settings, db.sessions, days=365, actor="test", today=TODAY)
    with db.session() as session:
        assert session.get(Person, chen_id).erased_at is None  # her post ended lately
    for years in (1, 2, 10):  # the monthly runs, years on
        erase_departed(settings, db.sessions, days=365, actor="test",
                       today=TODAY + timedelta(days=365 * years))
    with db.session() as session:
        assert session.get(Person, chen_id).erased_at is not None, "kept for ever"


def test_a_guardian_with_a_child_left_stays_active(db: Database, settings: Settings,
                                                   city) -> None:
    """张大伟 keeps 刘小刚, who has no current class (so gives him no place as a guardian):
    erasing 张小明 must not mark him left, which would stop him signing in."""
    with db.session() as session:
        liu = session.scalar(select(Person).where(Person.name == "刘小刚"))
        for placed in session.scalars(select(Affiliation).where(
                Affiliation.person_id == liu.id)):
            session.delete(placed)
        zhang = session.scalar(select(Person).where(Person.name == "张大伟"))
        for placed in session.scalars(select(Affiliation).where(
                Affiliation.person_id == zhang.id)):
            session.delete(placed)
    erase_departed(settings, db.sessions, days=365, actor="test", today=TODAY)
    kept = _person(db, "张大伟")
    assert kept.erased_at is None and kept.status == PersonStatus.active.value


def test_nothing_is_erased_while_an_import_runs(db: Database, settings: Settings, city,
                                                monkeypatch, tmp_path) -> None:
    """The import lock held elsewhere: the function raises ImportBusy and the command
    ends in one line and exit code 2, erasing nobody."""
    from typer.testing import CliRunner

    from directory.importer.lock import ImportBusy, hold_import_lock
    from idp.cli import app

    cli_env(monkeypatch, db, settings, tmp_path)
    with db.sessions.begin() as importing:
        hold_import_lock(importing)
        with pytest.raises(ImportBusy):
            erase_departed(settings, db.sessions, days=365, actor="test", today=TODAY)
        result = CliRunner().invoke(app, ["erase-departed", "--days", "30"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert _person(db, "张小明").erased_at is None
