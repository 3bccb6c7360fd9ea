"""Batch queries that find what a chunk of rows refers to: one query per question.

Every function takes a whole chunk's keys (a few thousand) and answers with a
dict, so planning a chunk costs a handful of indexed queries, never one query
per row. Queries run on the session's connection (Core rows, no ORM loading).
National IDs and phones are looked up through their blind indexes under every
known master key (``Sealer.candidates``, computed by the workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Row, Select, and_, select
from sqlalchemy.orm import Session

from directory.identifiers import NAME_KINDS
from directory.importer.bulk import among
from directory.models import (
    Account,
    Affiliation,
    GuardianLink,
    IdentifierKind,
    LoginIdentifier,
    OrgUnit,
    Person,
    Role,
)

# Keys per query: a whole chunk's (5,000 rows, up to two keys each) in one round trip. On
# PostgreSQL they are one array parameter; SQLite (3.32 and later) allows 32,766 bound
# parameters. At 2,000 a guardians chunk took about 18 round trips instead of 6.
IN_BATCH = 10_000


def _rows(session: Session, query: Select) -> Sequence[Row]:
    """The rows of ``query`` on the session's connection: Core rows, without the ORM's
    per-row loading, fetched at once (one ``fetchall`` for at most ``IN_BATCH`` keys'
    rows rather than a ``fetchone`` call per row)."""
    return session.connection().execute(query).all()


def batches(values: Sequence, size: int = IN_BATCH) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


@dataclass(frozen=True, slots=True)
class Known:
    """A person already in the directory, as far as an import needs to know them."""

    person_id: int
    uid: str
    account_id: int | None
    name: str
    gender: str | None
    birth_date: date | None
    national_id_bidx: str | None
    phone_bidx: str | None
    status: str
    disabled: bool


_KNOWN_COLUMNS = (Person.id, Person.uid, Account.id, Person.name, Person.gender,
                  Person.birth_date, Person.national_id_bidx, Person.phone_bidx, Person.status,
                  Account.disabled)


def _known(row: tuple) -> Known:
    return Known(*row[:9], bool(row[9]))


def people_by_identifier(session: Session, kind: IdentifierKind, values: Sequence[str]
                         ) -> dict[str, Known]:
    """Login identifier value -> the person who owns it."""
    found: dict[str, Known] = {}
    for part in batches(sorted(set(values))):
        query = (select(LoginIdentifier.value, *_KNOWN_COLUMNS)
                 .join(Account, Account.id == LoginIdentifier.account_id)
                 .join(Person, Person.id == Account.person_id)
                 .where(LoginIdentifier.kind == kind.value,
                        among(session, LoginIdentifier.value, part)))
        found.update((row[0], _known(row[1:])) for row in _rows(session, query))
    return found


def students_and_classes(session: Session, numbers: Sequence[str]
                         ) -> list[tuple[str, int, str | None]]:
    """``(student number, person id, code of a current student affiliation's unit)``: a
    row per current affiliation, one with ``None`` for a student with none."""
    found: list[tuple[str, int, str | None]] = []
    current = and_(Affiliation.person_id == Account.person_id,
                   Affiliation.role == Role.student.value, Affiliation.valid_to.is_(None))
    for part in batches(sorted(set(numbers))):
        query = (select(LoginIdentifier.value, Account.person_id, OrgUnit.code)
                 .join(Account, Account.id == LoginIdentifier.account_id)
                 .outerjoin(Affiliation, current)
                 .outerjoin(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
                 .where(LoginIdentifier.kind == IdentifierKind.student_number.value,
                        among(session, LoginIdentifier.value, part)))
        found.extend(_rows(session, query))
    return found


def people_by_id(session: Session, person_ids: Sequence[int]) -> dict[int, Known]:
    found: dict[int, Known] = {}
    for part in batches(sorted(set(person_ids))):
        query = (select(*_KNOWN_COLUMNS).outerjoin(Account, Account.person_id == Person.id)
                 .where(among(session, Person.id, part)))
        found.update((row[0], _known(row)) for row in _rows(session, query))
    return found


def people_by_national_id(session: Session, candidates: dict[str, list[str]]) -> dict[str, int]:
    """National ID -> person id, through the blind indexes in ``candidates``."""
    by_index = {index: value for value, indexes in candidates.items() for index in indexes}
    found: dict[str, int] = {}
    for part in batches(list(by_index)):
        query = select(Person.national_id_bidx, Person.id).where(
            among(session, Person.national_id_bidx, part))
        found.update((by_index[index], pid) for index, pid in _rows(session, query))
    return found


def phone_logins(session: Session, candidates: dict[str, list[str]]) -> dict[str, int]:
    """Phone number -> the account id whose phone login it is."""
    by_index = {index: value for value, indexes in candidates.items() for index in indexes}
    found: dict[str, int] = {}
    for part in batches(list(by_index)):
        query = select(LoginIdentifier.value, LoginIdentifier.account_id).where(
            LoginIdentifier.kind == IdentifierKind.phone.value,
            among(session, LoginIdentifier.value, part))
        found.update((by_index[index], aid) for index, aid in _rows(session, query))
    return found


def unsealed_phone_logins(session: Session, candidates: dict[str, list[str]]
                          ) -> list[tuple[int, int, str]]:
    """The phone logins of these numbers written before migration 0017 (only their index,
    no sealed number): (id, account id, number)."""
    by_index = {index: value for value, indexes in candidates.items() for index in indexes}
    found: list[tuple[int, int, str]] = []
    for part in batches(list(by_index)):
        query = select(LoginIdentifier.id, LoginIdentifier.account_id,
                       LoginIdentifier.value).where(
            LoginIdentifier.kind == IdentifierKind.phone.value,
            LoginIdentifier.number_enc.is_(None), among(session, LoginIdentifier.value, part))
        found += [(login_id, account_id, by_index[index])
                  for login_id, account_id, index in _rows(session, query)]
    return found


def names_of_others(session: Session, kind: IdentifierKind, values: Sequence[str]
                    ) -> dict[str, int]:
    """Value -> the account whose sign-in name of *another* kind it is (a username, a
    student or teacher number): a number given to one person that is another's name would
    take over that person's sign-in, since the form reads a name as any kind."""
    others = [k.value for k in NAME_KINDS if k is not kind]
    found: dict[str, int] = {}
    for part in batches(sorted(set(values))):
        query = select(LoginIdentifier.value, LoginIdentifier.account_id).where(
            LoginIdentifier.kind.in_(others), among(session, LoginIdentifier.value, part))
        found.update((value, aid) for value, aid in _rows(session, query))
    return found


def logins_of(session: Session, kind: IdentifierKind, account_ids: Sequence[int]
              ) -> dict[int, tuple[int, str]]:
    """Account id -> (identifier id, value) of its login of ``kind``."""
    found: dict[int, tuple[int, str]] = {}
    for part in batches(sorted(set(account_ids))):
        query = select(LoginIdentifier.account_id, LoginIdentifier.id, LoginIdentifier.value).where(
            LoginIdentifier.kind == kind.value, among(session, LoginIdentifier.account_id, part))
        found.update((aid, (iid, value)) for aid, iid, value in _rows(session, query))
    return found


def people_of_accounts(session: Session, account_ids: Iterable[int]) -> dict[int, int]:
    """Account id -> person id."""
    found: dict[int, int] = {}
    for part in batches(sorted(set(account_ids))):
        found.update(_rows(session, select(Account.id, Account.person_id)
                                 .where(among(session, Account.id, part))))
    return found


@dataclass(frozen=True, slots=True)
class Current:
    """A current (open) affiliation."""

    id: int
    person_id: int
    unit_id: int
    unit_code: str
    role: str


def current_affiliations(session: Session, person_ids: Sequence[int], roles: Iterable[str]
                         ) -> dict[int, list[Current]]:
    found: dict[int, list[Current]] = {}
    roles = list(roles)
    for part in batches(sorted(set(person_ids))):
        query = (select(Affiliation.id, Affiliation.person_id, Affiliation.org_unit_id,
                        OrgUnit.code, Affiliation.role)
                 .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
                 .where(among(session, Affiliation.person_id, part), Affiliation.role.in_(roles),
                        Affiliation.valid_to.is_(None)))
        for row in _rows(session, query):
            found.setdefault(row[1], []).append(Current(*row))
    return found


def guardian_links(session: Session, pairs: Iterable[tuple[int, int]]
                   ) -> dict[tuple[int, int], tuple[int, str]]:
    """(guardian id, student id) -> (link id, relation) for the pairs that exist."""
    pairs = set(pairs)
    students = sorted({student for _, student in pairs})
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for part in batches(students):
        query = select(GuardianLink.guardian_id, GuardianLink.student_id, GuardianLink.id,
                       GuardianLink.relation).where(among(session, GuardianLink.student_id, part))
        for guardian, student, link, relation in _rows(session, query):
            if (guardian, student) in pairs:
                found[(guardian, student)] = (link, relation)
    return found
