"""Claims about the signed-in person, from the directory, by scope (OIDC Core 5.4).

=========  ==========================================================================
scope      claims
=========  ==========================================================================
profile    name, family_name, given_name, gender, birthdate, preferred_username,
           locale, updated_at
email      email, email_verified
phone      phone_number, phone_number_verified (decrypted only here, for this answer)
edu        edu_roles, school {code, name}, grade, class, org_path
=========  ==========================================================================

UserInfo returns the claims of the granted scopes. The ID token carries the
protocol claims and what the ``claims`` parameter asks for in ``id_token``
(within the granted scopes), so ID tokens stay small. ``sub`` is the account's opaque id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from core.db import Database
from core.field_crypto import open_
from core.settings import Settings
from directory.models import (
    PHONE,
    Account,
    Affiliation,
    IdentifierKind,
    OrgKind,
    OrgUnit,
    Person,
)
from idp.oidc.tokens import Grant

SCOPE_CLAIMS = {
    "profile": ("name", "family_name", "given_name", "gender", "birthdate",
                "preferred_username", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "edu": ("edu_roles", "school", "grade", "class", "org_path"),
}
_LOGIN_ORDER = (IdentifierKind.username, IdentifierKind.teacher_number,
                IdentifierKind.student_number)


def _chains(session: Any, units: list[OrgUnit]) -> dict[int, list[OrgUnit]]:
    """Each unit's ancestors, root first, from the materialised paths: one query."""
    ids = {int(part) for unit in units for part in unit.path.strip("/").split("/") if part}
    by_id = {u.id: u for u in session.scalars(select(OrgUnit).where(OrgUnit.id.in_(ids)))}
    return {unit.id: [by_id[int(p)] for p in unit.path.strip("/").split("/")
                      if p and int(p) in by_id] for unit in units}


def _edu(session: Any, account: Account) -> dict[str, Any]:
    """From the current affiliations (loaded with the account, see ``_CURRENT``) and one
    query for their units' ancestors."""
    rows = sorted(account.person.affiliations, key=lambda a: a.id)
    chains = _chains(session, [a.org_unit for a in rows])
    roles, claims = set(), {}
    for affiliation in rows:
        roles.add(affiliation.role)
        chain = chains[affiliation.org_unit_id]
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


def _all_claims(session: Any, settings: Settings, account: Account,
                wanted: set[str]) -> dict[str, Any]:
    person = account.person
    identifiers = {i.kind: i.value for i in account.identifiers}
    claims: dict[str, Any] = {}
    if wanted & set(SCOPE_CLAIMS["profile"]):
        claims.update({
            "name": person.name, "family_name": person.name[:1], "given_name": person.name[1:],
            "locale": "zh-CN", "updated_at": int(person.updated_at.timestamp()),
        })
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
    if wanted & set(SCOPE_CLAIMS["edu"]):
        claims.update(_edu(session, account))
    return {k: v for k, v in claims.items() if k in wanted}


def _requested(grant: Grant, member: str) -> set[str]:
    """Claims asked for by name, limited to the scopes granted (phone and e-mail data only
    ever go out with their own scope)."""
    requested = grant.claims.get(member) or {}
    granted = {c for s in grant.scope.split() for c in SCOPE_CLAIMS.get(s, ())}
    return set(requested) & granted if isinstance(requested, dict) else set()


def _for(db: Database, settings: Settings, grant: Grant, wanted: set[str]) -> dict[str, Any]:
    """Claims of the grant's account (found by id, or by ``sub`` for UserInfo)."""
    if not wanted or (grant.account_id is None and grant.sub is None):
        return {}
    where = (Account.id == grant.account_id if grant.account_id is not None
             else Account.sub == grant.sub)
    options = [joinedload(Account.person), joinedload(Account.identifiers)]
    if wanted & set(SCOPE_CLAIMS["edu"]):
        options.append(_CURRENT)
    with db.sessions() as session:  # the account, its person, identifiers (and affiliations)
        account = session.scalars(select(Account).options(*options).where(where)
                                  ).unique().first()
        if account is None:
            return {}
        return _all_claims(session, settings, account, wanted)


# The person's current affiliations with their units, joined into the account's query.
_CURRENT = (joinedload(Account.person)
            .joinedload(Person.affiliations.and_(Affiliation.valid_to.is_(None)))
            .joinedload(Affiliation.org_unit))


def id_token_claims(db: Database, settings: Settings, grant: Grant) -> dict[str, Any]:
    return _for(db, settings, grant, _requested(grant, "id_token"))


def userinfo_claims(db: Database, settings: Settings, grant: Grant) -> dict[str, Any]:
    wanted = {c for s in grant.scope.split() for c in SCOPE_CLAIMS.get(s, ())}
    wanted |= _requested(grant, "userinfo")
    return {"sub": grant.sub, **_for(db, settings, grant, wanted)}
