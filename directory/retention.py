"""Erasing the personal data of people who left, once a retention period is over.

The directory keeps history (ended places, a graduate's account) so that a school can
answer for last term. It must not keep it for ever: personal data is deleted once its
purpose is met (PIPL art. 47). ``idp erase-departed --days N`` finds the people
it is over for and erases them, one batch per transaction, each holding the import lock (an
import writing meanwhile could place again someone just erased):

- **Who:** a person graduated, transferred or left, with no current place, whose last place
  ended ``days`` or more ago (one never placed: last changed that long ago), who is nobody's
  guardian. Erasing a child ends their guardians' places as guardians at schools where no
  child of theirs is left; a guardian goes with the last of their children, unless a place
  of their own (a teacher's) ended less than ``days`` ago.
- **What goes:** the name (left empty), gender, birth date, national ID, phone and address
  (ciphertexts and blind indexes), the password; every row of any table that refers to the
  person or their account (places, guardian links, SCIM external ids, login identifiers,
  second factors, consents, refresh tokens, pairwise subjects), found through the schema's
  foreign keys, so a table added later is covered without being named here.
- **What stays:** a tombstone: the person's ``uid`` and the account's ``sub`` (opaque ids that
  apps and the audit log hold), ``erased_at``, the status; the account disabled and signed
  out. With no place left the person is outside every scope: SCIM, the directory API and the
  console no longer show them. A student number or phone number is free for someone new.
- Each erasure is audited (``directory.person.erase``, target ``person:<uid>``, no data).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Table, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from core.audit import record
from core.db import Base, utcnow
from core.field_crypto import seal
from core.settings import Settings
from directory.importer.lock import hold_import_lock
from directory.models import (
    ADDRESS,
    NATIONAL_ID,
    PHONE,
    Account,
    Affiliation,
    GuardianLink,
    OrgUnit,
    Person,
    PersonStatus,
    Role,
)

DEPARTED = (PersonStatus.graduated.value, PersonStatus.transferred.value,
            PersonStatus.left.value)
# Fewer days than this is a typo, not a retention period (a transfer last week)
MIN_DAYS = 30


@dataclass
class Erased:
    """What a run erased (or, dry, would erase): people, of whom guardians."""

    people: int = 0
    guardians: int = 0
    uids: list[str] = field(default_factory=list)  # the first few, for the report


def _due(cutoff: date, cutoff_time: datetime) -> object:
    """SQL: the person departed, has no current place and the last one ended by ``cutoff``
    (never placed: not changed since ``cutoff_time``), and is nobody's guardian (a teacher
    who left may still be the parent of a pupil)."""
    current = exists().where(Affiliation.person_id == Person.id,
                             or_(Affiliation.valid_to.is_(None), Affiliation.valid_to > cutoff))
    placed = exists().where(Affiliation.person_id == Person.id)
    parent = exists().where(GuardianLink.guardian_id == Person.id)
    return (Person.status.in_(DEPARTED) & Person.erased_at.is_(None) & ~current & ~parent
            & (placed | (Person.updated_at <= cutoff_time)))


def _referring(target: str) -> Iterator[tuple[Table, object]]:
    """Every table with a foreign key to ``target`` (person or account), and that column."""
    for table in Base.metadata.sorted_tables:
        for key in table.foreign_keys:
            if key.column.table.name == target and table.name != "account":
                yield table, key.parent


def _erase(session: Session, settings: Settings, person: Person, actor: str) -> list[int]:
    """Erase one person; the ids of guardians who had them as their child."""
    guardians = list(session.scalars(select(GuardianLink.guardian_id)
                                     .where(GuardianLink.student_id == person.id)))
    account = session.scalar(select(Account).where(Account.person_id == person.id))
    if account is not None:
        for table, column in _referring("account"):
            session.execute(delete(table).where(column == account.id))
        account.password_hash, account.disabled = None, True
        account.must_change_password, account.sms_suspended_at = False, None
        account.signed_out_at = utcnow()
    for table, column in _referring("person"):
        session.execute(delete(table).where(column == person.id))
    for column in (NATIONAL_ID, PHONE, ADDRESS):
        seal(settings, column, person, None)
    person.name, person.gender, person.birth_date = "", None, None
    person.erased_at = utcnow()
    record(session, actor=actor, action="directory.person.erase", outcome="success",
           target=f"person:{person.uid}")
    return guardians


def _end_guardian_places(session: Session, guardian_ids: set[int], day: date) -> None:
    """End the guardians' places as guardians at schools where none of their children left
    has a current place (a guardian is placed at each child's school)."""
    child_place = aliased(Affiliation)
    child_unit = aliased(OrgUnit)
    still_there = exists().where(
        GuardianLink.guardian_id == Affiliation.person_id,
        child_place.person_id == GuardianLink.student_id, child_place.valid_to.is_(None),
        child_unit.id == child_place.org_unit_id, child_unit.path.startswith(OrgUnit.path))
    for place in session.scalars(
            select(Affiliation).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
            .where(Affiliation.person_id.in_(sorted(guardian_ids)),
                   Affiliation.role == Role.guardian.value, Affiliation.valid_to.is_(None),
                   ~still_there)):
        place.valid_to = day


def _orphaned(session: Session, guardian_ids: set[int], cutoff: date) -> list[Person]:
    """The guardians among these with no child left and no place of their own that ended
    less than the retention period ago."""
    if not guardian_ids:
        return []
    return list(session.scalars(select(Person).where(
        Person.id.in_(sorted(guardian_ids)), Person.erased_at.is_(None),
        ~exists().where(GuardianLink.guardian_id == Person.id),
        ~exists().where(Affiliation.person_id == Person.id,
                        Affiliation.role != Role.guardian.value,
                        or_(Affiliation.valid_to.is_(None), Affiliation.valid_to > cutoff)))))


def _mark_left(session: Session, guardian_ids: set[int]) -> None:
    """Guardians kept (a post of their own ended lately) with no child and no current place
    left: ``left``, as the import marks whoever it leaves without one, so that ``_due`` erases
    them once their last place ended ``days`` ago (an ``active`` person is never due). One
    with a child left stays active, placed or not (a child with no current class gives
    their guardian no place)."""
    if guardian_ids:
        session.execute(update(Person).where(
            Person.id.in_(sorted(guardian_ids)), Person.erased_at.is_(None),
            Person.status == PersonStatus.active.value,
            ~exists().where(GuardianLink.guardian_id == Person.id),
            ~exists().where(Affiliation.person_id == Person.id, Affiliation.valid_to.is_(None)))
            .values(status=PersonStatus.left.value).execution_options(synchronize_session=False))


def erase_departed(settings: Settings, sessions: sessionmaker[Session], *, days: int,
                   actor: str, dry_run: bool = False, batch: int = 200,
                   today: date | None = None) -> Erased:
    """Erase everyone whose retention period of ``days`` is over (see the module)."""
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS}")
    day = today or date.today()
    cutoff = day - timedelta(days=days)
    due = _due(cutoff, datetime.combine(cutoff, time.min, tzinfo=UTC))
    done = Erased()
    if dry_run:
        with sessions() as session:
            done.people = session.scalar(select(func.count()).select_from(Person).where(due))
            done.uids = list(session.scalars(select(Person.uid).where(due)
                                             .order_by(Person.id).limit(5)))
        return done
    while True:
        with sessions.begin() as session:
            hold_import_lock(session)  # an import must not write onto a tombstone
            people = list(session.scalars(select(Person).where(due).order_by(Person.id)
                                          .limit(batch).with_for_update()))
            guardians: set[int] = set()
            for person in people:
                guardians.update(_erase(session, settings, person, actor))
                if len(done.uids) < 5:
                    done.uids.append(person.uid)
            session.flush()
            _end_guardian_places(session, guardians, day)
            session.flush()
            for guardian in _orphaned(session, guardians, cutoff):
                _erase(session, settings, guardian, actor)
                done.guardians += 1
            _mark_left(session, guardians)
            done.people += len(people)
        if len(people) < batch:
            return done
