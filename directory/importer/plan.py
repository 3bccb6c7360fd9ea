"""Planning: what a chunk of valid rows changes in the directory (the diff, as operations).

A planner turns a chunk of parsed rows into a :class:`ChunkPlan`: the
operations to write (``apply.py``), the diff to show, and the errors only the
directory can reveal. Each kind's planner is an ordered list of small steps
(``STEPS``), each a function of the chunk's state.

Decisions:

- People are matched by their student or teacher number (guardians by their
  phone login, then by national ID). A national ID that belongs to another
  person, or a number whose person has another national ID, is an error: the
  file and the directory disagree about who someone is, and only a person can
  settle that.
- A person in another class, school or role than the file says is **moved**:
  the current affiliation is closed (``valid_to`` = the import date) and a new
  one opened. History is never overwritten.
- A person whose status is ``left``, ``graduated`` or ``transferred`` and who
  appears again is reactivated (status ``active``, account enabled). A
  ``suspended`` person stays suspended: suspension is an administrator's act.
- Teachers' phone numbers become a phone login (stored as its blind index);
  students' do not: a student's phone column is usually a parent's, shared by
  siblings.
- A guardians chunk is resolved row after row, each row seeing what the earlier rows
  planned (a new guardian, a phone or national ID given to one) as a later chunk sees it
  through ``recall``: the result does not depend on the chunk size. The same guardian and
  student a second time (through another phone or national ID) is an error, as a repeated
  row is.
- A password hash in the file is used only for new accounts: an existing
  account's password is the person's, not the file's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.orm import Session

from core.field_crypto import Sealer
from core.settings import Settings
from directory.identifiers import NAME_KINDS
from directory.importer import lookups, recall
from directory.importer.columns import ALIASES, Kind, label
from directory.importer.diff import Change, Diff
from directory.importer.ledger import Ledger
from directory.importer.rows import (
    CLASS_CODE,
    GRADE_NAMES,
    ClassRow,
    GuardianRow,
    ParsedRow,
    PersonRow,
    RowError,
    SchoolRow,
    grade_code,
    mask_name,
)
from directory.importer.units import Unit, Units
from directory.importer.workers import Checked, Sealed
from directory.models import IdentifierKind, OrgKind, PersonStatus, Role

REACTIVATED_FROM = {PersonStatus.left.value, PersonStatus.graduated.value,
                    PersonStatus.transferred.value}
DEFAULT_CITY = "CITY"  # the root created when a district arrives and no city exists


@dataclass(slots=True)
class NewPerson:
    row: int
    name: str
    gender: str | None
    birth_date: date | None
    national_id: str | None
    phone: str | None
    logins: list[tuple[str, str]]  # (identifier kind, normalised value or blind index)
    password_hash: str | None
    unit: Unit | None
    role: str
    person_id: int | None = None  # set when written
    sealed: Sealed | None = None  # sealed ahead by a worker (uid and columns)


@dataclass(slots=True)
class PersonUpdate:
    known: lookups.Known
    values: dict[str, object] = field(default_factory=dict)
    national_id: str | None = None  # to seal
    phone: str | None = None  # to seal
    enable: bool = False
    # (identifier id or None for a new one, blind index): the person's phone login
    phone_login: tuple[int | None, str] | None = None
    more_phone_logins: list[str] = field(default_factory=list)  # guardians: further new ones

    @property
    def changes(self) -> bool:
        return bool(self.values or self.national_id or self.phone or self.enable
                    or self.phone_login or self.more_phone_logins)


@dataclass(slots=True)
class Move:
    person_id: int | NewPerson  # a person planned in the same chunk has no id yet
    close: list[int]
    unit: Unit
    role: str


@dataclass(slots=True)
class NewLink:
    guardian: NewPerson | int
    student_id: int
    relation: str


@dataclass
class ChunkPlan:
    diff: Diff = field(default_factory=Diff)
    errors: list[RowError] = field(default_factory=list)
    new_units: list[Unit] = field(default_factory=list)
    renamed_units: list[tuple[int, str]] = field(default_factory=list)
    new_people: list[NewPerson] = field(default_factory=list)
    updates: list[PersonUpdate] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    new_links: list[NewLink] = field(default_factory=list)
    link_updates: list[tuple[int, str]] = field(default_factory=list)
    # A phone login's blind index (current key's) -> its number, sealed beside it when written
    phone_numbers: dict[str, str] = field(default_factory=dict)
    # What a chunk must leave in the ledger for the next ones when they cannot read it
    # from the directory (recall.keep): not written, or the next ones planned ahead.
    recall: Callable[[], None] | None = None


@dataclass
class Context:
    """What every chunk of one run shares."""

    session: Session
    settings: Settings
    kind: Kind
    ledger: Ledger
    units: Units
    today: date
    sealer: Sealer
    covered_schools: set[str] = field(default_factory=set)


@dataclass
class Chunk:
    """One chunk's state while its planner's steps run."""

    context: Context
    rows: list
    checked: Checked  # the rows' blind indexes, and what was sealed ahead
    plan: ChunkPlan = field(default_factory=ChunkPlan)
    known: dict[str, lookups.Known] = field(default_factory=dict)
    nid_candidates: dict[str, list[str]] = field(default_factory=dict)
    phone_candidates: dict[str, list[str]] = field(default_factory=dict)
    nid_owner: dict[str, int] = field(default_factory=dict)
    phone_owner: dict[str, int] = field(default_factory=dict)
    name_owner: dict[str, int] = field(default_factory=dict)  # numbers that name another
    current: dict[int, list[lookups.Current]] = field(default_factory=dict)
    pupils: set[int] = field(default_factory=set)  # found guardians who are students now
    targets: dict[int, Unit] = field(default_factory=dict)  # row -> unit
    phone_logins: dict[int, tuple[int, str]] = field(default_factory=dict)  # by account
    students: dict[str, int] = field(default_factory=dict)  # student number -> person id
    classes: dict[int, list[str]] = field(default_factory=dict)  # student -> current classes
    people: dict[int, lookups.Known] = field(default_factory=dict)  # by person id
    account_person: dict[int, int] = field(default_factory=dict)
    guardians: dict[int, lookups.Known | NewPerson] = field(default_factory=dict)  # by row
    guardian_updates: dict[int, PersonUpdate] = field(default_factory=dict)  # by person id
    aliases: dict[int, int] = field(default_factory=dict)  # written id -> planned (-row)
    links: dict[str, int] = field(default_factory=dict)  # guardian>student -> its first row

    def reject(self, row: int, column: str, message: str, value: str = "") -> None:
        shown = label(column) if column in ALIASES else column
        self.plan.errors.append(RowError(row, shown, message, value))
        self.plan.diff.add(Change.invalid)

    def keep(self, predicate: Callable[[ParsedRow], bool]) -> None:
        self.rows = [r for r in self.rows if predicate(r)]

    def candidates(self, kind: str, values: list[str]) -> dict[str, list[str]]:
        """Value -> its blind index under every known key (from the workers, else computed)."""
        known = self.checked.nid_index if kind == "national_id" else self.checked.phone_index
        sealer = self.context.sealer
        return {v: known.get(v) or sealer.candidates(kind, v) for v in values}

    def index_phones(self, values: list[str]) -> None:
        """The rows' phones' blind indexes, and the numbers of the logins they may become."""
        self.phone_candidates = self.candidates("phone", values)
        self.plan.phone_numbers = {c[0]: phone for phone, c in self.phone_candidates.items()}


Step = Callable[[Chunk], None]


# --- shared steps ---------------------------------------------------------------------------

def reject_repeated_keys(chunk: Chunk) -> None:
    """A key (number, code, national ID, phone login) twice in the file: later rows are errors."""
    for field_name, column in _UNIQUE_FIELDS[chunk.context.kind]:
        values = [(getattr(r, field_name), r.row) for r in chunk.rows if getattr(r, field_name)]
        repeats = chunk.context.ledger.claim(field_name, values)
        for row, first in sorted(repeats.items()):
            chunk.reject(row, column, f"{column} repeats row {first}")
        if repeats:
            chunk.keep(lambda r, repeats=repeats: r.row not in repeats)


_UNIQUE_FIELDS: dict[Kind, list[tuple[str, str]]] = {
    Kind.schools: [("key", "school_code")],
    Kind.classes: [("key", "class")],
    Kind.students: [("key", "student_number"), ("national_id", "national_id")],
    Kind.teachers: [("key", "teacher_number"), ("national_id", "national_id"),
                    ("phone", "phone")],
    Kind.guardians: [("key", "guardian phone and student_number")],
}


def _describe(row: PersonRow | GuardianRow, label: str) -> str:
    return f"row {row.row} {label} {mask_name(row.name)}"


# --- schools --------------------------------------------------------------------------------

def plan_schools(chunk: Chunk) -> None:
    units, plan = chunk.context.units, chunk.plan
    units.load([r.code for r in chunk.rows] + [r.district_code for r in chunk.rows
                                                  if r.district_code])
    for row in chunk.rows:
        parent = _district(chunk, row)
        if parent is False:
            continue
        existing = units.get(row.code)
        if existing is None:
            plan.new_units.append(units.plan(row.code, row.name, OrgKind.school, parent))
            plan.diff.add(Change.created, f"row {row.row} school {row.code} {row.name}")
        elif existing.kind != OrgKind.school.value:
            chunk.reject(row.row, "school_code", f"code {row.code} is a {existing.kind}, "
                         "not a school")
        elif existing.name != row.name and existing.id is not None:
            plan.renamed_units.append((existing.id, row.name))
            existing.name = row.name
            plan.diff.add(Change.updated, f"row {row.row} school {row.code} renamed {row.name}")
        else:
            plan.diff.add(Change.unchanged)


def _district(chunk: Chunk, row: SchoolRow) -> Unit | bool | None:
    units = chunk.context.units
    if not row.district_code:
        return units.the_city()
    district = units.get(row.district_code)
    if district is not None:
        return district
    if not row.district_name:
        chunk.reject(row.row, "district_code", f"district {row.district_code} is not in the "
                     "directory; give district_name to create it", row.district_code)
        return False
    city = units.the_city() or _plan_city(chunk)
    district = units.plan(row.district_code, row.district_name, OrgKind.district, city)
    chunk.plan.new_units.append(district)
    chunk.plan.diff.add(Change.created, f"row {row.row} district {row.district_code}")
    return district


def _plan_city(chunk: Chunk) -> Unit:
    planned = chunk.context.units.get(DEFAULT_CITY)
    if planned is not None:
        return planned
    city = chunk.context.units.plan(DEFAULT_CITY, "全市", OrgKind.city, None)
    chunk.plan.new_units.append(city)
    return city


# --- classes --------------------------------------------------------------------------------

def plan_classes(chunk: Chunk) -> None:
    units, plan = chunk.context.units, chunk.plan
    rows: list[ClassRow] = chunk.rows
    units.load([r.school_code for r in rows] + [r.key for r in rows]
               + [grade_code(r.school_code, r.grade) for r in rows])
    for row in rows:
        school = units.get(row.school_code)
        if school is None or school.kind != OrgKind.school.value:
            chunk.reject(row.row, "school_code", f"school {row.school_code} is not in the "
                         "directory (import the schools file first)", row.school_code)
            continue
        grade = ensure_grade(units, plan, school, row.grade)
        name = row.name or f"{row.number}班"
        existing = units.get(row.key)
        if existing is None:
            plan.new_units.append(units.plan(row.key, name, OrgKind.class_, grade))
            plan.diff.add(Change.created, f"row {row.row} class {row.key} {name}")
        elif row.name and existing.name != row.name and existing.id is not None:
            plan.renamed_units.append((existing.id, row.name))
            existing.name = row.name
            plan.diff.add(Change.updated, f"row {row.row} class {row.key} renamed {row.name}")
        else:
            plan.diff.add(Change.unchanged)


def ensure_grade(units: Units, plan: ChunkPlan, school: Unit, grade: int) -> Unit:
    code = grade_code(school.code, grade)
    unit = units.get(code)
    if unit is None:
        unit = units.plan(code, GRADE_NAMES[grade - 1], OrgKind.grade, school)
        plan.new_units.append(unit)
    return unit


# --- students and teachers ------------------------------------------------------------------

@dataclass(frozen=True)
class PeopleKind:
    login: IdentifierKind
    roles: tuple[str, ...]
    phone_login: bool


PEOPLE = {
    Kind.students: PeopleKind(IdentifierKind.student_number, (Role.student.value,), False),
    Kind.teachers: PeopleKind(IdentifierKind.teacher_number,
                              (Role.teacher.value, Role.staff.value), True),
}


def find_targets(chunk: Chunk) -> None:
    """Each row's org unit: its class (students) or school (teachers); unknown ones are errors."""
    units, kind = chunk.context.units, chunk.context.kind
    rows: list[PersonRow] = chunk.rows
    units.load([r.school_code for r in rows] + [r.class_code for r in rows if r.class_code])
    for row in rows:
        school = units.get(row.school_code)
        if school is None or school.kind != OrgKind.school.value:
            chunk.reject(row.row, "school_code", f"school {row.school_code} is not in the "
                         "directory (import the schools file first)", row.school_code)
            continue
        chunk.context.covered_schools.add(row.school_code)
        target = units.get(row.class_code) if kind is Kind.students else school
        if target is None:
            chunk.reject(row.row, "class", f"class {row.class_code} is not in the directory "
                         "(import the classes file first)", row.class_code or "")
            continue
        chunk.targets[row.row] = target
    chunk.keep(lambda r: r.row in chunk.targets)


def find_people(chunk: Chunk) -> None:
    context, rows = chunk.context, chunk.rows
    spec = PEOPLE[context.kind]
    chunk.known = lookups.people_by_identifier(context.session, spec.login,
                                               [r.number for r in rows])
    if spec.login in NAME_KINDS:
        chunk.name_owner = lookups.names_of_others(context.session, spec.login,
                                                   [r.number for r in rows])
    chunk.nid_candidates = chunk.candidates("national_id",
                                            [r.national_id for r in rows if r.national_id])
    chunk.nid_owner = lookups.people_by_national_id(context.session, chunk.nid_candidates)
    chunk.index_phones([r.phone for r in rows if r.phone])
    if spec.phone_login:
        chunk.phone_owner = lookups.phone_logins(context.session, chunk.phone_candidates)


def reject_identity_conflicts(chunk: Chunk) -> None:
    """A national ID or phone login that is someone else's; a number with another national ID,
    or that is another person's username or number of the other kind."""
    column = PEOPLE[chunk.context.kind].login.value
    bad: set[int] = set()
    for row in chunk.rows:
        known = chunk.known.get(row.number)
        owner = chunk.nid_owner.get(row.national_id) if row.national_id else None
        if owner is not None and (known is None or owner != known.person_id):
            chunk.reject(row.row, "national_id", "national ID already belongs to another "
                         "person in the directory", _masked_nid(row.national_id))
            bad.add(row.row)
        elif known and row.national_id and known.national_id_bidx and (
                known.national_id_bidx not in chunk.nid_candidates[row.national_id]):
            chunk.reject(row.row, column, f"{column} {row.number} already belongs to another "
                         "person (the directory has a different national ID for it)", row.number)
            bad.add(row.row)
        elif row.number in chunk.name_owner and (
                known is None or chunk.name_owner[row.number] != known.account_id):
            chunk.reject(row.row, column, f"{column} {row.number} is already another person's "
                         "sign-in name (a username or another kind of number)", row.number)
            bad.add(row.row)
        elif row.phone and row.phone in chunk.phone_owner and (
                known is None or chunk.phone_owner[row.phone] != known.account_id):
            chunk.reject(row.row, "phone", "phone is already the login of another person",
                         _masked_phone(row.phone))
            bad.add(row.row)
    chunk.keep(lambda r: r.row not in bad)


def find_current_affiliations(chunk: Chunk) -> None:
    ids = [k.person_id for k in chunk.known.values()]
    chunk.current = lookups.current_affiliations(chunk.context.session, ids,
                                                 PEOPLE[chunk.context.kind].roles)
    if PEOPLE[chunk.context.kind].phone_login:
        accounts = [k.account_id for k in chunk.known.values() if k.account_id]
        chunk.phone_logins = lookups.logins_of(chunk.context.session, IdentifierKind.phone,
                                               accounts)


def classify_people(chunk: Chunk) -> None:
    for row in chunk.rows:
        known = chunk.known.get(row.number)
        if known is None:
            _plan_new_person(chunk, row)
            continue
        update = _person_update(chunk, row, known)
        move = _move(chunk, row, known)
        label = _describe(row, row.number) if move or update.changes else ""
        if move:
            chunk.plan.moves.append(move)
            chunk.plan.diff.add(Change.moved, f"{label}: {_from(chunk, known)} -> "
                                f"{move.unit.code}")
        if update.changes:
            chunk.plan.updates.append(update)
            if not move:
                chunk.plan.diff.add(Change.updated, f"{label}: {', '.join(_what(update))}")
        if not move and not update.changes:
            chunk.plan.diff.add(Change.unchanged)


def _plan_new_person(chunk: Chunk, row: PersonRow) -> None:
    spec = PEOPLE[chunk.context.kind]
    logins = [(spec.login.value, row.number)]
    if spec.phone_login and row.phone:
        logins.append((IdentifierKind.phone.value, chunk.phone_candidates[row.phone][0]))
    target = chunk.targets[row.row]
    chunk.plan.new_people.append(NewPerson(
        row.row, row.name, row.gender, row.birth_date, row.national_id, row.phone, logins,
        row.password_hash, target, row.role, sealed=chunk.checked.sealed.get(row.row)))
    chunk.plan.diff.add(Change.created, lambda: f"{_describe(row, row.number)} in {target.code}")


def _person_update(chunk: Chunk, row: PersonRow | GuardianRow, known: lookups.Known
                   ) -> PersonUpdate:
    update = PersonUpdate(known)
    for name in ("name", "gender", "birth_date"):
        value = getattr(row, name, None)
        if value is not None and value != getattr(known, name):
            update.values[name] = value
    if row.national_id and known.national_id_bidx is None:
        update.national_id = row.national_id
    if row.phone and known.phone_bidx not in chunk.phone_candidates[row.phone]:
        update.phone = row.phone
    if known.status in REACTIVATED_FROM:
        update.values["status"] = PersonStatus.active.value
        update.enable = known.disabled
    if PEOPLE.get(chunk.context.kind, PEOPLE[Kind.students]).phone_login and row.phone:
        _phone_login_update(chunk, row.phone, known, update)
    return update


def _phone_login_update(chunk: Chunk, phone: str, known: lookups.Known,
                        update: PersonUpdate) -> None:
    current = chunk.phone_logins.get(known.account_id) if known.account_id else None
    candidates = chunk.phone_candidates[phone]
    if known.account_id is None or (current and current[1] in candidates):
        return
    update.phone_login = (current[0] if current else None, candidates[0])


def _move(chunk: Chunk, row: PersonRow, known: lookups.Known) -> Move | None:
    target = chunk.targets[row.row]
    current = chunk.current.get(known.person_id, [])
    if any(c.unit_code == target.code and c.role == row.role for c in current):
        return None
    return Move(known.person_id, [c.id for c in current], target, row.role)


def _from(chunk: Chunk, known: lookups.Known) -> str:
    current = chunk.current.get(known.person_id, [])
    return ", ".join(c.unit_code for c in current) or "(no current affiliation)"


def _what(update: PersonUpdate) -> list[str]:
    what = list(update.values)
    what += ["national_id"] if update.national_id else []
    what += ["phone"] if update.phone or update.phone_login else []
    what += ["account enabled"] if update.enable else []
    return what


def _masked_nid(value: str | None) -> str:
    from directory.pii import mask_national_id
    return mask_national_id(value)


def _masked_phone(value: str | None) -> str:
    from directory.pii import mask_phone
    return mask_phone(value)


# --- guardians ------------------------------------------------------------------------------

def find_guardians(chunk: Chunk) -> None:
    """The students, and the guardians known by phone login or national ID: in the directory,
    or (``recall``) as earlier chunks of the run planned them, written or not."""
    context, rows = chunk.context, chunk.rows
    session = context.session
    for number, person_id, class_code in lookups.students_and_classes(
            session, [r.student_number for r in rows]):
        chunk.students[number] = person_id
        if class_code is not None:
            chunk.classes.setdefault(person_id, []).append(class_code)
    chunk.index_phones([r.phone for r in rows])
    chunk.phone_owner = lookups.phone_logins(session, chunk.phone_candidates)
    chunk.nid_candidates = chunk.candidates("national_id",
                                            [r.national_id for r in rows if r.national_id])
    chunk.nid_owner = lookups.people_by_national_id(session, chunk.nid_candidates)
    recall.owners(chunk)
    chunk.account_person = lookups.people_of_accounts(session, chunk.phone_owner.values())
    chunk.people = lookups.people_by_id(session, [*chunk.nid_owner.values(),
                                                  *chunk.account_person.values()])
    recall.people(chunk)
    recall.aliases(chunk)
    chunk.current = lookups.current_affiliations(  # the known guardians' schools
        session, list(chunk.people), (Role.guardian.value,))
    chunk.pupils = set(lookups.current_affiliations(session, list(chunk.people),
                                                    (Role.student.value,)))


Guardian = lookups.Known | NewPerson


def resolve_guardians(chunk: Chunk) -> None:
    """Each row's guardian: known (maybe updated), planned new, or an error.

    Rows are taken in file order, and each sees what the chunk's earlier rows planned (a new
    guardian, a phone login or national ID given to one) as a later chunk sees it through
    ``recall``: the same rows give the same result whatever the chunk size.
    """
    phones: dict[str, Guardian] = {}  # phone -> the guardian the chunk gives it as a login
    nids: dict[str, Guardian] = {}  # national ID -> the guardian the chunk gives it to
    prefetched = _candidates(chunk)
    linked = recall.links(chunk, prefetched)
    for row in chunk.rows:
        if row.student_number not in chunk.students:
            chunk.reject(row.row, "student_number", f"student {row.student_number} is not in "
                         "the directory (import the students file first)", row.student_number)
            continue
        found = _known_guardian(chunk, row, phones, nids)
        if found is None:
            continue
        guardian, by_phone = found
        if guardian is not None and _repeated_link(chunk, row, guardian, prefetched, linked):
            continue
        if guardian is None:
            guardian = _new_guardian(chunk, row)
            given = guardian.national_id
        elif isinstance(guardian, NewPerson):
            given = None
            if not by_phone:
                _add_phone(chunk, row, guardian)
        else:
            given = _update_guardian(chunk, row, guardian, phone_login=not by_phone)
        chunk.guardians[row.row] = guardian
        chunk.links.setdefault(_link_key(chunk, row, guardian), row.row)
        phones.setdefault(row.phone, guardian)
        if given:
            nids.setdefault(given, guardian)


def _candidates(chunk: Chunk) -> set[str]:
    """The (guardian, student) keys the rows' phones and national IDs point to."""
    keys = set()
    for row in chunk.rows:
        student = chunk.students.get(row.student_number)
        account = chunk.phone_owner.get(row.phone)
        for person in (chunk.account_person.get(account) if account else None,
                       chunk.nid_owner.get(row.national_id) if row.national_id else None):
            if student is not None and person is not None:
                keys.add(f"{chunk.aliases.get(person, person)}>{student}")
    return keys


def _link_key(chunk: Chunk, row: GuardianRow, guardian: Guardian) -> str:
    """The guardian and student of a row, the same in a dry and a real run."""
    person = -guardian.row if isinstance(guardian, NewPerson) else chunk.aliases.get(
        guardian.person_id, guardian.person_id)
    return f"{person}>{chunk.students[row.student_number]}"


def _repeated_link(chunk: Chunk, row: GuardianRow, guardian: Guardian,
                   prefetched: set[str], linked: dict[str, int]) -> bool:
    """The guardian of an earlier row (through another phone or national ID) and the same
    student: an error, as a repeated row is."""
    key = _link_key(chunk, row, guardian)
    first = chunk.links.get(key) or linked.get(key)
    if first is None and key not in prefetched and not isinstance(guardian, NewPerson):
        first = recall.links(chunk, [key]).get(key)
    if first is None:
        return False
    chunk.reject(row.row, "national_id" if row.national_id else "phone",
                 f"the guardian of row {first} (the same person through another phone or "
                 f"national ID) and student_number {row.student_number}: repeats row {first}",
                 _masked_nid(row.national_id) if row.national_id else _masked_phone(row.phone))
    return True


def _known_guardian(chunk: Chunk, row: GuardianRow, phones: dict[str, Guardian],
                    nids: dict[str, Guardian]) -> tuple[Guardian | None, bool] | None:
    """(the guardian, or None for a new one; found by phone); None: an error.

    Found in the directory, as earlier chunks planned it, or as earlier rows of the chunk did.
    """
    account = chunk.phone_owner.get(row.phone)
    by_phone = phones.get(row.phone) or (
        chunk.people.get(chunk.account_person[account]) if account else None)
    by_nid = None
    if row.national_id:
        owner = chunk.nid_owner.get(row.national_id)
        by_nid = nids.get(row.national_id) or (
            chunk.people.get(owner) if owner is not None else None)
    if by_phone is not None and by_nid is not None and not _same(by_phone, by_nid):
        chunk.reject(row.row, "national_id", "national ID already belongs to another person "
                     "than the owner of this phone", _masked_nid(row.national_id))
        return None
    found = by_phone or by_nid
    if isinstance(found, lookups.Known) and found.person_id in chunk.pupils:
        # a child's own national ID typed in the parent's row: the child would be renamed
        # and made a guardian (of themselves)
        chunk.reject(row.row, "national_id", "national ID belongs to a student: a student "
                     "cannot be a guardian", _masked_nid(row.national_id))
        return None
    return found, by_phone is not None


def _same(one: Guardian, other: Guardian) -> bool:
    if isinstance(one, lookups.Known) and isinstance(other, lookups.Known):
        return one.person_id == other.person_id
    return one is other


def _new_guardian(chunk: Chunk, row: GuardianRow) -> NewPerson:
    new = NewPerson(row.row, row.name, None, None, row.national_id, row.phone,
                    [(IdentifierKind.phone.value, chunk.phone_candidates[row.phone][0])],
                    None, None, Role.guardian.value, sealed=chunk.checked.sealed.get(row.row))
    chunk.plan.new_people.append(new)
    chunk.plan.diff.add(Change.created,
                        lambda: f"{_describe(row, 'guardian')} {_masked_phone(row.phone)}")
    return new


def _add_phone(chunk: Chunk, row: GuardianRow, new: NewPerson) -> None:
    """A guardian planned new in this chunk, found again by national ID with another phone:
    the phone is added (a login, and the person's phone), as a later chunk would update it."""
    new.logins.append((IdentifierKind.phone.value, chunk.phone_candidates[row.phone][0]))
    new.phone, new.sealed = row.phone, None  # sealed again when written
    chunk.plan.diff.add(Change.updated, f"{_describe(row, 'guardian')}: phone")


def _update_guardian(chunk: Chunk, row: GuardianRow, known: lookups.Known, *,
                     phone_login: bool) -> str | None:
    """Plan the changes of the row to a known guardian; the national ID it gives it, if any.

    The first row of a guardian in the chunk plans its changes; later ones only add what
    makes the guardian found again (a phone login, a national ID), as a later chunk would.
    """
    login = chunk.phone_candidates[row.phone][0] if phone_login else None
    update = chunk.guardian_updates.get(known.person_id)
    if update is None:
        update = chunk.guardian_updates[known.person_id] = _person_update(chunk, row, known)
        update.values.pop("status", None)
        update.enable = False
        if login:
            update.phone_login = (None, login)
        if update.changes:
            chunk.plan.updates.append(update)
            chunk.plan.diff.add(Change.updated,
                                f"{_describe(row, 'guardian')}: {', '.join(_what(update))}")
        return update.national_id
    planned, what = update.changes, []
    if login:
        if update.phone_login is None:
            update.phone_login = (None, login)
        else:
            update.more_phone_logins.append(login)
        update.phone = row.phone
        what.append("phone")
    if row.national_id and known.national_id_bidx is None and update.national_id is None:
        update.national_id = row.national_id
        what.append("national_id")
    if what:
        if not planned:
            chunk.plan.updates.append(update)
        chunk.plan.diff.add(Change.updated, f"{_describe(row, 'guardian')}: {', '.join(what)}")
    return row.national_id if "national_id" in what else None


def plan_links(chunk: Chunk) -> None:
    """A guardian link per row (new, relation changed, or unchanged) and a school affiliation."""
    pairs = [(g.person_id, chunk.students[r.student_number])
             for r in chunk.rows if isinstance(g := chunk.guardians.get(r.row), lookups.Known)]
    links = lookups.guardian_links(chunk.context.session, pairs)
    for row in chunk.rows:
        guardian = chunk.guardians.get(row.row)
        if guardian is None:
            continue
        student = chunk.students[row.student_number]  # its person id
        school = _school_of(chunk, student)
        if isinstance(guardian, NewPerson):
            chunk.plan.new_links.append(NewLink(guardian, student, row.relation))
            chunk.plan.diff.add(Change.created, lambda row=row: f"{_describe(row, 'guardian')}"
                                f" of {row.student_number}: link ({row.relation})")
            _affiliate_new_guardian(chunk, guardian, school)
            continue
        found = links.get((guardian.person_id, student))
        label = f"{_describe(row, 'guardian')} of {row.student_number}" if (
            found is None or found[1] != row.relation) else ""
        if found is None:
            chunk.plan.new_links.append(NewLink(guardian.person_id, student, row.relation))
            chunk.plan.diff.add(Change.created, f"{label}: link ({row.relation})")
            _affiliate_guardian(chunk, guardian, school)
        elif found[1] != row.relation:
            chunk.plan.link_updates.append((found[0], row.relation))
            chunk.plan.diff.add(Change.updated, f"{label}: relation {row.relation}")
        else:
            chunk.plan.diff.add(Change.unchanged)


def _affiliate_guardian(chunk: Chunk, guardian: lookups.Known, school: Unit | None) -> None:
    if school is None:
        return
    current = chunk.current.setdefault(guardian.person_id, [])
    if any(c.unit_code == school.code and c.role == Role.guardian.value for c in current):
        return
    current.append(lookups.Current(0, guardian.person_id, school.id or 0, school.code,
                                   Role.guardian.value))
    chunk.plan.moves.append(Move(guardian.person_id, [], school, Role.guardian.value))


def _affiliate_new_guardian(chunk: Chunk, guardian: NewPerson, school: Unit | None) -> None:
    if school is None or guardian.unit is school:
        return
    if guardian.unit is None:
        guardian.unit = school
    elif not any(m.person_id is guardian and m.unit is school for m in chunk.plan.moves):
        chunk.plan.moves.append(Move(guardian, [], school, Role.guardian.value))


def _school_of(chunk: Chunk, student: int) -> Unit | None:
    """The school of the student (a person id) by their current class."""
    for class_code in chunk.classes.get(student, []):
        if match := CLASS_CODE.match(class_code):
            return chunk.context.units.get(match["school"])
    return None


# Every kind starts with reject_repeated_keys (the ledger only, no database): begin_chunk
# runs it, so the pipeline may run it while the previous chunk is still being written.
STEPS: dict[Kind, list[Step]] = {
    Kind.schools: [plan_schools],
    Kind.classes: [plan_classes],
    Kind.students: [find_targets, find_people, reject_identity_conflicts,
                    find_current_affiliations, classify_people],
    Kind.teachers: [find_targets, find_people, reject_identity_conflicts,
                    find_current_affiliations, classify_people],
    Kind.guardians: [find_guardians, resolve_guardians, plan_links, recall.remember],
}


def begin_chunk(context: Context, rows: list[ParsedRow], checked: Checked | None = None
                ) -> Chunk:
    """The first step, which needs no database: keys repeated in the file (the ledger)."""
    chunk = Chunk(context, rows, checked or Checked([]))
    reject_repeated_keys(chunk)
    return chunk


def finish_chunk(chunk: Chunk) -> ChunkPlan:
    """The steps that read the directory: they see every earlier chunk's writes, or (a
    dry run, a plan made ahead) what ``recall`` remembers of them."""
    for step in STEPS[chunk.context.kind]:
        step(chunk)
    return chunk.plan
