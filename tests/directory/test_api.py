"""The directory JSON API: search, subtree pages, person details, token scope, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import Database
from core.settings import Settings
from directory import api_tokens
from directory.models import OrgUnit
from tests.directory.cityfiles import national_id, seed_city


def _token(db: Database, settings: Settings, code: str,
           permissions: frozenset[str] = frozenset({"directory:read"})) -> dict[str, str]:
    with db.session() as session:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        _, token = api_tokens.issue(session, settings, name=f"console {code}", scope=unit,
                                    permissions=set(permissions))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def city(db: Database, settings: Settings, tmp_path: Path) -> None:
    seed_city(db, settings, tmp_path)


@pytest.fixture
def city_token(db: Database, settings: Settings, city: None) -> dict[str, str]:
    return _token(db, settings, "CITY")


def _names(body: dict) -> list[str]:
    return [item["name"] for item in body["items"]]


def test_search_by_name_identifier_and_phone(client, city_token) -> None:
    by_name = client.get("/api/directory/people", params={"name": "小"}, headers=city_token)
    assert by_name.status_code == 200
    assert _names(by_name.json()) == ["张小明", "陈小红", "刘小刚"]
    assert by_name.json()["items"][0]["current"] == [
        {"role": "student", "unit": "3100000001-G1-1", "unit_name": "1班"}]
    by_number = client.get("/api/directory/people", params={"identifier": " s００1 "},
                           headers=city_token)
    assert _names(by_number.json()) == ["张小明"]
    by_phone = client.get("/api/directory/people", params={"phone": "+86 139-0013-9001"},
                          headers=city_token)
    assert _names(by_phone.json()) == ["王丽"]
    nobody = client.get("/api/directory/people", params={"name": "%"}, headers=city_token)
    assert nobody.json() == {"items": [], "next_cursor": None}


def test_search_needs_exactly_one_criterion(client, city_token) -> None:
    for params in ({}, {"name": "a", "phone": "13800138000"}):
        response = client.get("/api/directory/people", params=params, headers=city_token)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/api/directory/people", params={"name": "a", "limit": 201},
                      headers=city_token).status_code == 400


def test_person_details_mask_personal_data(client, city_token) -> None:
    found = client.get("/api/directory/people", params={"identifier": "S001"},
                       headers=city_token).json()["items"][0]
    body = client.get(f"/api/directory/people/{found['id']}", headers=city_token).json()
    nid = national_id("20140305", 1)
    assert body["national_id"] == nid[:3] + "*" * 11 + nid[-4:]
    assert body["phone"] == "138****8001"
    assert nid not in str(body) and "13800138001" not in str(body)
    assert body["account"]["identifiers"] == [{"kind": "student_number", "value": "s001"}]
    assert body["affiliations"][0]["unit"] == "3100000001-G1-1"
    assert body["affiliations"][0]["current"] is True
    assert [g["relation"] for g in body["guardians"]] == ["father"]


def test_subtree_pages(client, db: Database, settings: Settings, city: None) -> None:
    headers = _token(db, settings, "310101")
    seen, cursor = [], None
    while True:
        page = client.get("/api/directory/org-units", headers=headers,
                          params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [unit["code"] for unit in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[0] == "310101" and len(seen) == len(set(seen)) == 14
    assert "3100000003" not in seen  # another district
    members = client.get("/api/directory/org-units/3100000001/people",
                         params={"role": "student"}, headers=headers).json()
    assert _names(members) == ["张小明", "陈小红"]


def test_a_token_sees_only_its_subtree(client, db: Database, settings: Settings,
                                       city: None) -> None:
    school_a = _token(db, settings, "3100000001")
    city_token = _token(db, settings, "CITY")
    other = client.get("/api/directory/people", params={"identifier": "S003"},
                       headers=city_token).json()["items"][0]
    assert client.get("/api/directory/people", params={"identifier": "S003"},
                      headers=school_a).json()["items"] == []
    assert client.get(f"/api/directory/people/{other['id']}", headers=school_a
                      ).status_code == 404
    assert client.get("/api/directory/org-units", params={"root": "3100000002"},
                      headers=school_a).status_code == 404
    assert client.get("/api/directory/org-units/3100000002/people", headers=school_a
                      ).status_code == 404
    assert _names(client.get("/api/directory/people", params={"name": "小"},
                             headers=school_a).json()) == ["张小明", "陈小红"]


def test_missing_invalid_or_weak_tokens(client, db: Database, settings: Settings,
                                        city: None) -> None:
    for headers in ({}, {"Authorization": "Bearer idp_nope"}, {"Authorization": "Basic x"}):
        response = client.get("/api/directory/people", params={"name": "a"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["status"] == 401
    scim_only = _token(db, settings, "CITY", frozenset({"scim"}))
    response = client.get("/api/directory/people", params={"name": "a"}, headers=scim_only)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_token_notes_its_use_and_ends_with_its_unit(client, db: Database,
                                                      settings: Settings, city: None) -> None:
    """``last_used_at`` shows which tokens nobody uses any more (written at most hourly);
    a token of a unit that was closed is refused, like a revoked one."""
    from datetime import timedelta

    from directory.api_tokens import ApiToken

    headers = _token(db, settings, "3100000001", frozenset({"directory:read"}))
    assert client.get("/api/directory/people", params={"name": "小"},
                      headers=headers).status_code == 200
    with db.session() as session:
        row = session.scalar(select(ApiToken).order_by(ApiToken.id.desc()).limit(1))
        first = row.last_used_at
        assert first is not None
        row.last_used_at = first - timedelta(minutes=30)  # used half an hour ago
    client.get("/api/directory/people", params={"name": "小"}, headers=headers)
    with db.session() as session:
        row = session.scalar(select(ApiToken).order_by(ApiToken.id.desc()).limit(1))
        assert row.last_used_at == first - timedelta(minutes=30)  # not rewritten yet
        row.org_unit.status = "closed"
    assert client.get("/api/directory/people", params={"name": "小"},
                      headers=headers).status_code == 401


@pytest.mark.parametrize("raw", ["²", "9" * 40, "9" * 17, "2147483648", "-1", "1\x00"])
def test_a_cursor_that_is_no_position_is_a_problem(client, city_token, raw: str) -> None:
    """``"²".isdigit()`` is true and 10**40 fits no database integer: both were 500s."""
    import base64

    cursor = base64.urlsafe_b64encode(raw.encode()).decode()
    for path in ("/api/directory/people", "/api/directory/org-units/3100000001/people",
                 "/api/directory/org-units"):
        if path.endswith("org-units") and raw.isascii() and raw.isdigit():
            continue  # digits alone are no unit path, but not wrong for it either: below
        response = client.get(path, params={"name": "a", "cursor": cursor}, headers=city_token)
        assert response.status_code == 400, (path, raw, response.text)
        assert response.json()["title"] == "Invalid cursor"


@pytest.mark.parametrize("raw", ["\x00", "abc", "/1/x/", "1/2/"])
def test_an_org_units_cursor_that_is_no_unit_path_is_a_problem(client, city_token,
                                                               raw: str) -> None:
    """A NUL reached the database (a generic "cannot be stored" 400 and a warning)."""
    import base64

    cursor = base64.urlsafe_b64encode(raw.encode()).decode()
    response = client.get("/api/directory/org-units", params={"cursor": cursor},
                          headers=city_token)
    assert response.status_code == 400 and response.json()["title"] == "Invalid cursor"


def test_each_phone_login_shows_its_own_number(client, db: Database, settings: Settings,
                                               city_token, tmp_path: Path) -> None:
    """A guardian with two phones: each login shows its own masked number (sealed beside
    its index), not the number on file twice; one written before 0017 that is not the
    number on file shows none."""
    from directory.importer import Kind
    from directory.models import IdentifierKind, LoginIdentifier, Person
    from tests.directory.cityfiles import run, write

    header = ["监护人姓名", "手机号", "关系", "学号", "身份证号"]
    rows = [["周母", "13711110001", "母亲", "S001", national_id("19800101", 9)],
            ["周母", "13722220002", "母亲", "S002", national_id("19800101", 9)]]
    assert run(db, settings, write(tmp_path / "g.csv", (header, rows)),
               Kind.guardians).status == "applied"
    with db.session() as session:
        mother = session.scalar(select(Person).where(Person.name == "周母"))
        uid, account_id = mother.uid, mother.account.id
    shown = client.get(f"/api/directory/people/{uid}", headers=city_token).json()
    phones = sorted(i["value"] for i in shown["account"]["identifiers"] if i["kind"] == "phone")
    assert phones == ["137****0001", "137****0002"], phones
    with db.session() as session:  # as a login written before migration 0017
        for login in session.scalars(select(LoginIdentifier).where(
                LoginIdentifier.account_id == account_id)):
            login.number_enc = None
    shown = client.get(f"/api/directory/people/{uid}", headers=city_token).json()
    phones = [i["value"] for i in shown["account"]["identifiers"]
              if i["kind"] == IdentifierKind.phone.value]
    assert sorted(phones, key=lambda v: v or "") == [None, "137****0002"], phones  # on file
