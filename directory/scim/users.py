"""SCIM Users: a directory person with an account, seen through a token's scope.

Mapping (see docs/scim.md for the table):

- ``id`` is ``Person.uid``; ``userName`` is the primary login identifier
  (username, else student number, else teacher number, else e-mail);
- ``name.formatted`` is ``Person.name``; ``familyName``/``givenName`` are derived
  (surname / the rest, ``directory.names``), never stored, returned on request only;
- ``active`` is "person status active and account not disabled";
- ``emails`` are e-mail login identifiers; ``phoneNumbers`` holds the one phone
  number, stored encrypted (``core.field_crypto``) and never logged;
- the education extension's ``schoolCode``/``grade``/``class``/``roles`` are the
  person's placement: their current affiliations with a school, grade or class
  inside the token's scope.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
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
from core.field_crypto import blind_index_candidates, open_, seal
from core.settings import Settings
from directory import names
from directory.api import managed_person
from directory.api_tokens import TokenScope
from directory.identifiers import NAME_KINDS, has_invisible, normalise, normalise_phone
from directory.models import (
    ADDRESS,
    CONSOLE_ROLES,
    PHONE,
    Account,
    Affiliation,
    IdentifierKind,
    LoginIdentifier,
    OrgUnit,
    Person,
    PersonStatus,
    Role,
)
from directory.scim.directory_view import (
    PLACEMENT_KINDS,
    in_scope,
    is_current,
    path_ids,
    person_visible,
    today,
)
from directory.scim.filters import Attr
from directory.scim.models import ScimExternalId
from directory.scim.protocol import version_of
from directory.scim.resources import (
    ASSIGNABLE_ROLES,
    EDU_USER_SCHEMA,
    USER_SCHEMA,
    Address,
    EducationUser,
    Email,
    GroupMembership,
    Name,
    PhoneNumber,
    UserResource,
)

OUTSIDE = ("This person is not managed by this token (also placed outside its scope, or an "
           "administrator of its root unit): only their placement inside it may change here.")
ADMINISTRATOR = ("This person holds an administrator's or helpdesk role in the token's scope: "
                 "only the admin console ends it.")
PRIMARY_KINDS = [IdentifierKind.username, IdentifierKind.student_number,
                 IdentifierKind.teacher_number, IdentifierKind.email]
ROLE_ORDER = [role.value for role in Role]
_OTHER_PHONE = re.compile(r"^\+?\d{5,15}\Z")


def primary_identifier() -> Any:
    """The userName of the account in the enclosing query, as a scalar subquery."""
    li = aliased(LoginIdentifier)
    rank = case({k.value: i for i, k in enumerate(PRIMARY_KINDS)}, value=li.kind)
    return (select(li.value)
            .where(li.account_id == Account.id, li.kind.in_([k.value for k in PRIMARY_KINDS]))
            .order_by(rank, li.id).limit(1).correlate(Account).scalar_subquery())


def external_id_column() -> Any:
    return (select(ScimExternalId.value).where(ScimExternalId.person_id == Person.id)
            .correlate(Person).scalar_subquery())


def visible_users(scope: TokenScope) -> Any:
    return select(Person, Account).join(Account, Account.person_id == Person.id).where(
        person_visible(scope))


def find(session: Session, scope: TokenScope, uid: str) -> tuple[Person, Account]:
    row = session.execute(visible_users(scope).where(Person.uid == uid)).first()
    if row is None:
        raise NotFoundException(detail="No such user.")
    return row[0], row[1]


# -- filters and sorting ------------------------------------------------------------


def _identifier(kind: IdentifierKind) -> Attr:
    li = aliased(LoginIdentifier)

    def where(condition: ColumnElement[bool] | None) -> ColumnElement[bool]:
        query = select(li.id).where(li.account_id == Account.id, li.kind == kind.value)
        return exists(query.where(condition) if condition is not None else query)

    return Attr(column=li.value, exists=where)


def _placement(scope: TokenScope, kind: str | None) -> Attr:
    """Any current placement inside the scope whose ``kind`` unit (or, without one, role)
    matches."""
    affiliation, unit, above = aliased(Affiliation), aliased(OrgUnit), aliased(OrgUnit)

    def where(condition: ColumnElement[bool] | None) -> ColumnElement[bool]:
        query = (select(affiliation.id).join(unit, unit.id == affiliation.org_unit_id)
                 .where(affiliation.person_id == Person.id, is_current(affiliation),
                        in_scope(scope, unit), unit.kind.in_(PLACEMENT_KINDS)))
        if kind is not None:
            query = query.join(above, unit.path.startswith(above.path)).where(above.kind == kind)
        return exists(query.where(condition) if condition is not None else query)

    return Attr(column=affiliation.role if kind is None else above.code, exists=where)


def filter_attributes(settings: Settings, scope: TokenScope) -> dict[str, Attr]:
    def phone(op: str, value: str | None) -> ColumnElement[bool]:
        if op == "pr":
            return Person.phone_enc.is_not(None)
        number = _normal_phone(value or "")
        return Person.phone_bidx.in_(blind_index_candidates(settings, "phone", number))

    phone_attr = Attr(ops=frozenset({"eq", "pr"}), custom=phone)
    email = _identifier(IdentifierKind.email)
    ext = EDU_USER_SCHEMA.lower()
    attributes = {
        "id": Attr(column=Person.uid, case_exact=True),
        "externalid": Attr(column=external_id_column(), case_exact=True),
        "username": Attr(column=primary_identifier()),
        "name": Attr(column=Person.name),
        "name.formatted": Attr(column=Person.name),
        "active": Attr(column=(Person.status == PersonStatus.active.value)
                       & Account.disabled.is_(False), kind="boolean"),
        "emails": email,
        "emails.value": email,
        "phonenumbers": phone_attr,
        "phonenumbers.value": phone_attr,
        "meta.created": Attr(column=Person.created_at, kind="datetime"),
        "meta.lastmodified": Attr(column=Person.updated_at, kind="datetime"),
        f"{ext}:studentnumber": _identifier(IdentifierKind.student_number),
        f"{ext}:teachernumber": _identifier(IdentifierKind.teacher_number),
    }
    for name, kind in (("schoolcode", "school"), ("grade", "grade"), ("class", "class"),
                       ("roles", None)):
        attributes[f"{ext}:{name}"] = _placement(scope, kind)
    return attributes


def sort_columns() -> dict[str, Any]:
    return {
        "id": Person.uid, "username": primary_identifier(), "name": Person.name,
        "name.formatted": Person.name, "externalid": external_id_column(),
        "meta.created": Person.created_at, "meta.lastmodified": Person.updated_at,
    }


# -- reading ------------------------------------------------------------------------


@dataclass
class Placement:
    unit: OrgUnit | None = None
    school: str | None = None
    grade: str | None = None
    class_: str | None = None
    roles: tuple[str, ...] = ()


def _ordered_roles(roles: set[str]) -> tuple[str, ...]:
    return tuple(sorted(roles, key=lambda r: (ROLE_ORDER.index(r) if r in ROLE_ORDER else 99, r)))


def render(
    session: Session, settings: Settings, scope: TokenScope, base_url: str,
    rows: list[tuple[Person, Account]],
) -> list[UserResource]:
    """The SCIM representation of people, loading related rows in a few batched queries."""
    if not rows:
        return []
    person_ids = [p.id for p, _ in rows]
    identifiers: dict[int, list[LoginIdentifier]] = defaultdict(list)
    for li in session.scalars(select(LoginIdentifier).where(
            LoginIdentifier.account_id.in_([a.id for _, a in rows])).order_by(LoginIdentifier.id)):
        identifiers[li.account_id].append(li)
    affiliations: dict[int, list[tuple[Affiliation, OrgUnit]]] = defaultdict(list)
    for aff, unit in session.execute(
            select(Affiliation, OrgUnit).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
            .where(Affiliation.person_id.in_(person_ids), is_current(), in_scope(scope))
            .order_by(Affiliation.id)):
        affiliations[aff.person_id].append((aff, unit))
    above_ids = {i for items in affiliations.values() for _, u in items for i in path_ids(u.path)}
    units = {u.id: u for u in session.scalars(select(OrgUnit).where(OrgUnit.id.in_(above_ids)))}
    external = dict(session.execute(select(ScimExternalId.person_id, ScimExternalId.value)
                                    .where(ScimExternalId.person_id.in_(person_ids))).all())
    return [
        _resource(settings, base_url, person, account, identifiers[account.id],
                  affiliations[person.id], units, external.get(person.id))
        for person, account in rows
    ]


def placement_of(items: list[tuple[Affiliation, OrgUnit]], units: dict[int, OrgUnit]) -> Placement:
    placed = [(a, u) for a, u in items if u.kind in PLACEMENT_KINDS]
    if not placed:
        return Placement()
    _, unit = max(placed, key=lambda au: (au[1].path.count("/"), au[0].valid_from, au[0].id))
    chain = [units[i] for i in path_ids(unit.path) if i in units]
    by_kind = {u.kind: u.code for u in chain}
    return Placement(
        unit=unit, school=by_kind.get("school"), grade=by_kind.get("grade"),
        class_=unit.code if unit.kind == "class" else None,
        roles=_ordered_roles({a.role for a, u in placed if u.id == unit.id}),
    )


def _resource(
    settings: Settings, base_url: str, person: Person, account: Account,
    identifiers: list[LoginIdentifier], items: list[tuple[Affiliation, OrgUnit]],
    units: dict[int, OrgUnit], external_id: str | None,
) -> UserResource:
    by_kind: dict[str, list[str]] = defaultdict(list)
    for li in identifiers:
        by_kind[li.kind].append(li.value)
    user_name = next((by_kind[k.value][0] for k in PRIMARY_KINDS if by_kind.get(k.value)), None)
    phone = open_(settings, PHONE, person)
    address = open_(settings, ADDRESS, person)
    placement = placement_of(items, units)
    groups, seen = [], set()
    for _, unit in items:
        if unit.id not in seen:
            seen.add(unit.id)
            groups.append(GroupMembership(value=str(unit.id), display=unit.name,
                                          ref=f"{base_url}/Groups/{unit.id}"))
    user = UserResource(
        id=person.uid, external_id=external_id, user_name=user_name,
        name=_name(person.name),
        active=person.status == PersonStatus.active.value and not account.disabled,
        emails=[Email(value=v) for v in by_kind["email"]] or None,
        phone_numbers=[PhoneNumber(value=phone)] if phone else None,
        addresses=[Address(formatted=address)] if address else None,
        groups=groups or None,
    )
    user[EducationUser] = EducationUser(
        student_number=(by_kind.get("student_number") or [None])[0],
        teacher_number=(by_kind.get("teacher_number") or [None])[0],
        school_code=placement.school, grade=placement.grade, class_=placement.class_,
        roles=list(placement.roles) or None,
    )
    user.meta = Meta(resource_type="User", created=person.created_at,
                     last_modified=person.updated_at, location=f"{base_url}/Users/{person.uid}")
    user.meta.version = version_of(
        person.updated_at, user.model_dump_json(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return user


# -- writing ------------------------------------------------------------------------


def _normal_phone(raw: str) -> str:
    """A mainland mobile in its 11-digit form; another number as digits (with ``+``)."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    mobile = normalise_phone(text)
    if mobile:
        return mobile
    compact = re.sub(r"[\s\-().]", "", text)
    if _OTHER_PHONE.match(compact):
        return compact
    raise InvalidValueException(detail="phoneNumbers.value is not a phone number.")


class UserWriter:
    """Applies a desired User representation to the directory (create, PUT, PATCH)."""

    def __init__(self, session: Session, settings: Settings, scope: TokenScope) -> None:
        self.session, self.settings, self.scope = session, settings, scope
        self.changed: list[str] = []

    def create(self, desired: UserResource) -> Person:
        name = self._name(desired)
        person = Person(name=name)
        account = Account(person=person, password_hash=None)
        self.session.add_all([person, account])
        self.session.flush()
        self.apply(person, account, desired, current=None)
        return person

    def apply(self, person: Person, account: Account, desired: UserResource,
              current: UserResource | None, *, patch: bool = False) -> None:
        ext = desired[EducationUser] or EducationUser()
        old_ext = (current[EducationUser] if current else None) or EducationUser()
        if patch and old_ext.grade and not ext.grade and ext.class_ == old_ext.class_:
            ext.class_ = None  # removing the grade removes the class inside it
        name = self._name(desired)
        if name != unicodedata.normalize("NFKC", person.name).strip():  # as _name writes it
            person.name = name
            self.changed.append("name")
        self._user_name(account, desired.user_name, current.user_name if current else None)
        if desired.active is not None:
            was = (account.disabled, person.status)
            account.disabled = not desired.active
            if desired.active and person.status == PersonStatus.suspended.value:
                person.status = PersonStatus.active.value
            if (account.disabled, person.status) != was:
                self.changed.append("active")
        self._emails(account, [e.value for e in desired.emails or [] if e.value])
        self._phone(person, desired.phone_numbers or [])
        self._address(person, desired.addresses or [])
        self._external_id(person, desired.external_id)
        self._identifier(account, IdentifierKind.student_number, ext.student_number)
        self._identifier(account, IdentifierKind.teacher_number, ext.teacher_number)
        # an administrator's role is the admin console's: sent or left out, it changes nothing
        wanted = (ext.school_code, ext.grade, ext.class_,
                  sorted(set(ext.roles or ()) - CONSOLE_ROLES))
        had = (old_ext.school_code, old_ext.grade, old_ext.class_,
               sorted(set(old_ext.roles or ()) - CONSOLE_ROLES))
        if current is None or wanted != had:
            self._place(person, ext)
            self.changed.append("placement")
        if current is not None and set(self.changed) - {"placement"} and \
                not self._manages(person):
            raise MutabilityException(detail=OUTSIDE)
        person.updated_at = utcnow()

    def _manages(self, person: Person) -> bool:
        """Whether the token manages the person: the admin API's rule
        (``directory.api.managed_person``: placed inside its scope, nowhere else, and no
        administrator of its root). Otherwise only their placement inside may change."""
        return self.session.scalar(select(Person.id).where(
            Person.id == person.id, managed_person(self.scope))) is not None

    # single attributes

    def _name(self, desired: UserResource) -> str:
        formatted = (desired.name.formatted if desired.name else None) or ""
        formatted = unicodedata.normalize("NFKC", formatted).strip()
        if not formatted or len(formatted) > 100:
            raise InvalidValueException(detail="name.formatted must hold 1 to 100 characters.")
        return formatted

    def _conflict(self, account: Account, kinds: list[IdentifierKind], value: str) -> None:
        taken = self.session.scalar(select(LoginIdentifier.id).where(
            LoginIdentifier.kind.in_([k.value for k in kinds]), LoginIdentifier.value == value,
            LoginIdentifier.account_id != account.id).limit(1))
        if taken is not None:
            raise UniquenessException(detail="This identifier belongs to another user.")

    def _user_name(self, account: Account, wanted: str | None, had: str | None) -> None:
        if not wanted:
            raise InvalidValueException(detail="userName is required.")
        value = normalise(IdentifierKind.username, wanted)
        if has_invisible(wanted):
            raise InvalidValueException(detail="userName holds an invisible character.")
        if not value or len(value) > 200:
            raise InvalidValueException(detail="userName must hold 1 to 200 characters.")
        if had is not None and value == normalise(IdentifierKind.username, had):
            return
        self._conflict(account, list(NAME_KINDS), value)
        self._set_identifier(account, IdentifierKind.username, value)
        self.changed.append("userName")

    def _identifier(self, account: Account, kind: IdentifierKind, raw: str | None) -> None:
        value = normalise(kind, raw) if raw else None
        if value is not None and (not value or len(value) > 200 or has_invisible(raw or "")):
            raise InvalidValueException(detail=f"{kind.value} is not valid.")
        rows = self._rows(account, kind)
        if [r.value for r in rows] == ([value] if value else []):
            return
        if value:  # any name the sign-in form would read it as (find_for_sign_in)
            self._conflict(account, list(NAME_KINDS), value)
        self._set_identifier(account, kind, value)
        self.changed.append(kind.value)

    def _rows(self, account: Account, kind: IdentifierKind) -> list[LoginIdentifier]:
        if account.id is None:
            return []
        return list(self.session.scalars(select(LoginIdentifier).where(
            LoginIdentifier.account_id == account.id, LoginIdentifier.kind == kind.value)
            .order_by(LoginIdentifier.id)))

    def _set_identifier(self, account: Account, kind: IdentifierKind, value: str | None) -> None:
        rows = self._rows(account, kind)
        for row in rows[1:] if value else rows:
            self.session.delete(row)
        if value and rows:
            rows[0].value = value
        elif value:
            self.session.add(LoginIdentifier(account=account, kind=kind.value, value=value))
        self.session.flush()

    def _emails(self, account: Account, raw: list[str]) -> None:
        values: list[str] = []
        for item in raw:
            try:
                value = normalise(IdentifierKind.email, item)
            except ValueError:
                raise InvalidValueException(detail="emails.value is not an e-mail address.") \
                    from None
            if len(value) > 200:
                raise InvalidValueException(detail="emails.value is too long.")
            if value not in values:
                values.append(value)
        rows = self._rows(account, IdentifierKind.email)
        if [r.value for r in rows] == values:
            return
        for value in values:  # also a username written like an e-mail address
            self._conflict(account, [IdentifierKind.email, IdentifierKind.username], value)
        for row in rows:
            self.session.delete(row)
        self.session.flush()
        for value in values:
            self.session.add(LoginIdentifier(account=account, kind="email", value=value))
        self.session.flush()
        self.changed.append("emails")

    def _phone(self, person: Person, numbers: list[PhoneNumber]) -> None:
        values = [n.value for n in numbers if n.value]
        if len(values) > 1:
            raise InvalidValueException(detail="The directory holds one phone number per user.")
        value = _normal_phone(values[0]) if values else None
        if value == open_(self.settings, PHONE, person):
            return
        seal(self.settings, PHONE, person, value)
        self.changed.append("phoneNumbers")

    def _address(self, person: Person, addresses: list[Address]) -> None:
        values = [unicodedata.normalize("NFKC", a.formatted).strip()
                  for a in addresses if a.formatted and a.formatted.strip()]
        if len(values) > 1:
            raise InvalidValueException(detail="The directory holds one address per user.")
        if values and len(values[0]) > 200:
            raise InvalidValueException(detail="addresses.formatted is too long.")
        value = values[0] if values else None
        if value == open_(self.settings, ADDRESS, person):
            return
        seal(self.settings, ADDRESS, person, value)
        self.changed.append("addresses")

    def _external_id(self, person: Person, value: str | None) -> None:
        row = self.session.scalar(select(ScimExternalId).where(
            ScimExternalId.person_id == person.id))
        if value is not None and len(value) > 200:
            raise InvalidValueException(detail="externalId is too long.")
        if (row.value if row else None) == value:
            return
        if row is not None and value is None:
            self.session.delete(row)
        elif row is not None:
            row.value = value
        else:
            self.session.add(ScimExternalId(person_id=person.id, value=value))
        self.changed.append("externalId")

    # placement

    def _unit(self, code: str | None, kind: str, inside: OrgUnit | None) -> OrgUnit | None:
        if not code:
            return None
        unit = self.session.scalar(select(OrgUnit).where(
            OrgUnit.code == code, OrgUnit.kind == kind, OrgUnit.status == "active"))
        if unit is None or (inside is not None and not unit.path.startswith(inside.path)):
            raise InvalidValueException(
                detail=f"Unknown {kind} code, or not inside the school given.")
        return unit

    def _place(self, person: Person, ext: EducationUser) -> None:
        school = self._unit(ext.school_code, "school", None)
        if school is None:
            raise InvalidValueException(detail="schoolCode is required.")
        grade = self._unit(ext.grade, "grade", school)
        klass = self._unit(ext.class_, "class", grade or school)
        target = klass or grade or school
        if not self.scope.covers(target.path):
            raise InvalidValueException(
                detail="Unknown school, grade or class code, or outside the token's scope.")
        roles = set(ext.roles or ())
        if not roles:
            raise InvalidValueException(detail="roles must name at least one role.")
        unknown = roles - set(ROLE_ORDER)
        if unknown:
            raise InvalidValueException(detail=f"Unknown role; use one of {ASSIGNABLE_ROLES}.")
        held_here = set(self.session.scalars(select(Affiliation.role).where(
            Affiliation.person_id == person.id, Affiliation.org_unit_id == target.id,
            is_current())))  # an administrator's role stays where it was granted
        if roles - set(ASSIGNABLE_ROLES) - held_here:
            raise MutabilityException(
                detail="Administrator roles are granted in the admin console, not by SCIM.")
        day = today()
        kept: set[str] = set()
        for aff in self.session.scalars(
                select(Affiliation).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
                .where(Affiliation.person_id == person.id, is_current(), in_scope(self.scope),
                       OrgUnit.kind.in_(PLACEMENT_KINDS))):
            if aff.org_unit_id == target.id and aff.role in roles:
                kept.add(aff.role)
            elif aff.role not in CONSOLE_ROLES:  # the admin console's to end, as to grant
                aff.valid_to = day
        for role in _ordered_roles(roles - kept - CONSOLE_ROLES):
            self.session.add(Affiliation(person=person, org_unit=target, role=role,
                                         valid_from=day))
        self.session.flush()


def deactivate(session: Session, scope: TokenScope, person: Person, account: Account) -> bool:
    """DELETE: end the in-scope affiliations; a person left with none has left.

    Returns whether the person left altogether (status ``left``, account disabled).
    History is kept: nothing is deleted. An administrator's role in scope is the admin
    console's to end, as to grant: such a person is not deleted here (400 mutability).
    """
    day = today()
    in_scope_now = (select(Affiliation).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
                    .where(Affiliation.person_id == person.id, is_current(), in_scope(scope)))
    if session.scalar(in_scope_now.where(Affiliation.role.in_(CONSOLE_ROLES)).limit(1)):
        raise MutabilityException(detail=ADMINISTRATOR)
    for aff in session.scalars(in_scope_now):
        aff.valid_to = day
    session.flush()
    remaining = session.scalar(select(Affiliation.id).where(
        Affiliation.person_id == person.id, is_current()).limit(1))
    person.updated_at = utcnow()
    if remaining is None:
        person.status = PersonStatus.left.value
        account.disabled = True
        return True
    return False


SCHEMAS = [USER_SCHEMA, EDU_USER_SCHEMA]


def _name(formatted: str) -> Name:
    """SCIM ``name``: family and given name only where they can be known (``names.split``)."""
    family, given = names.split(formatted) or (None, None)
    return Name(formatted=formatted, family_name=family, given_name=given)
