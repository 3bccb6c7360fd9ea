"""SCIM Groups: the org units inside a token's scope.

``id`` is the unit's id, ``displayName`` its name, ``externalId`` its code,
``members`` the users with a current affiliation with the unit itself (not its
sub-units) in a role other than an administrator's: an administrator's role is the admin
console's to grant and to end, so it neither makes a member nor ends with a removal.
A group created by SCIM is a department directly under the token's root unit; its code
is the client's ``externalId``, or a placeholder (``SCIM-...``, never shown) while it has
none. Other units come from the authoritative import: SCIM cannot change their code nor
delete them."""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

from scim2_models import (
    Context,
    InvalidValueException,
    Meta,
    MutabilityException,
    NotFoundException,
    UniquenessException,
)
from sqlalchemy import ColumnElement, case, exists, select
from sqlalchemy.orm import Session, aliased

from core.db import utcnow
from directory.api_tokens import TokenScope
from directory.models import CONSOLE_ROLES, Account, Affiliation, OrgKind, OrgUnit, Person, Role
from directory.people import affiliate
from directory.scim.directory_view import in_scope, is_current, person_visible, today, unit_visible
from directory.scim.filters import Attr
from directory.scim.protocol import version_of
from directory.scim.resources import ASSIGNABLE_ROLES, GroupMember, GroupResource

ROLE_ORDER = [role.value for role in Role]
PLACEHOLDER = "SCIM-"  # code prefix of a SCIM-made department without an externalId


def visible_groups(scope: TokenScope) -> Any:
    return select(OrgUnit).where(unit_visible(scope))


def find(session: Session, scope: TokenScope, group_id: str) -> OrgUnit:
    unit = None
    if group_id.isascii() and group_id.isdigit() and len(group_id) < 18:  # not "²"
        unit = session.scalar(visible_groups(scope).where(OrgUnit.id == int(group_id)))
    if unit is None:
        raise NotFoundException(detail="No such group.")
    return unit


def external_id_column() -> Any:
    return case((OrgUnit.code.startswith(PLACEHOLDER), None), else_=OrgUnit.code)


def external_id(unit: OrgUnit) -> str | None:
    return None if unit.code.startswith(PLACEHOLDER) else unit.code


def _members_attr(scope: TokenScope) -> Attr:
    affiliation, person = aliased(Affiliation), aliased(Person)

    def where(condition: ColumnElement[bool] | None) -> ColumnElement[bool]:
        query = (select(affiliation.id).join(person, person.id == affiliation.person_id)
                 .where(affiliation.org_unit_id == OrgUnit.id, is_current(affiliation),
                        affiliation.role.not_in(CONSOLE_ROLES)))
        return exists(query.where(condition) if condition is not None else query)

    return Attr(column=person.uid, case_exact=True, exists=where)


def filter_attributes(scope: TokenScope) -> dict[str, Attr]:
    members = _members_attr(scope)
    return {
        "id": Attr(column=OrgUnit.id.cast(_text()), case_exact=True),
        "externalid": Attr(column=external_id_column(), case_exact=True),
        "displayname": Attr(column=OrgUnit.name),
        "members": members,
        "members.value": members,
        "meta.created": Attr(column=OrgUnit.created_at, kind="datetime"),
        "meta.lastmodified": Attr(column=OrgUnit.updated_at, kind="datetime"),
    }


def _text() -> Any:
    from sqlalchemy import String

    return String()


def sort_columns() -> dict[str, Any]:
    return {"id": OrgUnit.id, "displayname": OrgUnit.name, "externalid": external_id_column(),
            "meta.created": OrgUnit.created_at, "meta.lastmodified": OrgUnit.updated_at}


def render(session: Session, scope: TokenScope, base_url: str, units: list[OrgUnit],
           with_members: bool = True) -> list[GroupResource]:
    if not units:
        return []
    ids = [u.id for u in units]
    members: dict[int, list[str]] = defaultdict(list)
    if with_members:
        for unit_id, uid in session.execute(
                select(Affiliation.org_unit_id, Person.uid)
                .join(Person, Person.id == Affiliation.person_id)
                .join(Account, Account.person_id == Person.id)
                .where(Affiliation.org_unit_id.in_(ids), is_current(),
                       Affiliation.role.not_in(CONSOLE_ROLES))
                .order_by(Affiliation.id)):
            if uid not in members[unit_id]:
                members[unit_id].append(uid)
    result = []
    for unit in units:
        group = GroupResource(
            id=str(unit.id), external_id=external_id(unit), display_name=unit.name,
            members=[GroupMember(value=uid, ref=f"{base_url}/Users/{uid}", type="User")
                     for uid in members[unit.id]] or None,
        )
        group.meta = Meta(resource_type="Group", created=unit.created_at,
                          last_modified=unit.updated_at, location=f"{base_url}/Groups/{unit.id}")
        if with_members:
            group.meta.version = version_of(
                unit.updated_at, group.model_dump_json(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
        result.append(group)
    return result


class GroupWriter:
    def __init__(self, session: Session, scope: TokenScope) -> None:
        self.session, self.scope = session, scope
        self.changed: list[str] = []

    def create(self, desired: GroupResource) -> OrgUnit:
        root = self.session.get(OrgUnit, self.scope.org_unit_id)
        assert root is not None  # an API token always has its unit
        unit = OrgUnit(code=_placeholder(), name=self._name(desired),
                       kind=OrgKind.department.value, parent=root)
        self.session.add(unit)
        self.session.flush()
        unit.path = f"{root.path}{unit.id}/"
        self.session.flush()
        self.apply(unit, desired, current=None)
        return unit

    def apply(self, unit: OrgUnit, desired: GroupResource, current: GroupResource | None) -> None:
        name = self._name(desired)
        if name != unit.name:
            unit.name = name
            self.changed.append("displayName")
        self._external_id(unit, desired.external_id)
        wanted = [m.value for m in desired.members or [] if m.value]
        had = [m.value for m in (current.members or [])] if current else []
        if set(wanted) != set(had):
            self._members(unit, set(wanted), set(had))
            self.changed.append("members")
        unit.updated_at = utcnow()

    def _name(self, desired: GroupResource) -> str:
        name = (desired.display_name or "").strip()
        if not name or len(name) > 200:
            raise InvalidValueException(detail="displayName must hold 1 to 200 characters.")
        return name

    def _external_id(self, unit: OrgUnit, value: str | None) -> None:
        if value == external_id(unit):
            return
        if unit.kind != OrgKind.department.value:
            if value is None:
                return  # an official code cannot be cleared; a PUT without it keeps it
            raise MutabilityException(
                detail="The externalId of this unit is its official code, set by the import.")
        if value is not None:
            value = value.strip()
            if not value or len(value) > 64 or value.upper().startswith(PLACEHOLDER):
                raise InvalidValueException(
                    detail="externalId must hold 1 to 64 characters, not starting with SCIM-.")
            if self.session.scalar(select(OrgUnit.id).where(
                    OrgUnit.code == value, OrgUnit.id != unit.id)) is not None:
                raise UniquenessException(detail="Another unit has this code.")
        unit.code = value if value is not None else _placeholder()
        self.session.flush()
        self.changed.append("externalId")

    def _members(self, unit: OrgUnit, wanted: set[str], had: set[str]) -> None:
        people = {p.uid: p for p in self.session.scalars(
            select(Person).join(Account, Account.person_id == Person.id)
            .where(Person.uid.in_(wanted), person_visible(self.scope)))}
        if set(people) != wanted:
            raise InvalidValueException(detail="A member is not a user visible to this token.")
        day = today()
        for aff in self.session.scalars(
                select(Affiliation).join(Person, Person.id == Affiliation.person_id)
                .where(Affiliation.org_unit_id == unit.id, is_current(),
                       Person.uid.not_in(wanted), Affiliation.role.not_in(CONSOLE_ROLES))):
            aff.valid_to = day
        for uid in sorted(wanted - had):
            person = people[uid]
            affiliate(self.session, person, unit, Role(self._role(person)), day)
        self.session.flush()

    def _role(self, person: Person) -> str:
        roles = set(self.session.scalars(
            select(Affiliation.role).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
            .where(Affiliation.person_id == person.id, is_current(), in_scope(self.scope))))
        # an administrator's role is never carried to another unit: it is granted there
        known = sorted(roles & set(ASSIGNABLE_ROLES), key=ROLE_ORDER.index)
        return known[0] if known else Role.staff.value


def _placeholder() -> str:
    return f"{PLACEHOLDER}{secrets.token_hex(8).upper()}"


def close(session: Session, scope: TokenScope, unit: OrgUnit) -> None:
    """DELETE: only a department below the token's root, without active sub-units."""
    if unit.kind != OrgKind.department.value or unit.id == scope.org_unit_id:
        raise MutabilityException(
            detail="Only departments below the token's root unit can be deleted by SCIM.")
    child = session.scalar(select(OrgUnit.id).where(
        OrgUnit.parent_id == unit.id, OrgUnit.status == "active").limit(1))
    if child is not None:
        raise MutabilityException(detail="The unit still has active sub-units.")
    day = today()
    for aff in session.scalars(select(Affiliation).where(
            Affiliation.org_unit_id == unit.id, is_current())):
        aff.valid_to = day
    unit.status = "closed"
    unit.updated_at = utcnow()
