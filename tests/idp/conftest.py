"""Fixtures for the protocol tests: registered clients and a demo person."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from core.db import Database
from core.settings import Settings
from directory.apps import register_app

REDIRECT_URI = "https://app.example.edu.cn/callback"


@dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    metadata: dict[str, Any]


@pytest.fixture
def make_client(db: Database, settings: Settings):
    def make(first_party: bool = True, **metadata: Any) -> RegisteredClient:
        values = {
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": "SM2",
            "scope": "openid profile email phone address edu offline_access api.read api.write",
            **metadata,
        }
        with db.session() as session:
            app, secret = register_app(session, settings, name="测试应用", metadata=metadata
                                       | {k: v for k, v in values.items() if k not in metadata},
                                       first_party=first_party)
        return RegisteredClient(app.client_id, secret, values)

    return make


@dataclass
class Person:
    login: str
    password: str
    account_id: int
    sub: str


@pytest.fixture
def make_person(db: Database, settings: Settings):
    from directory.models import IdentifierKind, OrgKind, Role
    from directory.orgs import ensure_org_unit
    from directory.people import affiliate, create_person_with_account
    from idp.login import passwords

    def make(login: str = "s20269999", password: str = "Correct-Horse-9", *,
             name: str = "赵同学", status: str = "active", role: Role = Role.student) -> Person:
        with db.session() as session:
            city = ensure_org_unit(session, code="T-CITY", name="测试市", kind=OrgKind.city)
            school = ensure_org_unit(session, code="T-SCHOOL", name="测试学校",
                                     kind=OrgKind.school, parent=city)
            grade = ensure_org_unit(session, code="T-G1", name="一年级", kind=OrgKind.grade,
                                    parent=school)
            klass = ensure_org_unit(session, code="T-G1-1", name="1班", kind=OrgKind.class_,
                                    parent=grade)
            account = create_person_with_account(
                session, name=name, identifiers={IdentifierKind.student_number: login},
                password_hash=passwords(settings.password_scheme).hash(password))
            account.person.status = status
            from datetime import date

            affiliate(session, account.person, klass, role, date(2026, 9, 1))
            return Person(login, password, account.id, account.sub)

    return make
