"""People and their accounts: creation, identifiers, affiliations, lookup."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.identifiers import normalise
from directory.models import (
    Account,
    Affiliation,
    IdentifierKind,
    LoginIdentifier,
    OrgUnit,
    Person,
    Role,
)


def find_account(session: Session, kind: IdentifierKind, raw: str) -> Account | None:
    try:
        value = normalise(kind, raw)
    except ValueError:
        return None
    return session.scalar(
        select(Account).join(LoginIdentifier)
        .where(LoginIdentifier.kind == kind.value, LoginIdentifier.value == value)
    )


def create_person_with_account(
    session: Session,
    *,
    name: str,
    identifiers: dict[IdentifierKind, str],
    password_hash: str | None,
    gender: str | None = None,
) -> Account:
    person = Person(name=name, gender=gender)
    account = Account(person=person, password_hash=password_hash)
    session.add_all([person, account])
    for kind, raw in identifiers.items():
        session.add(LoginIdentifier(account=account, kind=kind.value, value=normalise(kind, raw)))
    session.flush()
    return account


def affiliate(
    session: Session, person: Person, unit: OrgUnit, role: Role, since: date
) -> Affiliation:
    """Add a current affiliation unless the same one is already current."""
    existing = session.scalar(
        select(Affiliation).where(
            Affiliation.person_id == person.id, Affiliation.org_unit_id == unit.id,
            Affiliation.role == role.value, Affiliation.valid_to.is_(None),
        )
    )
    if existing:
        return existing
    affiliation = Affiliation(person=person, org_unit=unit, role=role.value, valid_from=since)
    session.add(affiliation)
    session.flush()
    return affiliation


def current_roles(session: Session, person_id: int) -> set[str]:
    """The roles a person holds today (affiliations without an end date)."""
    return set(session.scalars(select(Affiliation.role).where(
        Affiliation.person_id == person_id, Affiliation.valid_to.is_(None))))
