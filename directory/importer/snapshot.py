"""Snapshot mode: a file is the whole truth for the schools it mentions.

With ``--snapshot``, a student (or teacher) whose current affiliation is in a
school the file mentions, but who is not in the file, has left: the
affiliation is closed (``valid_to`` = the import date), and when no other
current affiliation remains the person's status becomes ``left``: the person may
no longer sign in (``directory.people.may_sign_in``), and ``idp import`` ends
their sessions once the import is committed. Nobody is deleted: a later import
that places the person again reactivates them, and ``idp rollover`` disables the
account after the grace period. Rows that were invalid still count as present,
so a typo never deactivates anyone. Schools the file does not mention are not
touched. Snapshot mode applies to students and teachers only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from directory.importer import lookups
from directory.importer.diff import Change, Diff
from directory.importer.formats import FileProblem
from directory.importer.plan import PEOPLE, Context
from directory.models import (
    Account,
    Affiliation,
    LoginIdentifier,
    OrgUnit,
    Person,
    PersonStatus,
    Role,
)
from directory.pii import mask_name

BATCH = 5000


@dataclass(frozen=True, slots=True)
class Member:
    affiliation_id: int
    person_id: int
    number: str
    name: str
    unit_code: str


def _members(context: Context, school_path: str) -> Iterator[list[Member]]:
    spec = PEOPLE[context.kind]
    last = 0
    while True:
        query = (
            select(Affiliation.id, Affiliation.person_id, LoginIdentifier.value, Person.name,
                   OrgUnit.code)
            .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
            .join(Person, Person.id == Affiliation.person_id)
            .join(Account, Account.person_id == Person.id)
            .join(LoginIdentifier, (LoginIdentifier.account_id == Account.id)
                  & (LoginIdentifier.kind == spec.login.value))
            .where(OrgUnit.path.startswith(school_path), Affiliation.role.in_(spec.roles),
                   Affiliation.valid_to.is_(None), Affiliation.id > last)
            .order_by(Affiliation.id).limit(BATCH)
        )
        batch = [Member(*row) for row in context.session.execute(query)]
        if not batch:
            return
        yield batch
        last = batch[-1].affiliation_id


# A file missing more than this share of a school's people (and more than LEAVERS_FREE of
# them) is refused: a truncated file or an export of one grade would mark the rest as left
# and sign them out (Microsoft Entra Connect's "prevent accidental deletes" is the model)
LEAVERS_PERCENT = 10
LEAVERS_FREE = 20


def affiliations_before(session: Session) -> int:
    """The newest affiliation's id before the run writes (``deactivate_missing``)."""
    return session.scalar(select(func.max(Affiliation.id))) or 0


def deactivate_missing(context: Context, diff: Diff, *, write: bool, before: int,
                       leavers_percent: int = LEAVERS_PERCENT) -> set[int]:
    """Close the affiliations of people missing from the file, in every covered school;
    the people who have left (no current affiliation remains), when ``write``. A school
    that would lose more than ``leavers_percent`` of the people it had before the run
    (``before``: ``affiliations_before``; and more than ``LEAVERS_FREE``) stops the run
    (``FileProblem``): nothing is written."""
    left: set[int] = set()
    for code in sorted(context.covered_schools):
        school = context.units.get(code)
        if school is None or not school.path:
            continue
        missing = []
        for batch in _members(context, school.path):
            present = context.ledger.seen("key", [m.number for m in batch])
            missing += [m for m in batch if m.number not in present]
        _check_leavers(code, len(missing), _had(context, school.path, before),
                       leavers_percent)
        for member in missing:
            diff.add(Change.deactivated, f"{member.number} {mask_name(member.name)}: "
                     f"left {member.unit_code}")
        for start in range(0, len(missing) if write else 0, BATCH):
            left.update(_close(context, missing[start:start + BATCH]))
    return left


def _had(context: Context, school_path: str, before: int) -> int:
    """The school's people before the run, the same in a dry and a real run: the
    affiliations current then (a real run has written its new ones since, with higher ids,
    and closed those of the pupils it moved: ended today, they count)."""
    spec = PEOPLE[context.kind]
    return context.session.scalar(
        select(func.count()).select_from(Affiliation)
        .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
        .where(OrgUnit.path.startswith(school_path), Affiliation.role.in_(spec.roles),
               Affiliation.id <= before,
               or_(Affiliation.valid_to.is_(None), Affiliation.valid_to >= context.today)))


def _check_leavers(code: str, leaving: int, members: int, percent: int) -> None:
    if leaving > LEAVERS_FREE and leaving * 100 > members * percent:
        raise FileProblem(
            f"--snapshot would mark {leaving} of the {members} people of school {code} as "
            f"left (more than {percent}%): is the file complete? To see who, add --dry-run "
            f"--leavers-limit 100; to apply it, --leavers-limit 100")


def _close(context: Context, missing: list[Member]) -> list[int]:
    session = context.session
    closing = {m.affiliation_id for m in missing}
    session.execute(update(Affiliation), [{"id": aid, "valid_to": context.today}
                                          for aid in sorted(closing)])
    roles = [r.value for r in Role]
    still = lookups.current_affiliations(session, [m.person_id for m in missing], roles)
    gone = sorted({m.person_id for m in missing
                   if not [c for c in still.get(m.person_id, []) if c.id not in closing]})
    if gone:
        session.execute(update(Person), [{"id": pid, "status": PersonStatus.left.value}
                                         for pid in gone])
    return gone
