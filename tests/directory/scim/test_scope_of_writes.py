"""What a SCIM token may change: only people it manages, names the sign-in reads as one,
and never an administrator's role (found by an authorization review, session 19)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from core.db import Database
from core.settings import Settings
from directory.models import Account, Affiliation, IdentifierKind, OrgUnit, Person, Role
from directory.people import (
    affiliate,
    create_person_with_account,
    find_for_sign_in,
    may_sign_in,
)
from tests.directory.scim.conftest import BASE, EDU, PATCH_OP, new_user, seed_person

MUTABILITY = "mutability"


def _unit(session, code: str) -> OrgUnit:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


def _person(session, name: str, username: str, *placed: tuple[str, Role]):
    """A person made by the directory (not by SCIM), placed at each (unit code, role)."""
    account = create_person_with_account(
        session, name=name, identifiers={IdentifierKind.username: username},
        password_hash=None)
    for code, role in placed:
        affiliate(session, account.person, _unit(session, code), role, date(2026, 1, 1))
    return account


def _district_admin_teaching_at_s1(db: Database, *, suspended: bool = False) -> tuple[str, int]:
    """A district administrator who also teaches at T-S1: not T-S1's to manage."""
    with db.session() as session:
        account = _person(session, "区管理员", "dadmin", ("T-D1", Role.district_admin),
                          ("T-S1", Role.teacher))
        if suspended:
            account.person.status, account.disabled = "suspended", True
        return account.person.uid, account.id


def _patch(scim, uid: str, *operations: dict):
    return scim.patch(f"{BASE}/Users/{uid}", json={"schemas": [PATCH_OP],
                                                   "Operations": list(operations)})


def test_a_school_token_may_not_disable_or_rename_someone_placed_elsewhere_too(
        scim, tree, db: Database, settings: Settings) -> None:
    """The admin API's rule (``managed_person``): a person with a current placement
    outside the token's scope is not its to change, only their placement inside it."""
    uid, account_id = _district_admin_teaching_at_s1(db)
    for operation in ({"op": "replace", "path": "active", "value": False},
                      {"op": "replace", "path": "userName", "value": "hijacked"},
                      {"op": "replace", "path": "name.formatted", "value": "改名"}):
        refused = _patch(scim, uid, operation)
        assert refused.status_code == 400, refused.text
        assert refused.json()["scimType"] == MUTABILITY
    with db.session() as session:
        account = session.get(Account, account_id)
        assert not account.disabled and account.person.name == "区管理员"
        assert find_for_sign_in(session, settings, "hijacked") is None
    # their placement inside the scope still may change: the school moves its teacher
    moved = _patch(scim, uid, {"op": "replace", "path": f"{EDU}:roles",
                               "value": ["head_teacher"]})
    assert moved.status_code == 200, moved.text


def test_a_school_token_may_not_reinstate_a_suspended_district_admin(
        scim, tree, db: Database) -> None:
    uid, account_id = _district_admin_teaching_at_s1(db, suspended=True)
    refused = _patch(scim, uid, {"op": "replace", "path": "active", "value": True})
    assert refused.status_code == 400 and refused.json()["scimType"] == MUTABILITY
    with db.session() as session:
        account = session.get(Account, account_id)
        assert not may_sign_in(account.disabled, account.person.status)


def test_a_number_may_not_shadow_another_accounts_sign_in_name(
        scim, tree, db: Database, settings: Settings) -> None:
    """The sign-in form reads a name as any kind (student number first): a pupil given
    another school's teacher number would take over that teacher's sign-in."""
    seed_person(db, "T-S2", "t777")  # a teacher of the other school
    taken = scim.post(f"{BASE}/Users", json=new_user(
        "pupil", **{EDU: {"schoolCode": "T-S1", "roles": ["student"],
                          "studentNumber": "T777"}}))
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"
    as_email = scim.post(f"{BASE}/Users", json=new_user(
        "mailer", emails=[{"value": "t777@example.cn"}]))
    assert as_email.status_code == 201, as_email.text
    with db.session() as session:
        found = find_for_sign_in(session, settings, "t777")
        assert session.get(Account, found[0].id).person.name != "pupil"


def _school_admin_of_s1(db: Database) -> tuple[str, int]:
    with db.session() as session:
        account = _person(session, "一校管理员", "s1admin", ("T-S1", Role.school_admin))
        return account.person.uid, account.person.id


def _roles_at(db: Database, person_id: int, unit_id: int) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Affiliation.role).where(
            Affiliation.person_id == person_id, Affiliation.org_unit_id == unit_id,
            Affiliation.valid_to.is_(None))))


def test_group_membership_does_not_carry_an_admin_role_to_another_school(
        client, tree, tokens, db: Database) -> None:
    """docs/scim.md: "Administrator roles are granted in the admin console, not by SCIM"."""
    uid, person_id = _school_admin_of_s1(db)
    headers = {"Authorization": f"Bearer {tokens.city}", "Content-Type": "application/scim+json"}
    added = client.patch(f"{BASE}/Groups/{tree.other_school.id}", headers=headers, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members",
                                               "value": [{"value": uid}]}]})
    assert added.status_code == 200, added.text
    assert _roles_at(db, person_id, tree.other_school.id) == {"staff"}


def test_a_placement_does_not_move_an_admin_role_to_another_school(
        client, tree, tokens, db: Database) -> None:
    uid, person_id = _school_admin_of_s1(db)
    headers = {"Authorization": f"Bearer {tokens.city}", "Content-Type": "application/scim+json"}
    moved = client.patch(f"{BASE}/Users/{uid}", headers=headers, json={
        "schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": f"{EDU}:schoolCode", "value": "T-S2"}]})
    assert moved.status_code == 400 and moved.json()["scimType"] == MUTABILITY
    assert _roles_at(db, person_id, tree.other_school.id) == set()


def test_a_school_token_may_not_change_its_own_schools_administrator(
        scim, client, tree, tokens, db: Database) -> None:
    """An administrator is changed from above: the school's provisioning may not disable
    or rename the account that administers the school; the city's token may."""
    uid, _person_id = _school_admin_of_s1(db)
    rename = {"op": "replace", "path": "name.formatted", "value": "新名字"}
    refused = _patch(scim, uid, rename)
    assert refused.status_code == 400 and refused.json()["scimType"] == MUTABILITY
    headers = {"Authorization": f"Bearer {tokens.city}", "Content-Type": "application/scim+json"}
    renamed = client.patch(f"{BASE}/Users/{uid}", headers=headers,
                           json={"schemas": [PATCH_OP], "Operations": [rename]})
    assert renamed.status_code == 200, renamed.text


def test_an_administrators_role_is_never_ended_through_scim(scim, client, tree, tokens,
                                                            db: Database) -> None:
    """Granted in the admin console, ended there too: a DELETE of the school's
    administrator is refused (it would disable the account), and a new placement keeps
    the administrator's role (a PATCH of roles would have ended it)."""
    uid, person_id = _school_admin_of_s1(db)
    refused = scim.delete(f"{BASE}/Users/{uid}")
    assert refused.status_code == 400 and refused.json()["scimType"] == MUTABILITY
    headers = {"Authorization": f"Bearer {tokens.city}", "Content-Type": "application/scim+json"}
    assert client.delete(f"{BASE}/Users/{uid}", headers=headers).status_code == 400
    placed = _patch(scim, uid, {"op": "replace", "path": f"{EDU}:roles", "value": ["teacher"]})
    assert placed.status_code == 200, placed.text
    with db.session() as session:
        unit = _unit(session, "T-S1")
        assert "school_admin" in _roles_at(db, person_id, unit.id)
        account = session.scalar(select(Account).where(Account.person_id == person_id))
        assert not account.disabled


def test_an_unchanged_put_of_a_name_stored_unnormalised_changes_nothing(
        scim, tree, db: Database) -> None:
    """A name written before SCIM normalised it (an ideographic space) read back and put
    again unchanged is no change: the teacher also placed elsewhere is not refused."""
    uid = seed_person(db, "T-S1", "T0002", name="王\u3000老师")
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.uid == uid))
        affiliate(session, person, _unit(session, "T-S2"), Role.teacher, date(2026, 9, 1))
    fetched = scim.get(f"{BASE}/Users/{uid}").json()
    body = {k: v for k, v in fetched.items() if k not in ("meta", "groups")}
    assert scim.put(f"{BASE}/Users/{uid}", json=body).status_code == 200


def test_removing_an_administrator_from_their_units_group_keeps_the_role(
        scim, client, tree, tokens, db: Database) -> None:
    """Group membership is an affiliation with the unit, but an administrator's role is
    not membership: removing the school's administrator from the school's group (or a
    roster PUT that leaves them out) ends their teaching there and keeps their role, and
    the school's token still cannot disable them afterwards."""
    uid, person_id = _school_admin_of_s1(db)
    with db.session() as session:
        s1 = _unit(session, "T-S1")
        person = session.scalar(select(Person).where(Person.id == person_id))
        affiliate(session, person, s1, Role.teacher, date(2026, 1, 1))
        s1_id = s1.id
    headers = {"Authorization": f"Bearer {tokens.city}", "Content-Type": "application/scim+json"}
    group = client.get(f"{BASE}/Groups/{s1_id}", headers=headers).json()
    assert uid in [m["value"] for m in group.get("members", [])]  # as a teacher
    removed = client.patch(f"{BASE}/Groups/{s1_id}", headers=headers, json={
        "schemas": [PATCH_OP], "Operations": [
            {"op": "remove", "path": f'members[value eq "{uid}"]'}]})
    assert removed.status_code == 200, removed.text
    assert uid not in [m["value"] for m in removed.json().get("members", [])]
    assert _roles_at(db, person_id, s1_id) == {"school_admin"}
    refused = _patch(scim, uid, {"op": "replace", "path": "active", "value": False})
    assert refused.status_code == 400 and refused.json()["scimType"] == MUTABILITY
