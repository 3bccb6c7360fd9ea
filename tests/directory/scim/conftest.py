"""SCIM fixtures: a small org tree, API tokens scoped to parts of it, a SCIM client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.settings import Settings
from directory.api_tokens import issue
from directory.models import IdentifierKind, OrgKind, OrgUnit, Role
from directory.orgs import ensure_org_unit
from directory.people import affiliate, create_person_with_account

BASE = "/scim/v2"
SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
EDU = "urn:edu:params:scim:schemas:extension:education:2.0:User"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class Tree:
    city: OrgUnit
    school: OrgUnit  # S1, with one grade and one class
    grade: OrgUnit
    klass: OrgUnit
    other_school: OrgUnit  # S2, outside the school token's scope
    other_class: OrgUnit


@dataclass
class Tokens:
    city: str
    school: str
    other_school: str
    read_only: str  # permission directory:read only


def build_tree(session: Any) -> Tree:
    city = ensure_org_unit(session, code="T-CITY", name="测试市", kind=OrgKind.city)
    district = ensure_org_unit(session, code="T-D1", name="测试区", kind=OrgKind.district,
                               parent=city)
    school = ensure_org_unit(session, code="T-S1", name="第一小学", kind=OrgKind.school,
                             parent=district)
    grade = ensure_org_unit(session, code="T-S1-G1", name="一年级", kind=OrgKind.grade,
                            parent=school)
    klass = ensure_org_unit(session, code="T-S1-G1-1", name="1班", kind=OrgKind.class_,
                            parent=grade)
    other = ensure_org_unit(session, code="T-S2", name="第二中学", kind=OrgKind.school,
                            parent=district)
    other_grade = ensure_org_unit(session, code="T-S2-G7", name="七年级", kind=OrgKind.grade,
                                  parent=other)
    other_class = ensure_org_unit(session, code="T-S2-G7-1", name="1班", kind=OrgKind.class_,
                                  parent=other_grade)
    return Tree(city, school, grade, klass, other, other_class)


@pytest.fixture
def tree_and_tokens(db: Database, settings: Settings) -> tuple[Tree, Tokens]:
    with db.session() as session:
        tree = build_tree(session)
        tokens = Tokens(
            city=issue(session, settings, name="city", scope=tree.city,
                       permissions={"scim"})[1],
            school=issue(session, settings, name="s1", scope=tree.school,
                         permissions={"scim"})[1],
            other_school=issue(session, settings, name="s2", scope=tree.other_school,
                               permissions={"scim"})[1],
            read_only=issue(session, settings, name="ro", scope=tree.city,
                            permissions={"directory:read"})[1],
        )
    return tree, tokens


@pytest.fixture
def tree(tree_and_tokens: tuple[Tree, Tokens]) -> Tree:
    return tree_and_tokens[0]


@pytest.fixture
def tokens(tree_and_tokens: tuple[Tree, Tokens]) -> Tokens:
    return tree_and_tokens[1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def scim(client: TestClient, tokens: Tokens) -> TestClient:
    """A client sending the school token (scope: school T-S1) on every request."""
    client.headers.update({**auth(tokens.school), "Content-Type": SCIM_JSON})
    return client


def new_user(user_name: str = "alice", *, school: str = "T-S1", klass: str | None = None,
             roles: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    ext: dict[str, Any] = {"schoolCode": school, "roles": roles or ["student"]}
    if klass:
        ext["class"] = klass
    return {"schemas": [USER, EDU], "userName": user_name,
            "name": {"formatted": extra.pop("formatted", "张小明")}, EDU: ext, **extra}


def seed_person(db: Database, unit_code: str, login: str, name: str = "王老师",
                role: Role = Role.teacher) -> str:
    """A person created by the directory itself (not by SCIM); returns the SCIM id."""
    with db.session() as session:
        from sqlalchemy import select

        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == unit_code))
        account = create_person_with_account(
            session, name=name, identifiers={IdentifierKind.teacher_number: login},
            password_hash=None)
        affiliate(session, account.person, unit, role, date(2026, 9, 1))
        return account.person.uid
