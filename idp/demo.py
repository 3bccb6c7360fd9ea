"""``idp demo``: seed a small demo city and write ``var/demo.json``.

Idempotent: running it again changes nothing that already exists, and keeps
the passwords recorded in ``var/demo.json`` (they are random per installation;
an account whose recorded password no longer matches gets a new one). Scripts,
docs and integrators read ``var/demo.json``; its keys are stable.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.db import utcnow
from core.field_crypto import open_, seal
from core.passwords import Passwords
from core.settings import Settings
from directory.apps import (
    check_secret,
    find_app,
    metadata_of,
    new_secret,
    register_app,
    validate_metadata,
)
from directory.models import (
    PHONE,
    PHONE_LOGIN,
    Account,
    IdentifierKind,
    LoginIdentifier,
    OrgKind,
    OrgUnit,
    Role,
)
from directory.orgs import ensure_org_unit
from directory.people import affiliate, create_person_with_account, find_account
from directory.scim.demo import demo_token
from mfa import credentials, sms, totp

SCHOOL_YEAR_START = date(2026, 9, 1)


@dataclass(frozen=True)
class DemoUser:
    login: str
    name: str
    kind: IdentifierKind
    role: Role
    unit: str  # org unit code
    totp: bool = False  # enrolled with an authenticator app (secret in demo.json)
    phone: str = ""  # a phone login: signs in with an SMS code (docs/sms.md)


DISTRICT = ("DEMO-D01", "示范区")
SCHOOLS = [
    ("3111000001", "示范区第一实验小学", [("G1", "一年级", ["1班", "2班"])]),
    ("3111000002", "示范区第二中学", [("G7", "七年级", ["1班"])]),
]
USERS = [
    DemoUser("t20260001", "王老师", IdentifierKind.teacher_number, Role.teacher, "3111000001",
             totp=True),
    DemoUser("t20260002", "李老师", IdentifierKind.teacher_number, Role.teacher, "3111000002"),
    DemoUser("s20260001", "张小明", IdentifierKind.student_number, Role.student,
             "3111000001-G1-1"),
    DemoUser("s20260002", "陈小红", IdentifierKind.student_number, Role.student,
             "3111000001-G1-2", phone="13800138002"),
    DemoUser("s20260003", "刘小刚", IdentifierKind.student_number, Role.student,
             "3111000002-G7-1"),
]
ADMINS = [
    DemoUser("cityadmin", "市级管理员", IdentifierKind.username, Role.city_admin, "DEMO-CITY",
             totp=True),
    DemoUser("schooladmin", "第一实验小学管理员", IdentifierKind.username, Role.school_admin,
             "3111000001", totp=True),
    DemoUser("helpdesk", "第一实验小学服务台", IdentifierKind.username, Role.helpdesk,
             "3111000001", totp=True),
]
ADMIN_SCOPES = {Role.city_admin: "city", Role.district_admin: "district",
                Role.school_admin: "school", Role.helpdesk: "helpdesk"}


@dataclass(frozen=True)
class DemoClient:
    client_id: str
    name: str
    auth_method: str
    id_token_alg: str
    demo_rp: bool = False


CLIENTS = [
    DemoClient("demo-sm2", "示范应用（SM2）", "client_secret_basic", "SM2", demo_rp=True),
    DemoClient("demo-rs256", "示范应用（RS256）", "client_secret_basic", "RS256"),
    DemoClient("demo-es256", "示范应用（ES256）", "client_secret_post", "ES256"),
    DemoClient("demo-public", "示范移动应用（公开客户端）", "none", "SM2"),
]
DEMO_SCOPE = "openid profile edu email phone offline_access"


def _client_metadata(settings: Settings, demo: DemoClient) -> dict[str, Any]:
    grants = ["authorization_code", "refresh_token"]
    if demo.auth_method != "none":
        grants.append("client_credentials")
    return {
        "redirect_uris": [f"{settings.issuer}/demo/rp/callback", "http://127.0.0.1:3000/callback",
                          "http://localhost:3000/callback"],
        "post_logout_redirect_uris": [f"{settings.issuer}/demo/rp"],
        "grant_types": grants, "token_endpoint_auth_method": demo.auth_method,
        "id_token_signed_response_alg": demo.id_token_alg,
        "access_token_signed_response_alg": demo.id_token_alg, "scope": DEMO_SCOPE,
    }


def _ensure_client(session: Session, settings: Settings, demo: DemoClient,
                   known_secret: str | None, city: OrgUnit) -> dict[str, Any]:
    """The demo app, registered by the city (the console lists it, as the operators')."""
    app = find_app(session, demo.client_id)
    metadata = _client_metadata(settings, demo)
    if app is None:
        app, secret = register_app(session, settings, name=demo.name, metadata=metadata,
                                   client_id=demo.client_id, first_party=True,
                                   org_unit_id=city.id)
        app.status_set_at = ""  # the operators' decision
    else:  # the demo's own app: it takes this version's metadata
        app.org_unit_id = app.org_unit_id or city.id
        app.metadata_json = json.dumps(validate_metadata(
            {**json.loads(app.metadata_json or "{}"), **metadata}), ensure_ascii=False,
            sort_keys=True)
        secret = None
        if demo.auth_method != "none":
            secret = (known_secret if known_secret and check_secret(
                settings, metadata_of(app), known_secret) else new_secret(settings, app))
    entry: dict[str, Any] = {"client_id": demo.client_id, "name": demo.name, **metadata}
    if secret:
        entry["client_secret"] = secret
    if demo.demo_rp:
        entry["demo_rp"] = True
    return entry


def demo_path(settings: Settings) -> Path:
    return settings.var_dir / "demo.json"


def _previous(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(demo_path(settings).read_text())
    except (OSError, ValueError):
        return {}


def seed_org_tree(session: Session) -> dict[str, OrgUnit]:
    units: dict[str, OrgUnit] = {}
    city = ensure_org_unit(session, code="DEMO-CITY", name="示范市", kind=OrgKind.city)
    district = ensure_org_unit(
        session, code=DISTRICT[0], name=DISTRICT[1], kind=OrgKind.district, parent=city
    )
    units.update({city.code: city, district.code: district})
    for code, name, grades in SCHOOLS:
        school = ensure_org_unit(session, code=code, name=name, kind=OrgKind.school,
                                 parent=district)
        units[code] = school
        for grade_code, grade_name, classes in grades:
            grade = ensure_org_unit(session, code=f"{code}-{grade_code}", name=grade_name,
                                    kind=OrgKind.grade, parent=school)
            units[grade.code] = grade
            for number, class_name in enumerate(classes, start=1):
                unit = ensure_org_unit(session, code=f"{grade.code}-{number}", name=class_name,
                                       kind=OrgKind.class_, parent=grade)
                units[unit.code] = unit
    return units


def _school_of(unit: OrgUnit) -> OrgUnit:
    while unit.kind != OrgKind.school.value and unit.parent is not None:
        unit = unit.parent
    return unit


def _ensure_user(
    session: Session, user: DemoUser, unit: OrgUnit, known_password: str | None,
    passwords: Passwords,
) -> tuple[str, int]:
    account = find_account(session, user.kind, user.login)
    if account is None:
        password = known_password or _new_password()
        account = create_person_with_account(
            session, name=user.name, identifiers={user.kind: user.login},
            password_hash=passwords.hash(password),
        )
    elif known_password and passwords.verify(account.password_hash, known_password).ok:
        password = known_password
    else:
        password = _new_password()
        account.password_hash = passwords.hash(password)
    affiliate(session, account.person, unit, user.role, SCHOOL_YEAR_START)
    return password, account.id


def _ensure_totp(session: Session, settings: Settings, account_id: int, login: str,
                 known_secret: str | None) -> str:
    """A confirmed authenticator app for the account whose secret demo.json records."""
    enrolled = credentials.confirmed(session, account_id, credentials.FactorKind.totp)
    for row in enrolled:
        if known_secret and open_(settings, credentials.SECRET, row) == known_secret:
            return known_secret
    for row in enrolled:
        totp.remove(session, account_id, row.uid)
    enrolment = totp.begin_enrolment(session, settings, account_id, "示范身份验证器",
                                     label=login)
    row = totp.pending(session, account_id, enrolment.uid)
    assert row is not None
    row.confirmed_at = utcnow()
    return enrolment.secret_base32


def _ensure_phone(session: Session, settings: Settings, account_id: int, phone: str) -> None:
    """The number as the account's phone login (blind index) and the person's phone."""
    account = session.get(Account, account_id)
    assert account is not None
    if sms.account_for_phone(session, settings, phone) is None:
        login = LoginIdentifier(account_id=account_id, kind=IdentifierKind.phone.value)
        seal(settings, PHONE_LOGIN, login, phone)  # the number, and its index as the value
        session.add(login)
    if open_(settings, PHONE, account.person) != phone:
        seal(settings, PHONE, account.person, phone)
    session.flush()


def _user_entry(session: Session, settings: Settings, user: DemoUser, unit: OrgUnit,
                known: dict[str, dict[str, Any]], passwords: Passwords) -> dict[str, Any]:
    previous = known.get(user.login, {})
    password, account_id = _ensure_user(session, user, unit, previous.get("password"),
                                        passwords)
    entry: dict[str, Any] = {"login": user.login, "name": user.name, "password": password}
    if user.phone:
        _ensure_phone(session, settings, account_id, user.phone)
        entry["phone"] = user.phone
    if user.totp:
        entry["totp_secret"] = _ensure_totp(session, settings, account_id, user.login,
                                            previous.get("totp_secret"))
    return entry


def _new_password() -> str:
    return "Demo-" + secrets.token_urlsafe(9)


def seed(session: Session, settings: Settings) -> dict[str, Any]:
    """Create what is missing and return the content of ``var/demo.json``."""
    previous = _previous(settings)
    known = {u["login"]: u for u in previous.get("users", []) + previous.get("admins", [])
             if "login" in u}
    passwords = Passwords(settings.password_scheme)
    units = seed_org_tree(session)
    users = []
    for user in USERS:
        unit = units[user.unit]
        users.append({**_user_entry(session, settings, user, unit, known, passwords),
                      "roles": [user.role.value], "school": _school_of(unit).name})
    admins = [{**_user_entry(session, settings, a, units[a.unit], known, passwords),
               "scope": ADMIN_SCOPES[a.role], "unit": a.unit} for a in ADMINS]
    known_secrets = {c.get("client_id"): c.get("client_secret")
                     for c in previous.get("clients", [])}
    clients = [_ensure_client(session, settings, demo, known_secrets.get(demo.client_id),
                              units["DEMO-CITY"]) for demo in CLIENTS]
    return {
        "issuer": settings.issuer,
        "users": users,
        "admins": admins,
        "clients": clients,
        "phone_login": next({"login": u.login, "phone": u.phone,
                             "how": "/login/sms; the code is in var/sms-outbox.jsonl"}
                            for u in USERS if u.phone),
        "scim": demo_token(session, settings, units["DEMO-CITY"], previous.get("scim")),
    }


def write(settings: Settings, content: dict[str, Any]) -> Path:
    """Write ``var/demo.json`` readable by its owner only (it holds passwords)."""
    path = demo_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(content, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    temporary.replace(path)
    return path
