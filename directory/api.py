"""The directory's JSON API for the admin console (``/api/directory``).

- **Authentication**: a bearer API token (``directory.api_tokens``) with the
  ``directory:read`` permission. No or an unknown token: 401; a token without
  the permission: 403; both as ``application/problem+json``.
- **Scope**: a token sees only its org subtree. An org unit is visible when its
  path is inside the token's subtree; a person when any of their affiliations
  (current or ended: the school's own history) is to a visible unit. Anything
  else answers 404, exactly like something that does not exist.
- **Search** (``GET /people``): exactly one of ``name`` (substring),
  ``identifier`` (a login identifier, normalised, exact: student or teacher
  number, username, e-mail) or ``phone`` (exact, through the blind index).
- **Pagination**: keyset cursors (opaque ``next_cursor``; pass it as
  ``cursor``), ``limit`` up to 200. Stable under concurrent inserts, and cheap
  on the millionth row.
- **Personal data**: national ID and phone only masked (``110***********1234``).
  Phone logins are shown as the masked phone, never as their blind index.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Select, exists, or_, select
from sqlalchemy.orm import Session

from core.field_crypto import blind_index_candidates, open_
from core.settings import Settings
from core.web.errors import Problem
from directory.api_tokens import TokenScope, require
from directory.identifiers import guess_kinds, normalise, normalise_phone
from directory.models import (
    ADMIN_ROLES,
    NATIONAL_ID,
    PHONE,
    PHONE_LOGIN,
    Account,
    Affiliation,
    GuardianLink,
    IdentifierKind,
    LoginIdentifier,
    OrgUnit,
    Person,
)
from directory.pii import mask_national_id, mask_phone
from directory.scopes import Scope

PERMISSION = "directory:read"
MAX_LIMIT = 200

router = APIRouter(prefix="/api/directory", tags=["directory"])


# --- dependencies ---------------------------------------------------------------------------

def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


def _scope(request: Request, session: Session = Depends(_session)) -> TokenScope:
    return require(request, session, _settings(request), PERMISSION, "directory")


# --- cursors and visibility -----------------------------------------------------------------

def _encode(value: str | int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem(400, "Invalid cursor", "Pass next_cursor exactly as received.") from None


def _after_id(cursor: str | None) -> int:
    value = _decode(cursor)
    if value is None:
        return 0
    if not (value.isascii() and value.isdigit() and int(value) <= MAX_ID):  # "²".isdigit()
        raise Problem(400, "Invalid cursor", "Pass next_cursor exactly as received.")
    return int(value)


MAX_ID = 2**31 - 1  # ids are 32-bit: a larger cursor is none this API wrote
_UNIT_PATH = re.compile(r"/(?:[0-9]{1,10}/)*\Z")


def _after_path(cursor: str | None) -> str | None:
    """An org-units cursor: a unit path as this API writes it (``/1/5/23/``), or None."""
    value = _decode(cursor)
    if value is not None and not _UNIT_PATH.match(value):  # a NUL, text, ...: not ours
        raise Problem(400, "Invalid cursor", "Pass next_cursor exactly as received.")
    return value


def visible_person(scope: Scope) -> Any:
    """SQL: the person has an affiliation (current or ended) inside the token's subtree."""
    return exists().where(Affiliation.person_id == Person.id,
                          Affiliation.org_unit_id == OrgUnit.id,
                          OrgUnit.path.startswith(scope.org_path))


def managed_person(scope: Scope) -> Any:
    """SQL: the person is *managed* inside the token's subtree: at least one current
    affiliation there, none elsewhere, and no administrator's post at the subtree's root.
    What may change how a person signs in (a password or second-factor reset, unlocking,
    signing out) needs this, not mere visibility: a school's token must not reach a
    teacher who moved to another school, nor a district or city administrator who also
    teaches there, nor the school's own administrator (a school token holding both resets
    would otherwise take over the account that administers the school: an administrator
    is reset from above, or by an operator's ``idp security`` command)."""
    current = (Affiliation.person_id == Person.id) & Affiliation.valid_to.is_(None)
    inside = OrgUnit.path.startswith(scope.org_path)
    at_root_as_admin = (OrgUnit.path == scope.org_path) & Affiliation.role.in_(ADMIN_ROLES)
    return (exists().where(current, Affiliation.org_unit_id == OrgUnit.id, inside)
            & ~exists().where(current, Affiliation.org_unit_id == OrgUnit.id, ~inside)
            & ~exists().where(current, Affiliation.org_unit_id == OrgUnit.id,
                              at_root_as_admin))


def _visible_unit(session: Session, scope: Scope, code: str) -> OrgUnit:
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if unit is None or not scope.covers(unit.path):
        raise Problem(404, "Not found", "No such org unit.")
    return unit


# --- representations ------------------------------------------------------------------------

def _unit(unit: OrgUnit) -> dict[str, Any]:
    return {"code": unit.code, "name": unit.name, "kind": unit.kind, "status": unit.status,
            "path": unit.path}


def current_placements(session: Session, scope: Scope,
                        person_ids: list[int]) -> dict[int, list[dict]]:
    """The current placements of these people inside the token's subtree (those elsewhere
    are not the token's to see, as in a person's own answer)."""
    found: dict[int, list[dict]] = {pid: [] for pid in person_ids}
    if not person_ids:
        return found
    rows = session.execute(
        select(Affiliation.person_id, Affiliation.role, OrgUnit.code, OrgUnit.name)
        .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
        .where(Affiliation.person_id.in_(person_ids), Affiliation.valid_to.is_(None),
               OrgUnit.path.startswith(scope.org_path))
        .order_by(Affiliation.id))
    for pid, role, code, name in rows:
        found[pid].append({"role": role, "unit": code, "unit_name": name})
    return found


def _summaries(session: Session, scope: Scope,
               people: list[Person]) -> list[dict[str, Any]]:
    placements = current_placements(session, scope, [p.id for p in people])
    return [{"id": p.uid, "name": p.name, "status": p.status, "current": placements[p.id]}
            for p in people]


def _page(session: Session, scope: Scope, query: Select, limit: int,
          key: Any) -> dict[str, Any]:
    people = list(session.scalars(query.order_by(key).limit(limit + 1)))
    more = len(people) > limit
    people = people[:limit]
    return {"items": _summaries(session, scope, people),
            "next_cursor": _encode(people[-1].id) if more else None}


# --- people ---------------------------------------------------------------------------------

def _matching(settings: Settings, name: str | None, identifier: str | None,
              phone: str | None) -> Any:
    given = [v for v in (name, identifier, phone) if v]
    if len(given) != 1:
        raise Problem(400, "Invalid search", "Give exactly one of name, identifier or phone.")
    if name:
        return Person.name.contains(name.strip(), autoescape=True)
    if identifier:
        return _by_identifier(identifier)
    number = normalise_phone(phone or "")
    if number is None:
        raise Problem(400, "Invalid search", "phone is not a mainland mobile number.")
    indexes = blind_index_candidates(settings, "phone", number)
    login = exists().where(Account.person_id == Person.id,
                           LoginIdentifier.account_id == Account.id,
                           LoginIdentifier.kind == IdentifierKind.phone.value,
                           LoginIdentifier.value.in_(indexes))
    return or_(Person.phone_bidx.in_(indexes), login)


def anything_matching(settings: Settings, text: str) -> Any:
    """SQL: people whom one search box's ``text`` names (the console): a mobile number
    (through the blind index), else a login identifier or a part of the name."""
    text = text.strip()
    if normalise_phone(text) is not None:
        return _matching(settings, None, None, text)
    return or_(_by_identifier(text), Person.name.contains(text, autoescape=True))


def _by_identifier(raw: str) -> Any:
    conditions = []
    for kind in guess_kinds(raw):
        if kind is IdentifierKind.phone:
            continue
        try:
            value = normalise(kind, raw)
        except ValueError:
            continue
        conditions.append((LoginIdentifier.kind == kind.value) & (LoginIdentifier.value == value))
    return exists().where(Account.person_id == Person.id, LoginIdentifier.account_id == Account.id,
                          or_(*conditions) if conditions else False)


@router.get("/people")
def search_people(
    request: Request,
    name: str | None = Query(None, max_length=100),
    identifier: str | None = Query(None, max_length=200),
    phone: str | None = Query(None, max_length=30),
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    session: Session = Depends(_session),
    scope: TokenScope = Depends(_scope),
) -> dict[str, Any]:
    """Search people by name, login identifier or phone, inside the token's subtree."""
    condition = _matching(_settings(request), name, identifier, phone)
    query = select(Person).where(condition, visible_person(scope),
                                 Person.id > _after_id(cursor))
    return _page(session, scope, query, limit, Person.id)


@router.get("/people/{uid}")
def show_person(
    request: Request, uid: str, session: Session = Depends(_session),
    scope: TokenScope = Depends(_scope),
) -> dict[str, Any]:
    """One person: masked personal data, account, identifiers, affiliations with history."""
    person = session.scalar(select(Person).where(Person.uid == uid, visible_person(scope)))
    if person is None:
        raise Problem(404, "Not found", "No such person.")
    return person_view(session, _settings(request), scope, person)


def person_view(session: Session, settings: Settings, scope: Scope,
                person: Person) -> dict[str, Any]:
    """What an administrator in ``scope`` sees of a visible person (the API's answer,
    the console's person page)."""
    phone = open_(settings, PHONE, person)
    return {
        "id": person.uid, "name": person.name, "gender": person.gender,
        "birth_date": person.birth_date.isoformat() if person.birth_date else None,
        "status": person.status,
        "national_id": mask_national_id(open_(settings, NATIONAL_ID, person)) or None,
        "phone": mask_phone(phone) or None,
        "account": _account(settings, person, phone),
        "affiliations": _affiliations(session, scope, person),
        "guardians": _links(session, scope, GuardianLink.student_id, GuardianLink.guardian_id,
                            person),
        "students": _links(session, scope, GuardianLink.guardian_id, GuardianLink.student_id,
                           person),
    }


def _account(settings: Settings, person: Person, phone: str | None) -> dict[str, Any] | None:
    account = person.account
    if account is None:
        return None
    identifiers = [{"kind": i.kind, "value": _shown(settings, i, phone)}
                   for i in sorted(account.identifiers, key=lambda i: (i.kind, i.id))]
    return {"disabled": account.disabled, "has_password": account.password_hash is not None,
            "identifiers": identifiers}


def _shown(settings: Settings, login: LoginIdentifier, phone: str | None) -> str | None:
    """A login identifier as shown: a phone login's own number, masked (sealed beside its
    index since migration 0017; before, known only when it is the number on file: None
    otherwise, a guardian's second phone)."""
    if login.kind != IdentifierKind.phone.value:
        return login.value
    if login.number_enc is not None:
        return mask_phone(open_(settings, PHONE_LOGIN, login))
    on_file = phone and login.value in blind_index_candidates(settings, "phone", phone)
    return mask_phone(phone) if on_file else None


def _affiliations(session: Session, scope: Scope, person: Person) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Affiliation, OrgUnit).join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
        .where(Affiliation.person_id == person.id)
        .order_by(Affiliation.valid_from.desc(), Affiliation.id.desc()))
    today = date.today()
    return [{
        "role": a.role, "unit": u.code, "unit_name": u.name, "unit_kind": u.kind,
        "valid_from": a.valid_from.isoformat(),
        "valid_to": a.valid_to.isoformat() if a.valid_to else None,
        "current": a.valid_to is None or a.valid_to > today,
    } for a, u in rows if scope.covers(u.path)]


def _links(session: Session, scope: Scope, mine: Any, theirs: Any,
           person: Person) -> list[dict[str, Any]]:
    """The person's guardians or students whom the token may see (a guardian's child in
    another school is not named)."""
    rows = session.execute(select(Person.uid, GuardianLink.relation)
                           .join(GuardianLink, theirs == Person.id)
                           .where(mine == person.id, visible_person(scope)))
    return [{"id": uid, "relation": relation} for uid, relation in rows]


# --- org units ------------------------------------------------------------------------------

@router.get("/org-units")
def list_subtree(
    root: str | None = Query(None, max_length=64, description="Code of the subtree's root "
                             "(default: the token's own root)."),
    cursor: str | None = Query(None, max_length=600),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    session: Session = Depends(_session),
    scope: TokenScope = Depends(_scope),
) -> dict[str, Any]:
    """The org units of a subtree in path order (a unit before its children)."""
    top = (_visible_unit(session, scope, root) if root
           else session.get(OrgUnit, scope.org_unit_id))
    query = select(OrgUnit).where(OrgUnit.path.startswith(top.path))
    after = _after_path(cursor)
    if after is not None:
        query = query.where(OrgUnit.path > after)
    units = list(session.scalars(query.order_by(OrgUnit.path).limit(limit + 1)))
    more = len(units) > limit
    units = units[:limit]
    return {"root": _unit(top), "items": [_unit(u) for u in units],
            "next_cursor": _encode(units[-1].path) if more else None}


@router.get("/org-units/{code}/people")
def list_members(
    code: str,
    role: str | None = Query(None, max_length=20),
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    session: Session = Depends(_session),
    scope: TokenScope = Depends(_scope),
) -> dict[str, Any]:
    """People with a current affiliation anywhere in the unit's subtree."""
    unit = _visible_unit(session, scope, code)
    member = exists().where(
        Affiliation.person_id == Person.id, Affiliation.org_unit_id == OrgUnit.id,
        Affiliation.valid_to.is_(None), OrgUnit.path.startswith(unit.path),
        *([Affiliation.role == role] if role else []))
    query = select(Person).where(member, Person.id > _after_id(cursor))
    return {"unit": _unit(unit), **_page(session, scope, query, limit, Person.id)}
