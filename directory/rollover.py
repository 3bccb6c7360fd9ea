"""The annual rollover (``idp rollover --year 2027``): promote, graduate, disable.

At the start of a school year (1 September of ``year``) every student whose
current class affiliation began before that day is handled by these rules:

- **Promote**: a student of class ``<school>-G<g>-<n>`` moves to class
  ``<school>-G<g+1>-<n>``: the same class number in the next grade of the same
  school (units are permanent; cohorts move through them). The next grade and
  class units are created when missing. The old affiliation is closed on
  1 September and the new one starts that day: history is kept.
- **Graduate**: grade 12, and every grade in ``final_grades`` (default 6, 9,
  12: the end of primary, junior and senior school) for which the school has
  no next-grade unit, graduate: the affiliation is closed and the person's
  status becomes ``graduated``. A nine-year school (grades 1-9) thus keeps its
  grade-6 students, who move on to its grade 7. Import the classes of every
  grade a school teaches before the rollover.
- **Disable**: accounts of people who are ``graduated`` or ``left``, have no
  current affiliation, and whose last affiliation ended more than
  ``grace_days`` (default 180) before today are disabled, so graduates keep
  their account for a while (transcripts, alumni apps). A later run does it:
  running the rollover again at any time only disables what became due.

Idempotent per year: only affiliations that began before 1 September are
promoted, and the new ones begin on that day, so a second run for the same
year finds nothing to do. Run the rollover *before* importing the new
year's students. Each run is one transaction, audited; ``dry_run`` writes
nothing and reports the same diff.

One writer at a time: a run takes the import lock (``importer.lock``) as its
first statement, as an import and ``idp erase-departed`` do, and fails at once
with :class:`ImportBusy` while one of them (or another rollover) holds it: two
rollovers at once both read the same placements and promoted every student
twice. A dry run, like an import's, takes no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import Database
from directory.importer.diff import Diff
from directory.importer.lock import hold_import_lock
from directory.importer.rows import (
    CLASS_CODE,
    FINAL_GRADE,
    GRADE_NAMES,
    class_code,
    grade_code,
)
from directory.importer.units import Unit, Units, create_units
from directory.models import Account, Affiliation, OrgKind, OrgUnit, Person, PersonStatus, Role
from directory.people import accounts_of

CATEGORIES = ("promoted", "graduated", "disabled", "skipped")
BATCH = 5000
SCHOOL_YEAR_STARTS = (9, 1)  # month, day


@dataclass
class RolloverOptions:
    year: int
    dry_run: bool = False
    final_grades: frozenset[int] = frozenset({6, 9, FINAL_GRADE})
    grace_days: int = 180
    actor: str = "cli"
    today: date = field(default_factory=date.today)
    examples: int = 20

    @property
    def year_start(self) -> date:
        return date(self.year, *SCHOOL_YEAR_STARTS)


@dataclass
class RolloverResult:
    year: int
    diff: Diff
    # the accounts of the people it graduated: they may no longer sign in, and their
    # sessions are ended by the caller once this is committed (``idp rollover``)
    graduated_accounts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Placement:
    affiliation_id: int
    person_id: int
    unit_code: str


def _placements(session: Session, before: date) -> Iterator[list[Placement]]:
    """Current student affiliations that began before ``before``, in id order."""
    last = 0
    while True:
        query = (select(Affiliation.id, Affiliation.person_id, OrgUnit.code)
                 .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
                 .where(Affiliation.role == Role.student.value, Affiliation.valid_to.is_(None),
                        Affiliation.valid_from < before, OrgUnit.kind == OrgKind.class_.value,
                        Affiliation.id > last)
                 .order_by(Affiliation.id).limit(BATCH))
        batch = [Placement(*row) for row in session.execute(query)]
        if not batch:
            return
        yield batch
        last = batch[-1].affiliation_id


@dataclass
class _Rollover:
    session: Session
    options: RolloverOptions
    diff: Diff
    units: Units
    graduated_people: set[int] = field(default_factory=set)

    def next_class(self, school: str, grade: int, number: int) -> Unit | None:
        """The class to promote into, or None when the student graduates."""
        if grade >= FINAL_GRADE:
            return None
        if grade in self.options.final_grades and self.units.get(
                grade_code(school, grade + 1)) is None:
            return None
        code = class_code(school, grade + 1, number)
        unit = self.units.get(code)
        if unit is None:
            unit = self.units.plan(code, f"{number}班", OrgKind.class_,
                                   self._grade(school, grade + 1))
        return unit

    def _grade(self, school: str, grade: int) -> Unit:
        code = grade_code(school, grade)
        unit = self.units.get(code)
        if unit is None:
            unit = self.units.plan(code, GRADE_NAMES[grade - 1], OrgKind.grade,
                                   self.units.get(school))
        return unit

    def handle(self, batch: list[Placement]) -> None:
        self.units.load({p.unit_code for p in batch}
                        | {m["school"] for p in batch if (m := CLASS_CODE.match(p.unit_code))})
        promoted: list[tuple[Placement, Unit]] = []
        graduated: list[Placement] = []
        for placement in batch:
            match = CLASS_CODE.match(placement.unit_code)
            if match is None or self.units.get(match["school"]) is None:
                self.diff.add("skipped", f"{placement.unit_code}: not a <school>-G<g>-<n> class")
                continue
            target = self.next_class(match["school"], int(match["grade"]), int(match["number"]))
            if target is None:
                graduated.append(placement)
                self.diff.add("graduated", f"person {placement.person_id} from "
                              f"{placement.unit_code}")
            else:
                promoted.append((placement, target))
                self.diff.add("promoted", f"person {placement.person_id}: "
                              f"{placement.unit_code} -> {target.code}")
        if not self.options.dry_run:
            self.write(promoted, graduated)

    def write(self, promoted: list[tuple[Placement, Unit]], graduated: list[Placement]) -> None:
        start = self.options.year_start
        pending: dict[int, Unit] = {}
        for _, unit in promoted:
            for new in (unit.parent, unit):
                if new is not None and new.id is None:
                    pending[id(new)] = new
        create_units(self.session, list(pending.values()))
        closing = [p.affiliation_id for p in graduated] + [p.affiliation_id for p, _ in promoted]
        if closing:
            self.session.execute(update(Affiliation),
                                 [{"id": aid, "valid_to": start} for aid in closing])
        if promoted:
            self.session.execute(insert(Affiliation.__table__), [
                {"person_id": p.person_id, "org_unit_id": unit.id, "role": Role.student.value,
                 "valid_from": start, "valid_to": None} for p, unit in promoted])
        if graduated:
            people = {p.person_id for p in graduated}
            self.session.execute(update(Person), [
                {"id": pid, "status": PersonStatus.graduated.value} for pid in sorted(people)])
            self.graduated_people |= people


def _disable_due(session: Session, options: RolloverOptions, diff: Diff) -> None:
    """Disable the accounts of graduates and leavers whose grace period is over."""
    cutoff = options.today - timedelta(days=options.grace_days)
    current = exists().where(Affiliation.person_id == Person.id, Affiliation.valid_to.is_(None))
    last_end = (select(func.max(Affiliation.valid_to)).where(Affiliation.person_id == Person.id)
                .scalar_subquery())
    query = (select(Account.id, Person.id)
             .join(Person, Person.id == Account.person_id)
             .where(Person.status.in_([PersonStatus.graduated.value, PersonStatus.left.value]),
                    Account.disabled.is_(False), ~current,
                    and_(last_end.is_not(None), last_end <= cutoff)))
    due = session.execute(query).all()
    for _, person_id in due:
        diff.add("disabled", f"person {person_id}")
    if due and not options.dry_run:
        session.execute(update(Account), [{"id": aid, "disabled": True} for aid, _ in due])


def rollover(database: Database, options: RolloverOptions) -> RolloverResult:
    diff = Diff(options.examples, CATEGORIES, CATEGORIES[:3])
    with database.sessions() as session:
        if not options.dry_run:  # as an import's: ImportBusy at once if one is running
            hold_import_lock(session)
        work = _Rollover(session, options, diff, Units(session))
        for batch in _placements(session, options.year_start):
            work.handle(batch)
        _disable_due(session, options, diff)
        if options.dry_run:
            session.rollback()
            return RolloverResult(options.year, diff)
        audit.record(session, actor=options.actor, action="directory.rollover",
                     outcome="applied", target=f"school_year:{options.year}",
                     detail={"year": options.year, "grace_days": options.grace_days,
                             "final_grades": sorted(options.final_grades), **diff.counts})
        accounts = accounts_of(session, work.graduated_people)
        session.commit()
    return RolloverResult(options.year, diff, accounts)
