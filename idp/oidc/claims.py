"""Claims about the signed-in person, from the directory, by scope (OIDC Core 5.4).

=========  ==========================================================================
scope      claims
=========  ==========================================================================
profile    name, family_name, given_name, gender, birthdate, preferred_username,
           locale, updated_at
email      email, email_verified
phone      phone_number, phone_number_verified (decrypted only here, for this answer)
address    address {formatted} (the directory holds the address as one text, SM4-encrypted)
edu        edu_roles, school {code, name}, grade, class, org_path
=========  ==========================================================================

UserInfo returns the claims of the granted scopes. The ID token carries the
protocol claims and what the ``claims`` parameter asks for in ``id_token``
(within the granted scopes), so ID tokens stay small. ``sub`` is the account's opaque id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.engine import Connection, Row

from core.db import Database
from core.field_crypto import open_
from core.settings import Settings
from directory import names, subjects
from directory.models import (
    ADDRESS,
    PHONE,
    Account,
    Affiliation,
    IdentifierKind,
    LoginIdentifier,
    OrgKind,
    OrgUnit,
    Person,
)
from directory.people import account_standing
from idp.oidc.tokens import Grant

SCOPE_CLAIMS = {
    "profile": ("name", "family_name", "given_name", "gender", "birthdate",
                "preferred_username", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "address": ("address",),
    "edu": ("edu_roles", "school", "grade", "class", "org_path"),
}
_LOGIN_ORDER = (IdentifierKind.username, IdentifierKind.teacher_number,
                IdentifierKind.student_number)

# Core statements, built once (UserInfo is on every app's sign-in path; loading ORM objects
# with joined eager loads cost more than the SQL). Rows, not objects: nothing is written.
_ACCOUNT, _PERSON = Account.__table__, Person.__table__
_IDENTIFIER, _AFFILIATION, _UNIT = (LoginIdentifier.__table__, Affiliation.__table__,
                                    OrgUnit.__table__)


def _person_rows(key: Any) -> Select:
    """The account's person with one row per login identifier (one row if it has none)."""
    return (select(_ACCOUNT.c.disabled, _ACCOUNT.c.signed_out_at, _PERSON.c.status,
                   _PERSON.c.id.label("person_id"),
                   _PERSON.c.uid, _PERSON.c.name,
                   _PERSON.c.gender, _PERSON.c.birth_date, _PERSON.c.phone_enc,
                   _PERSON.c.address_enc,
                   _PERSON.c.updated_at, _IDENTIFIER.c.kind, _IDENTIFIER.c.value)
            .select_from(_ACCOUNT.join(_PERSON, _PERSON.c.id == _ACCOUNT.c.person_id)
                         .outerjoin(_IDENTIFIER, _IDENTIFIER.c.account_id == _ACCOUNT.c.id))
            .where(key == bindparam("key")))


_BY_ACCOUNT_ID, _BY_SUB = _person_rows(_ACCOUNT.c.id), _person_rows(_ACCOUNT.c.sub)
# The person's current affiliations (no end date) with their units' materialised paths.
_CURRENT = (select(_AFFILIATION.c.role, _AFFILIATION.c.org_unit_id, _UNIT.c.path)
            .join_from(_AFFILIATION, _UNIT, _UNIT.c.id == _AFFILIATION.c.org_unit_id)
            .where(_AFFILIATION.c.person_id == bindparam("person_id"),
                   _AFFILIATION.c.valid_to.is_(None))
            .order_by(_AFFILIATION.c.id))
_UNITS = select(_UNIT.c.id, _UNIT.c.kind, _UNIT.c.code, _UNIT.c.name).where(
    _UNIT.c.id.in_(bindparam("ids", expanding=True)))


def _path_ids(path: str) -> list[int]:
    return [int(part) for part in path.strip("/").split("/") if part]


def _edu(connection: Connection, person_id: int) -> dict[str, Any]:
    """From the current affiliations and one query for their units' ancestors (the
    materialised paths name them, root first, the unit itself last)."""
    current = connection.execute(_CURRENT, {"person_id": person_id}).all()
    ids = {unit_id for row in current for unit_id in _path_ids(row.path)}
    units = {u.id: u for u in connection.execute(_UNITS, {"ids": list(ids)})} if ids else {}
    roles, claims = set(), {}
    for affiliation in current:
        roles.add(affiliation.role)
        chain = [units[i] for i in _path_ids(affiliation.path) if i in units]
        by_kind = {u.kind: u for u in chain}
        if OrgKind.school.value in by_kind and "school" not in claims:
            school = by_kind[OrgKind.school.value]
            claims["school"] = {"code": school.code, "name": school.name}
            claims["org_path"] = "/".join(u.code for u in chain)
            if OrgKind.grade.value in by_kind:
                claims["grade"] = by_kind[OrgKind.grade.value].name
            if OrgKind.class_.value in by_kind:
                claims["class"] = by_kind[OrgKind.class_.value].name
    return {"edu_roles": sorted(roles), **claims}


def _all_claims(connection: Connection, settings: Settings, rows: list[Row],
                wanted: set[str]) -> dict[str, Any]:
    person = rows[0]
    identifiers = {row.kind: row.value for row in rows if row.kind is not None}
    claims: dict[str, Any] = {}
    if wanted & set(SCOPE_CLAIMS["profile"]):
        claims.update({"name": person.name, "locale": "zh-CN",
                       "updated_at": int(person.updated_at.timestamp())})
        if parts := names.split(person.name):
            claims["family_name"], claims["given_name"] = parts
        if person.gender:
            claims["gender"] = person.gender
        if person.birth_date:
            claims["birthdate"] = person.birth_date.isoformat()
        username = next((identifiers[k] for k in _LOGIN_ORDER if k in identifiers), None)
        if username:
            claims["preferred_username"] = username
    if wanted & set(SCOPE_CLAIMS["email"]) and IdentifierKind.email in identifiers:
        claims.update({"email": identifiers[IdentifierKind.email], "email_verified": False})
    if wanted & set(SCOPE_CLAIMS["phone"]) and person.phone_enc:
        claims.update({"phone_number": "+86" + (open_(settings, PHONE, person) or ""),
                       "phone_number_verified": False})
    if "address" in wanted and person.address_enc:
        claims["address"] = {"formatted": open_(settings, ADDRESS, person) or ""}
    if wanted & set(SCOPE_CLAIMS["edu"]):
        claims.update(_edu(connection, person.person_id))
    return {k: v for k, v in claims.items() if k in wanted}


def _requested(grant: Grant, member: str) -> set[str]:
    """Claims asked for by name, limited to the scopes granted (phone and e-mail data only
    ever go out with their own scope)."""
    requested = grant.claims.get(member) or {}
    granted = {c for s in grant.scope.split() for c in SCOPE_CLAIMS.get(s, ())}
    return set(requested) & granted if isinstance(requested, dict) else set()


def _for(db: Database, settings: Settings, grant: Grant, wanted: set[str],
         since: float | None = None) -> dict[str, Any] | None:
    """Claims of the grant's account (found by id): one query for the person and their
    login identifiers, two more for ``edu``; read outside a transaction
    (``Database.reading``: claims read a moment apart are harmless). With ``since``, None
    when what began then no longer holds (the account may not sign in, or signed out
    everywhere since): the person's row is read for that even when no claim is wanted."""
    if grant.account_id is None or not (wanted or since is not None):
        return {}
    with db.reading() as connection:
        rows = connection.execute(_BY_ACCOUNT_ID, {"key": grant.account_id}).all()
        if since is not None and not _holds(rows, since):
            return None
        return _all_claims(connection, settings, rows, wanted) if rows and wanted else {}


def _holds(rows: list[Row], since: float) -> bool:
    return bool(rows) and account_standing(rows[0]).allows(since)


def id_token_claims(db: Database, settings: Settings, grant: Grant,
                    since: float | None = None) -> dict[str, Any] | None:
    """The ID token's claims; with ``since`` (a code's issue time), None when the account no
    longer holds what began then (``_for``)."""
    return _for(db, settings, grant, _requested(grant, "id_token"), since)


def userinfo_claims(db: Database, settings: Settings, grant: Grant,
                    issued_at: float) -> dict[str, Any] | None:
    """UserInfo's answer for the token's ``sub``, or ``None`` when the account may no longer
    sign in (gone, disabled, or its person suspended, graduated, transferred or left) or
    signed out everywhere after the token was issued (``issued_at``): its tokens then stop
    working here at once, not only when they expire."""
    wanted = {c for s in grant.scope.split() for c in SCOPE_CLAIMS.get(s, ())}
    wanted |= _requested(grant, "userinfo")
    with db.reading() as connection:
        public = subjects.public_sub(connection, grant.sub or "")  # pairwise: its account
        rows = connection.execute(_BY_SUB, {"key": public}).all() if public else []
        if not _holds(rows, issued_at):
            return None
        return {"sub": grant.sub, **_all_claims(connection, settings, rows, wanted)}
