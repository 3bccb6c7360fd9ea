"""What a token sees of the directory: current affiliations inside its subtree.

A person is visible to a token while they hold a current affiliation (started,
not ended) with a unit inside the token's subtree; an org unit is visible while
it is active and inside the subtree. Everything else is "not found".
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import ColumnElement, and_, exists, or_, select

from directory.api_tokens import TokenScope
from directory.models import Affiliation, OrgKind, OrgUnit, Person

PLACEMENT_KINDS = (OrgKind.school.value, OrgKind.campus.value, OrgKind.grade.value,
                   OrgKind.class_.value)


def today() -> date:
    return date.today()


def is_current(affiliation: type[Affiliation] = Affiliation) -> ColumnElement[bool]:
    day = today()
    return and_(affiliation.valid_from <= day,
                or_(affiliation.valid_to.is_(None), affiliation.valid_to > day))


def in_scope(scope: TokenScope, unit: type[OrgUnit] = OrgUnit) -> ColumnElement[bool]:
    return unit.path.startswith(scope.org_path)


def person_visible(scope: TokenScope) -> ColumnElement[bool]:
    return exists(
        select(Affiliation.id).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
        .where(Affiliation.person_id == Person.id, is_current(), in_scope(scope))
    )


def unit_visible(scope: TokenScope) -> ColumnElement[bool]:
    return and_(in_scope(scope), OrgUnit.status == "active")


def path_ids(path: str) -> list[int]:
    return [int(part) for part in path.strip("/").split("/") if part]
