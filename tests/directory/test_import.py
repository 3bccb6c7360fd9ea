"""``idp import``: creating, updating, moving and deactivating; every bad-input case."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.audit import AuditEvent
from core.db import Database
from core.field_crypto import open_
from core.settings import Settings
from directory.importer import FileProblem, Kind, apply
from directory.importer.runs import ImportRun
from directory.models import (
    NATIONAL_ID,
    PHONE,
    Account,
    Affiliation,
    GuardianLink,
    LoginIdentifier,
    OrgUnit,
    Person,
)
from directory.people import find_account
from tests.directory.cityfiles import (
    CLASSES,
    SCHOOLS,
    STUDENT_HEADER,
    STUDENTS,
    TODAY,
    national_id,
    run,
    seed_city,
    student,
    write,
)

DIRECTORY_TABLES = (Person, Account, LoginIdentifier, Affiliation, GuardianLink, OrgUnit)


def _errors(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _snapshot_of_directory(db: Database) -> dict[str, list]:
    with db.session() as session:
        return {m.__tablename__: [tuple(r) for r in session.execute(
            select(m.__table__).order_by(*m.__table__.primary_key.columns))]
            for m in DIRECTORY_TABLES}


def _current(db: Database, number: str) -> list[tuple[str, str]]:
    with db.session() as session:
        account = find_account(session, *_kind(number))
        return [(u.code, a.role) for a, u in session.execute(
            select(Affiliation, OrgUnit).join(OrgUnit)
            .where(Affiliation.person_id == account.person_id, Affiliation.valid_to.is_(None)))]


def _kind(number: str):
    from directory.models import IdentifierKind

    kind = IdentifierKind.student_number if number.startswith("S") else \
        IdentifierKind.teacher_number
    return kind, number


@pytest.fixture
def city(db: Database, settings: Settings, tmp_path: Path) -> Path:
    seed_city(db, settings, tmp_path)
    return tmp_path


def test_the_city_is_created_with_pii_sealed(db: Database, settings: Settings, city: Path
                                             ) -> None:
    with db.session() as session:
        account = find_account(session, *_kind("S001"))
        person = account.person
        assert account.password_hash is None  # activates or resets later
        assert open_(settings, NATIONAL_ID, person) == national_id("20140305", 1)
        assert open_(settings, PHONE, person) == "13800138001"
        assert person.national_id_enc.startswith("sm4gcm.")
        assert "13800138001" not in person.phone_enc
        assert session.scalar(select(func.count()).select_from(GuardianLink)) == 3
        teacher = find_account(session, *_kind("T001"))
        kinds = sorted(i.kind for i in teacher.identifiers)
        assert kinds == ["phone", "teacher_number"]
        phone_login = next(i for i in teacher.identifiers if i.kind == "phone")
        assert phone_login.value == teacher.person.phone_bidx  # the blind index, not the number
        guardians = session.scalars(select(Person).where(Person.name == "张大伟")).all()
        assert len(guardians) == 1  # two children, one guardian
    assert _current(db, "S001") == [("3100000001-G1-1", "student")]
    assert _current(db, "T001") == [("3100000001", "teacher")]


def test_people_get_time_ordered_uids_and_accounts_random_subs(db: Database, settings: Settings,
                                                                city: Path) -> None:
    """A person's uid is a UUIDv7 (a bulk import appends to its unique index); ``sub``,
    which every app sees, stays random (a UUIDv4 tells nobody when the account was made)."""
    import uuid

    with db.session() as session:
        people = session.execute(select(Person.uid, Account.sub).join(Account)).all()
    assert len(people) > 5
    assert {uuid.UUID(uid).version for uid, _ in people} == {7}
    assert {uuid.UUID(sub).version for _, sub in people} == {4}


def test_second_import_is_an_empty_diff_and_writes_nothing(
        db: Database, settings: Settings, city: Path) -> None:
    before = _snapshot_of_directory(db)
    for name, kind in (("schools", Kind.schools), ("classes", Kind.classes),
                       ("students", Kind.students), ("teachers", Kind.teachers),
                       ("guardians", Kind.guardians)):
        result = run(db, settings, city / f"{name}.csv", kind)
        assert result.status == "unchanged", (name, result.diff.summary())
        assert result.diff.empty and result.previous_run_id is not None
    assert _snapshot_of_directory(db) == before
    with db.session() as session:
        statuses = session.scalars(select(ImportRun.status).order_by(ImportRun.id)).all()
        actions = session.scalars(select(AuditEvent.action)).all()
    assert statuses == ["applied"] * 5 + ["unchanged"] * 5
    assert actions.count("directory.import") == 10


def test_dry_run_shows_the_diff_and_writes_nothing(db: Database, settings: Settings,
                                                   tmp_path: Path) -> None:
    run(db, settings, write(tmp_path / "s.csv", SCHOOLS))
    before = _snapshot_of_directory(db)
    result = run(db, settings, write(tmp_path / "c.csv", CLASSES), dry_run=True)
    assert result.status == "dry-run" and result.diff.counts["created"] == len(CLASSES[1])
    assert any("3100000001-G1-1" in line for line in result.diff.lines())
    assert _snapshot_of_directory(db) == before
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ImportRun)) == 1


def test_dry_run_of_a_file_imported_before_names_that_run(db: Database, settings: Settings,
                                                         tmp_path: Path) -> None:
    schools = write(tmp_path / "s.csv", SCHOOLS)
    first = run(db, settings, schools)
    again = run(db, settings, schools, dry_run=True)
    assert again.status == "dry-run" and again.previous_run_id == first.run_id
    assert again.diff.empty


def test_transfer_keeps_the_account_and_the_history(db: Database, settings: Settings,
                                                    city: Path) -> None:
    with db.session() as session:
        account_id = find_account(session, *_kind("S002")).id
    moved = (STUDENT_HEADER, [student("S002", "陈小红", school="3100000002", grade="初一",
                                      seq=2)])
    result = run(db, settings, write(city / "moved.csv", moved))
    assert result.diff.counts["moved"] == 1 and result.status == "applied"
    assert "3100000001-G1-2 -> 3100000002-G7-1" in "\n".join(result.diff.lines())
    with db.session() as session:
        account = find_account(session, *_kind("S002"))
        assert account.id == account_id
        history = session.execute(
            select(OrgUnit.code, Affiliation.valid_from, Affiliation.valid_to).join(OrgUnit)
            .where(Affiliation.person_id == account.person_id).order_by(Affiliation.id)).all()
    assert history == [("3100000001-G1-2", TODAY, TODAY), ("3100000002-G7-1", TODAY, None)]


def test_changed_fields_are_updated(db: Database, settings: Settings, city: Path) -> None:
    renamed = (STUDENT_HEADER, [student("S001", "张晓明", seq=1, phone="13800138009")])
    result = run(db, settings, write(city / "renamed.csv", renamed))
    assert result.diff.counts["updated"] == 1
    assert "name, phone" in result.diff.lines()[1]
    with db.session() as session:
        person = find_account(session, *_kind("S001")).person
        assert person.name == "张晓明"
        assert open_(settings, PHONE, person) == "13800138009"


def test_snapshot_deactivates_people_missing_from_covered_schools(
        db: Database, settings: Settings, city: Path) -> None:
    only_s001 = (STUDENT_HEADER, [STUDENTS[1][0]])
    dry = run(db, settings, write(city / "snap.csv", only_s001), snapshot=True, dry_run=True)
    assert dry.diff.counts["deactivated"] == 1  # S002 left school 1; S003 (school 2) untouched
    assert dry.left_accounts == ()  # nothing written: nobody's sessions to end
    result = run(db, settings, city / "snap.csv", snapshot=True)
    assert result.diff.counts["deactivated"] == 1 and result.status == "applied"
    with db.session() as session:
        s002 = find_account(session, *_kind("S002"))
        assert s002.person.status == "left" and not s002.disabled  # never deleted
        assert result.left_accounts == (s002.id,)  # for ``idp import`` to end its sessions
        assert find_account(session, *_kind("S003")).person.status == "active"
    assert _current(db, "S002") == []
    again = run(db, settings, city / "snap.csv", snapshot=True)
    assert again.status == "unchanged" and again.left_accounts == ()
    back = run(db, settings, city / "students.csv")  # S002 returns: reactivated
    assert back.diff.counts["moved"] == 1
    with db.session() as session:
        assert find_account(session, *_kind("S002")).person.status == "active"


def test_snapshot_never_deactivates_someone_whose_row_is_invalid(
        db: Database, settings: Settings, city: Path) -> None:
    broken = student("S002", "陈小红", klass="2", seq=2)
    broken[6] = "2014-02-30"
    rows = (STUDENT_HEADER, [STUDENTS[1][0], broken])
    result = run(db, settings, write(city / "snap.csv", rows), snapshot=True, skip_invalid=True)
    assert result.diff.counts["deactivated"] == 0 and result.errors == 1


def test_a_rejected_snapshot_names_nobody_who_left(db: Database, settings: Settings,
                                                    city: Path) -> None:
    """Rejected (an invalid row, no --skip-invalid): nothing written, so no sessions to end."""
    broken = student("S009", "王小明", seq=9)
    broken[6] = "2014-02-30"
    result = run(db, settings, write(city / "snap.csv", (STUDENT_HEADER, [
        STUDENTS[1][0], broken])), snapshot=True)
    assert result.status == "rejected" and result.left_accounts == ()
    assert _current(db, "S002") != []


def test_a_snapshot_missing_most_of_a_school_is_refused(db: Database, settings: Settings,
                                                        city: Path) -> None:
    """A truncated file, or an export of one class, would mark the rest of the school as
    left and sign them out: more than 10 % of a school's people (and more than 20) leaving
    refuses the run, dry or real, until the operator says it is meant."""
    pupils = [student(f"P{n:03d}", "学生", seq=500 + n) for n in range(30)]
    assert run(db, settings, write(city / "all.csv", (STUDENT_HEADER, pupils))).ok
    few = write(city / "few.csv", (STUDENT_HEADER, [STUDENTS[1][0], *pupils[:8]]))
    before = _snapshot_of_directory(db)
    for dry_run in (True, False):  # 23 of the school's 32 pupils would leave
        with pytest.raises(FileProblem, match=r"would mark 23 of the 32 people of school "
                                              r"3100000001 as left \(more than 10%\)"):
            run(db, settings, few, snapshot=True, dry_run=dry_run)
    assert _snapshot_of_directory(db) == before
    dry = run(db, settings, few, snapshot=True, dry_run=True, leavers_percent=100)
    assert dry.diff.counts["deactivated"] == 23
    assert run(db, settings, few, snapshot=True, leavers_percent=75).diff.counts[
        "deactivated"] == 23


def test_the_leavers_limit_counts_a_school_as_it_was_before_the_run(
        db: Database, settings: Settings, city: Path) -> None:
    """The real run has written the file's new pupils when it counts who leaves: they do
    not raise the limit (10 new pupils would let one more leave), the dry run and the real
    run refuse the same file."""
    pupils = [student(f"P{n:03d}", "学生", seq=300 + n) for n in range(200)]
    assert run(db, settings, write(city / "all.csv", (STUDENT_HEADER, pupils))).ok
    new = [student(f"N{n:03d}", "新生", seq=600 + n) for n in range(10)]
    path = write(city / "snap.csv", (STUDENT_HEADER, [*STUDENTS[1][:2], *pupils[:179], *new]))
    for dry_run in (True, False):  # 21 of the 202 (10.4 %)
        with pytest.raises(FileProblem, match="would mark 21 of the 202 people"):
            run(db, settings, path, snapshot=True, dry_run=dry_run)


def test_snapshot_is_for_people_only(db: Database, settings: Settings, tmp_path: Path) -> None:
    from directory.importer import FileProblem

    with pytest.raises(FileProblem, match="--snapshot applies to students and teachers"):
        run(db, settings, write(tmp_path / "s.csv", SCHOOLS), snapshot=True)


def _rejected(db: Database, settings: Settings, folder: Path, rows: list[list[str]],
              header: list[str] = STUDENT_HEADER) -> list[dict[str, str]]:
    before = _snapshot_of_directory(db)
    result = run(db, settings, write(folder / "bad.csv", (header, rows)))
    assert result.status == "rejected" and not result.ok
    assert _snapshot_of_directory(db) == before
    assert result.errors_path == folder / "bad.errors.csv"
    return _errors(result.errors_path)


def test_duplicated_rows_are_errors(db: Database, settings: Settings, city: Path) -> None:
    new = student("S100", "新同学", seq=100)
    twin = student("S101", "另一个", seq=100)  # another number, the same national ID
    errors = _rejected(db, settings, city, [new, new, twin])
    assert [(e["row"], e["message"]) for e in errors] == [
        ("3", "student_number repeats row 2"), ("4", "national_id repeats row 2")]


def test_a_national_id_of_someone_else_is_an_error(db: Database, settings: Settings,
                                                    city: Path) -> None:
    errors = _rejected(db, settings, city, [student("S100", "冒名", seq=1)])  # S001's ID
    assert errors[0]["message"] == "national ID already belongs to another person in the " \
                                   "directory"
    assert errors[0]["value"] == "310***********" + national_id("20140305", 1)[-4:]


def test_a_number_of_someone_else_is_an_error(db: Database, settings: Settings, city: Path
                                              ) -> None:
    errors = _rejected(db, settings, city, [student("S001", "张小明", seq=77)])
    assert "student_number s001 already belongs to another person" in errors[0]["message"]


def test_a_number_that_is_another_persons_sign_in_name_is_an_error(
        db: Database, settings: Settings, city: Path) -> None:
    """The sign-in form reads a typed name as any kind, student number first: a pupil
    given a teacher's number would take over that teacher's sign-in."""
    errors = _rejected(db, settings, city, [student("T001", "冒号同学", seq=88)])
    assert errors[0]["message"] == ("student_number t001 is already another person's "
                                    "sign-in name (a username or another kind of number)")


def test_a_teacher_phone_login_of_someone_else_is_an_error(
        db: Database, settings: Settings, city: Path) -> None:
    errors = _rejected(db, settings, city, [["3100000001", "T009", "周老师", "13900139001"]],
                       header=["学校标识码", "工号", "姓名", "手机号"])
    assert errors[0]["message"] == "phone is already the login of another person"
    assert errors[0]["value"] == "139****9001"


def test_unknown_school_and_class_are_errors(db: Database, settings: Settings, city: Path
                                             ) -> None:
    errors = _rejected(db, settings, city, [
        student("S100", "甲", school="9999999999", seq=100),
        student("S101", "乙", grade="5", seq=101)])
    assert errors[0]["message"].startswith("school 9999999999 is not in the directory")
    assert errors[1]["message"].startswith("class 3100000001-G5-1 is not in the directory")
    class_errors = _rejected(db, settings, city, [["9999999999", "1", "1"]],
                             header=["学校标识码", "年级", "班级"])
    assert class_errors[0]["message"].startswith("school 9999999999 is not in the directory")


def test_bad_cells_are_explained_in_plain_words_with_pii_masked(
        db: Database, settings: Settings, city: Path) -> None:
    bad_check = national_id("20140305", 200)[:-1] + ("0" if national_id("20140305", 200)[-1]
                                                     != "0" else "1")
    rows = [
        ["3100000001", "1", "1", "S200", "甲", "男", "2014-03-05", bad_check, ""],
        ["3100000001", "1", "1", "S201", "乙", "男", "2014/13/01", "", "12345"],
        ["3100000001", "十三年级", "1", "S202", "", "X", "", "", ""],
        ["3100000001", "1", "1", "S203", "丙丙丙", "女", "2014-03-06",
         national_id("20140305", 203), ""],
    ]
    errors = _rejected(db, settings, city, rows)
    messages = {(e["row"], e["column"]): e["message"] for e in errors}
    assert messages[("2", "national_id (身份证号)")] == "national_id (身份证号) national ID " \
        "check digit is wrong"
    assert "is not a real date" in messages[("3", "birth_date (出生日期)")]
    assert "not a mainland mobile number" in messages[("3", "phone (手机号)")]
    assert "not a grade from 1 to 12" in messages[("4", "grade (年级)")]
    assert messages[("4", "name (姓名)")] == "name (姓名) is empty"
    assert "must be 男 or 女" in messages[("4", "gender (性别)")]
    assert messages[("5", "birth_date (出生日期)")].startswith("birth date differs")
    text = (city / "bad.errors.csv").read_text(encoding="utf-8-sig")
    assert bad_check not in text and "丙丙丙" not in text and "12345" not in text


def test_a_row_that_lost_a_cell_shows_no_national_id_or_phone_in_full(
        db: Database, settings: Settings, city: Path) -> None:
    """Without its gender cell the row's national ID lands in the birth date column and its
    phone in the national ID's: masked all the same, by their shape."""
    nid = national_id("20140305", 210)
    errors = _rejected(db, settings, city, [
        ["3100000001", "1", "1", "S210", "张小明", "2014-03-05", nid, "13800138001"]])
    text = (city / "bad.errors.csv").read_text(encoding="utf-8-sig")
    assert errors and nid not in text and "13800138001" not in text
    assert nid[:3] + "*" * 11 + nid[-4:] in text


def test_a_national_id_quoted_by_a_check_against_the_directory_is_masked(
        db: Database, settings: Settings, city: Path) -> None:
    """A guardian's row whose student number is a national ID nobody has: the error
    ("student ... is not in the directory") quotes it, masked like the cell checks'."""
    from tests.directory.cityfiles import GUARDIANS

    nid = national_id("20140305", 901)
    result = run(db, settings, write(city / "g.csv", (GUARDIANS[0], [
        ["张大伟", "13700137001", "父亲", nid]])), Kind.guardians)
    text = result.errors_path.read_text(encoding="utf-8-sig")
    assert nid not in text and nid[:3] + "*" * 11 + nid[-4:] in text


@pytest.mark.parametrize("cell", ["备注" * 21 + "x" + national_id("20140305", 902),  # past 60
                                  national_id("20140305", 903) + "7"])  # a digit too many
def test_a_national_id_cut_short_or_run_on_is_masked(cell: str) -> None:
    from directory.importer.rows import shown

    digits = "".join(ch for ch in cell if ch.isdigit())
    assert digits[:17] not in shown("birth_date", cell)  # 17 digits give the 18th


def test_a_password_in_the_hash_column_is_never_shown(
        db: Database, settings: Settings, city: Path) -> None:
    errors = _rejected(db, settings, city, [[*student("S211", "张小明", seq=211),
                                             "Secret-Pa55word"]],
                       header=[*STUDENT_HEADER, "password_hash"])
    assert errors[0]["message"].startswith("password_hash (密码哈希) unknown legacy hash kind;")
    text = (city / "bad.errors.csv").read_text(encoding="utf-8-sig")
    assert "Secret" not in text and "Pa55word" not in text


@pytest.mark.parametrize("payload", ['=HYPERLINK("http://evil.example/","x")',
                                     "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
                                     "\t=1+1"])
def test_no_cell_of_the_error_file_is_a_formula(db: Database, settings: Settings,
                                                city: Path, payload: str) -> None:
    """What an import file held comes back in the error file as text that Excel and WPS
    never run (a school code, a name whose mask keeps its first character)."""
    _rejected(db, settings, city, [[payload, "第一小学"]], header=["学校标识码", "学校名称"])
    _rejected(db, settings, city, [student("S212", payload + "x" * 200, seq=212)])
    for error in _errors(city / "bad.errors.csv"):
        assert not error["value"].startswith(("=", "+", "-", "@", "\t")), error
        assert error["value"].startswith("'") or not error["value"], error


def test_codes_and_hashes_too_long_to_store_are_row_errors(
        db: Database, settings: Settings, city: Path) -> None:
    """Found by the row checks, the dry run's too, not by the database as it writes
    (PostgreSQL refused them in the middle of the import)."""
    long_school = "A" * 58  # its class 7-10 would be 64 + 1 characters
    errors = _rejected(db, settings, city, [[long_school, "长代码学校"]],
                       header=["学校标识码", "学校名称"])
    assert "longer than 57 characters" in errors[0]["message"]
    assert run(db, settings, write(city / "ok.csv", (["学校标识码", "学校名称"],
                                                     [["A" * 57, "长代码学校"]]))).ok
    assert run(db, settings, write(city / "c.csv", (["学校标识码", "年级", "班级"],
                                                    [["A" * 57, "12", "99"]]))).ok
    salted = "sha256:" + "s" * 300 + ":" + "0" * 64
    errors = _rejected(db, settings, city, [[*student("S213", "张小明", seq=213), salted]],
                       header=[*STUDENT_HEADER, "password_hash"])
    assert "too long to store" in errors[0]["message"]


def test_skip_invalid_applies_the_valid_rows(db: Database, settings: Settings, city: Path
                                             ) -> None:
    rows = [student("S300", "好", seq=300), student("S301", "", seq=301)]
    result = run(db, settings, write(city / "mixed.csv", (STUDENT_HEADER, rows)),
                 skip_invalid=True, errors_path=city / "e.csv")
    assert result.status == "applied" and result.ok and result.errors == 1
    assert result.diff.counts["created"] == 1 and result.diff.counts["invalid"] == 1
    assert (city / "e.csv").exists()


def test_a_failure_mid_apply_leaves_nothing_half_applied(
        db: Database, settings: Settings, city: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [student(f"S{n}", "学生", seq=n) for n in range(400, 430)]
    path = write(city / "many.csv", (STUDENT_HEADER, rows))
    before = _snapshot_of_directory(db)
    real, calls = apply.write_moves, []

    def failing(writer, plan) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real(writer, plan)

    monkeypatch.setattr(apply, "WRITE_STEPS", [failing if s is real else s
                                                for s in apply.WRITE_STEPS])
    with pytest.raises(RuntimeError, match="disk full"):
        run(db, settings, path, chunk_size=10)
    assert len(calls) == 2  # the first chunk was written, then the second failed
    assert _snapshot_of_directory(db) == before
    with db.session() as session:
        assert session.scalar(select(ImportRun.status)) is None or session.scalars(
            select(ImportRun.status).order_by(ImportRun.id.desc())).first() == "failed"


def test_guardian_rows_are_checked(db: Database, settings: Settings, city: Path) -> None:
    header = ["监护人姓名", "手机号", "关系", "学号"]
    errors = _rejected(db, settings, city, [
        ["某人", "13700137009", "父亲", "S999"], ["某人", "13700137009", "叔叔", "S001"],
        ["某人", "", "父亲", "S001"]], header=header)
    by_row = {e["row"]: e["message"] for e in errors}
    assert by_row["2"].startswith("student s999 is not in the directory")
    assert by_row["3"].startswith("relation (关系) must be")
    assert by_row["4"] == "phone (手机号) is empty"


def test_legacy_password_hash_column(db: Database, settings: Settings, city: Path) -> None:
    from core.passwords import Passwords

    header = [*STUDENT_HEADER, "password_hash"]
    row = [*student("S500", "旧系统", seq=500), "md5:5f4dcc3b5aa765d61d8327deb882cf99"]
    assert run(db, settings, write(city / "p.csv", (header, [row]))).status == "applied"
    with db.session() as session:
        stored = find_account(session, *_kind("S500")).password_hash
    assert Passwords(settings.password_scheme).verify(stored, "password").ok


def test_an_import_makes_full_garbage_collections_rare_while_it_runs(
        db: Database, settings: Settings, tmp_path: Path) -> None:
    import gc

    from core.gc_policy import BATCH_THRESHOLD2
    from directory.importer import ImportOptions, import_file
    from tests.directory.cityfiles import SCHOOLS, TODAY, write

    before = gc.get_threshold()
    during: list[int] = []
    path = write(tmp_path / "schools.csv", SCHOOLS)
    result = import_file(db, settings, path, ImportOptions(kind=Kind.schools, today=TODAY),
                         progress=lambda done: during.append(gc.get_threshold()[2]))
    assert result.status == "applied"
    assert during and set(during) == {max(before[2], BATCH_THRESHOLD2)}
    assert gc.get_threshold() == before


def test_a_new_teacher_number_lifts_a_suspension_of_sms_codes(
        db: Database, settings: Settings, city: Path) -> None:
    """A stolen phone's number suspended (mfa.reset with ``phone``): the import that gives
    the teacher another phone login number lifts it; the same number again does not."""
    from core.db import utcnow

    def suspend() -> None:
        with db.session() as session:
            find_account(session, *_kind("T001")).sms_suspended_at = utcnow()

    def suspended() -> bool:
        with db.session() as session:
            return find_account(session, *_kind("T001")).sms_suspended_at is not None

    header = ["学校标识码", "工号", "姓名", "手机号"]
    suspend()
    same = run(db, settings, write(city / "same.csv", (header, [
        ["3100000001", "T001", "王丽", "13900139001"]])))
    assert same.status == "unchanged" and suspended()
    other = run(db, settings, write(city / "other.csv", (header, [
        ["3100000001", "T001", "王丽", "13900139011"]])))
    assert other.status == "applied" and not suspended()
    suspend()
    renamed = run(db, settings, write(city / "renamed.csv", (header, [
        ["3100000001", "T001", "王丽丽", "13900139011"]])))  # a change, not of the number
    assert renamed.status == "applied" and suspended()
