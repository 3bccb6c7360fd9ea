"""Listing: filters (every operator, and/or/not, grouping), pagination, sorting, attributes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.directory.scim.conftest import BASE, EDU, ERROR, new_user

PEOPLE = [
    ("amy", "张三", "T-S1-G1-1", ["student"], "amy@a.cn"),
    ("ben", "李四", None, ["teacher"], "ben@b.cn"),
    ("cat", "王五", "T-S1-G1-1", ["student"], None),
    ("dan", "赵六", None, ["staff"], "dan@a.cn"),
]


@pytest.fixture
def people(scim, tree) -> dict[str, str]:
    ids = {}
    for login, name, klass, roles, email in PEOPLE:
        body = new_user(login, formatted=name, klass=klass, roles=roles,
                        externalId=f"hr-{login}",
                        emails=[{"value": email}] if email else [])
        ids[login] = scim.post(f"{BASE}/Users", json=body).json()["id"]
    scim.patch(f"{BASE}/Users/{ids['dan']}", json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}]})
    return ids


def _logins(scim, query: str, **params: str) -> list[str]:
    response = scim.get(f"{BASE}/Users", params={"filter": query, **params})
    assert response.status_code == 200, response.text
    return sorted(r["userName"] for r in response.json()["Resources"])


@pytest.mark.parametrize(("query", "expected"), [
    ('userName eq "AMY"', ["amy"]),
    ('userName ne "amy"', ["ben", "cat", "dan"]),
    ('name.formatted co "四"', ["ben"]),
    ('userName sw "b"', ["ben"]),
    ('emails ew "@a.cn"', ["amy", "dan"]),
    ('emails.value eq "ben@b.cn"', ["ben"]),
    ('emails[value co "a.cn"]', ["amy", "dan"]),
    ("emails pr", ["amy", "ben", "dan"]),
    ('externalId eq "hr-cat"', ["cat"]),
    ("active eq false", ["dan"]),
    ('userName gt "b"', ["ben", "cat", "dan"]),
    ('userName ge "cat"', ["cat", "dan"]),
    ('userName lt "b"', ["amy"]),
    ('userName le "ben"', ["amy", "ben"]),
    (f'{EDU}:class eq "T-S1-G1-1"', ["amy", "cat"]),
    (f'{EDU}:grade eq "t-s1-g1"', ["amy", "cat"]),
    (f'{EDU}:schoolCode eq "T-S1"', ["amy", "ben", "cat", "dan"]),
    (f'{EDU}:roles eq "teacher"', ["ben"]),
    ('userName sw "a" or userName sw "b"', ["amy", "ben"]),
    ('emails pr and not (userName eq "amy")', ["ben", "dan"]),
    ('(userName eq "amy" or userName eq "cat") and emails pr', ["amy"]),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "cat"', ["cat"]),
])
def test_filter_operators(scim, people, query: str, expected: list[str]) -> None:
    assert _logins(scim, query) == expected


def test_date_comparisons(scim, people) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert len(_logins(scim, f'meta.lastModified gt "{past}"')) == 4
    assert _logins(scim, f'meta.created ge "{future}"') == []
    assert len(_logins(scim, f'meta.created lt "{future}"')) == 4
    assert len(_logins(scim, f'meta.lastModified le "{future}"')) == 4


@pytest.mark.parametrize("query", [
    'userName eq', 'userName zz "a"', "((", 'nickName eq "x"', 'active gt "true"',
    'meta.created gt "yesterday"', 'phoneNumbers co "138"', 'active co "t"', "x" * 3000,
    'emails[type eq "work"]',
])
def test_bad_filters_are_invalid_filter(scim, people, query: str) -> None:
    response = scim.get(f"{BASE}/Users", params={"filter": query})
    assert response.status_code == 400
    assert response.json()["schemas"] == [ERROR]
    assert response.json()["scimType"] == "invalidFilter"


def test_pagination_and_sorting(scim, people) -> None:
    page = scim.get(f"{BASE}/Users", params={"sortBy": "userName", "sortOrder": "descending",
                                             "startIndex": 2, "count": 2}).json()
    assert page["totalResults"] == 4 and page["startIndex"] == 2
    assert page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["cat", "ben"]
    assert scim.get(f"{BASE}/Users", params={"count": 0}).json()["Resources"] == []
    by_name = scim.get(f"{BASE}/Users", params={"sortBy": "name.formatted"}).json()
    assert [r["name"]["formatted"] for r in by_name["Resources"]] == sorted(
        name for _, name, *_ in PEOPLE)
    for params in ({"sortBy": "nickName"}, {"sortOrder": "sideways", "sortBy": "userName"},
                   {"startIndex": "one"}, {"count": "many"}):
        response = scim.get(f"{BASE}/Users", params=params)
        assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"


def test_attributes_and_excluded_attributes(scim, people) -> None:
    only = scim.get(f"{BASE}/Users", params={"attributes": "userName"}).json()["Resources"][0]
    assert set(only) == {"schemas", "id", "userName"}
    less = scim.get(f"{BASE}/Users/{people['amy']}",
                    params={"excludedAttributes": "emails,groups"}).json()
    assert "emails" not in less and "groups" not in less and less["userName"] == "amy"
    both = scim.get(f"{BASE}/Users", params={"attributes": "userName",
                                             "excludedAttributes": "emails"})
    assert both.status_code == 400


def test_search_endpoint(scim, people) -> None:
    response = scim.post(f"{BASE}/Users/.search", json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "a"', "attributes": ["userName"], "count": 10})
    assert response.status_code == 200
    assert [r["userName"] for r in response.json()["Resources"]] == ["amy"]
