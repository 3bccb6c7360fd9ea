"""Administrators: who administers which unit, appointing them and ending their role.

An administrator's role is an affiliation (``city_admin``, ``district_admin``,
``school_admin``: ``directory.models.ADMIN_ROLES``) at the unit administered, the kind of
role following the kind of unit. Neither the import nor SCIM grants or ends one: that is
the unit above's decision, in the admin console (``admin_ui.console``), or an operator's
(``idp admin appoint|end``, also how the city's first administrator is made).

The **helpdesk** (``helpdesk``, at a city, district or school) opens the console too, to
help people sign in; it appoints nobody and registers no app. The unit's own administrator
appoints and ends it (or one above, or an operator: ``--helpdesk``).

A role is **current** from its ``valid_from`` (not in the future) until it is ended; ending
it sets ``valid_to`` to today, and it is gone at once (history is kept).

**Nobody is appointed soon after being helped.** Whoever gives an account a temporary
password, or removes its second factors (the helpdesk, an administrator, an operator: it
sets ``Account.helped_at``), knows for a while enough to sign in as that person and enrol
an authenticator of their own before the person does. Appointed then, the account would
be theirs with its console role. So no console role is given for
``HELP_QUARANTINE_DAYS`` after such help (``HelpedRecently``); by then a person locked out
of their own account has noticed and asked. An operator may still appoint
(``despite_help``: ``idp admin appoint --despite-help``), having checked with the person.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Select, func, literal, select
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import utcnow
from directory.models import (
    ADMIN_ROLES,
    CONSOLE_ROLES,
    Account,
    Affiliation,
    OrgKind,
    OrgUnit,
    Person,
    Role,
)

# Who may be appointed: the unit's staff, never a pupil or a guardian
STAFF_ROLES = frozenset({Role.teacher.value, Role.head_teacher.value, Role.staff.value})
ROLE_FOR_KIND = {OrgKind.city.value: Role.city_admin, OrgKind.district.value: Role.district_admin,
                 OrgKind.school.value: Role.school_admin}
HELP_QUARANTINE_DAYS = 30  # no console role this long after a temporary password or reset


class HelpedRecently(ValueError):
    """The account was given a temporary password or had its second factors removed by
    someone else less than ``HELP_QUARANTINE_DAYS`` ago (``until``: when it may be
    appointed)."""

    def __init__(self, until: date) -> None:
        super().__init__(f"helped (temporary password or second factors reset) less than "
                         f"{HELP_QUARANTINE_DAYS} days ago: not before {until.isoformat()}")
        self.until = until


def helped_until(account: Account | None) -> date | None:
    """The first day the account may be given a console role again after someone else's
    help (a whole day: the quarantine ends during the day before, unless at midnight);
    None when that is not in the future."""
    if account is None or account.helped_at is None:
        return None
    ends = account.helped_at + timedelta(days=HELP_QUARANTINE_DAYS)
    if ends <= utcnow():
        return None
    # in the server's time zone, as ``date.today()`` dates the roles (UTC would give a
    # Beijing administrator a day that is refused until 08:00)
    return (ends - timedelta(microseconds=1)).astimezone().date() + timedelta(days=1)


def console_posts(session: Session, account_id: int) -> list[tuple[OrgUnit, bool]]:
    """The open units where the account's person holds a current role of the console
    (``CONSOLE_ROLES``), in tree order, each with whether it is an administrator's (not
    only the helpdesk's)."""
    full: dict[int, bool] = {}
    units: dict[int, OrgUnit] = {}
    for unit, role in session.execute(
            select(OrgUnit, Affiliation.role)
            .join(Affiliation, Affiliation.org_unit_id == OrgUnit.id)
            .join(Account, Account.person_id == Affiliation.person_id)
            .where(Account.id == account_id, Affiliation.role.in_(CONSOLE_ROLES),
                   Affiliation.valid_from <= date.today(), Affiliation.valid_to.is_(None),
                   OrgUnit.status == "active").order_by(OrgUnit.path)):
        units[unit.id] = unit
        full[unit.id] = full.get(unit.id, False) or role in ADMIN_ROLES
    return [(unit, full[unit.id]) for unit in units.values()]


def _covering(account_id: int, path: str) -> Select[tuple[Affiliation]]:
    """The account's person's current administrator's roles (not only the helpdesk's) at
    the open unit of ``path`` or above it."""
    return (select(Affiliation)
            .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
            .join(Account, Account.person_id == Affiliation.person_id)
            .where(Account.id == account_id, Affiliation.role.in_(ADMIN_ROLES),
                   Affiliation.valid_from <= date.today(), Affiliation.valid_to.is_(None),
                   OrgUnit.status == "active",
                   literal(path).startswith(OrgUnit.path)))


def last_appointment_over(session: Session, account_id: int, path: str) -> int | None:
    """The newest of the appointments by which the account administers the unit of
    ``path`` now (its person's current administrator's roles there or above): the highest
    ``Affiliation`` id, since ids only grow; None: no such role."""
    return session.scalar(_covering(account_id, path)
                          .with_only_columns(func.max(Affiliation.id)))


def holds_appointment_up_to(session: Session, account_id: int, path: str,
                            last_id: int) -> bool:
    """Whether the account's person still holds, over the unit of ``path``, one of the
    appointments it held when ``last_id`` was its newest (``last_appointment_over``): any
    of them goes on, whichever ended; a role ended and given again, even the same day, is
    a new appointment (a higher id) and does not count."""
    return session.scalar(_covering(account_id, path)
                          .where(Affiliation.id <= last_id)
                          .with_only_columns(Affiliation.id).limit(1)) is not None


def administers_since(session: Session, account_id: int, path: str, day: date) -> bool:
    """Whether the account's person has held an administrator's role (not only the
    helpdesk's) at the open unit of ``path`` or above it since ``day`` and holds it still:
    one appointment, begun on ``day`` or before and not ended since. Roles are dated by the
    day, so a role ended and given again on ``day`` itself is not told apart
    (``holds_appointment_up_to`` is exact; this serves what was recorded before it)."""
    return session.scalar(_covering(account_id, path)
                          .where(Affiliation.valid_from <= day)
                          .with_only_columns(Affiliation.id).limit(1)) is not None


def administered(session: Session, account_id: int) -> list[OrgUnit]:
    """The open units where the account's person holds a current role of the console,
    in tree order."""
    return [unit for unit, _full in console_posts(session, account_id)]


def posts(session: Session, person: Person, *,
          helpdesk: bool = False) -> list[tuple[Affiliation, OrgUnit]]:
    """The person's current administrator's roles (the helpdesk's: ``helpdesk``), with
    their units."""
    roles = {Role.helpdesk.value} if helpdesk else ADMIN_ROLES
    return [(affiliation, unit) for affiliation, unit in session.execute(
        select(Affiliation, OrgUnit).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
        .where(Affiliation.person_id == person.id, Affiliation.role.in_(roles),
               Affiliation.valid_to.is_(None)).order_by(OrgUnit.path))]


def appoint(session: Session, person: Person, unit: OrgUnit, *, actor: str,
            context: Context | None = None, helpdesk: bool = False,
            despite_help: bool = False) -> Affiliation:
    """Make the person an administrator of ``unit`` (its helpdesk: ``helpdesk``) from today
    (``ValueError``: a unit of a kind nobody administers, such as a class;
    ``HelpedRecently``: see the module's docstring, unless ``despite_help``)."""
    role = ROLE_FOR_KIND.get(unit.kind)
    if role is None:
        raise ValueError(f"a {unit.kind} has no administrators")
    role = Role.helpdesk if helpdesk else role
    session.execute(select(Person.id).where(Person.id == person.id)  # one appointment of
                    .with_for_update())  # the person at a time: no twin roles
    existing = next((a for a, u in posts(session, person, helpdesk=helpdesk)
                     if u.id == unit.id), None)
    if existing is not None:
        return existing
    account = session.scalar(  # locked and read again: a reset committing meanwhile counts
        select(Account).where(Account.person_id == person.id).with_for_update()
        .execution_options(populate_existing=True))
    until = helped_until(account)
    if until is not None and not despite_help:
        raise HelpedRecently(until)
    affiliation = Affiliation(person=person, org_unit=unit, role=role.value,
                              valid_from=date.today())
    session.add(affiliation)
    session.flush()
    record(session, actor=actor, action="admin.appoint", outcome="success",
           target=f"person:{person.uid}", context=context,
           detail={"unit": unit.code, "role": role.value,
                   **({"despite_help": True} if until is not None else {})})
    return affiliation


def end(session: Session, person: Person, unit: OrgUnit, *, actor: str,
        context: Context | None = None, helpdesk: bool = False) -> bool:
    """End the person's administrator's role (the helpdesk's: ``helpdesk``) at ``unit``
    today; False when they held none."""
    ending = [a for a, u in posts(session, person, helpdesk=helpdesk) if u.id == unit.id]
    for affiliation in ending:
        affiliation.valid_to = date.today()
    if ending:
        record(session, actor=actor, action="admin.end", outcome="success",
               target=f"person:{person.uid}", context=context,
               detail={"unit": unit.code, "role": ending[0].role})
    return bool(ending)
