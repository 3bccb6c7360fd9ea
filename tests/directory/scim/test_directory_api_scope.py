"""The directory API shows nothing outside the token's scope in its lists and links either
(found by an authorization review, session 19)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from core.db import Database
from core.settings import Settings
from directory.api_tokens import issue
from directory.models import GuardianLink, IdentifierKind, OrgUnit, Role
from directory.people import affiliate, create_person_with_account


def _read_token(db: Database, settings: Settings, code: str) -> dict[str, str]:
    with db.session() as session:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        token = issue(session, settings, name=f"dir {code}", scope=unit,
                      permissions={"directory:read"})[1]
    return {"Authorization": f"Bearer {token}"}


def test_list_endpoints_hide_what_the_details_hide(client, tree, db: Database,
                                                    settings: Settings) -> None:
    with db.session() as session:
        units = {u.code: u for u in session.scalars(select(OrgUnit))}
        account = create_person_with_account(
            session, name="双校老师", identifiers={IdentifierKind.teacher_number: "t555"},
            password_hash=None)
        affiliate(session, account.person, units["T-S1"], Role.teacher, date(2026, 1, 1))
        affiliate(session, account.person, units["T-S2"], Role.head_teacher, date(2026, 1, 1))
        affiliate(session, account.person, units["T-D1"], Role.district_admin, date(2026, 1, 1))
        uid = account.person.uid
    headers = _read_token(db, settings, "T-S1")
    details = client.get(f"/api/directory/people/{uid}", headers=headers).json()
    assert {a["unit"] for a in details["affiliations"]} == {"T-S1"}  # filtered by scope
    listed = client.get("/api/directory/people", params={"identifier": "t555"},
                        headers=headers).json()["items"][0]["current"]
    members = client.get("/api/directory/org-units/T-S1/people",
                         headers=headers).json()["items"][0]["current"]
    assert {c["unit"] for c in listed} == {"T-S1"}, listed
    assert {c["unit"] for c in members} == {"T-S1"}, members


def test_guardian_links_name_people_outside_the_scope(client, tree, db: Database,
                                                       settings: Settings) -> None:
    with db.session() as session:
        units = {u.code: u for u in session.scalars(select(OrgUnit))}
        child_a = create_person_with_account(session, name="甲", identifiers={
            IdentifierKind.student_number: "s1"}, password_hash=None)
        child_b = create_person_with_account(session, name="乙", identifiers={
            IdentifierKind.student_number: "s2"}, password_hash=None)
        parent = create_person_with_account(session, name="家长", identifiers={
            IdentifierKind.username: "p1"}, password_hash=None)
        affiliate(session, child_a.person, units["T-S1-G1-1"], Role.student, date(2026, 1, 1))
        affiliate(session, child_b.person, units["T-S2-G7-1"], Role.student, date(2026, 1, 1))
        affiliate(session, parent.person, units["T-S1"], Role.guardian, date(2026, 1, 1))
        session.add_all([GuardianLink(guardian_id=parent.person.id, student_id=child_a.person.id),
                         GuardianLink(guardian_id=parent.person.id, student_id=child_b.person.id)])
        parent_uid, b_uid = parent.person.uid, child_b.person.uid
    headers = _read_token(db, settings, "T-S1")
    assert client.get(f"/api/directory/people/{b_uid}", headers=headers).status_code == 404
    students = client.get(f"/api/directory/people/{parent_uid}", headers=headers).json()["students"]
    assert b_uid not in {s["id"] for s in students}, students
