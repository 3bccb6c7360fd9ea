"""Tokens: 401 without a valid 'scim' token; a token never sees or changes outside its subtree."""

from __future__ import annotations

import pytest

from tests.directory.scim.conftest import BASE, EDU, ERROR, PATCH_OP, auth, new_user, seed_person


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer idp_" + "x" * 40}, {"Authorization": "Bearer"},
])
def test_401_without_a_valid_token(client, tree, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/Users"), ("GET", "/ServiceProviderConfig"),
                         ("POST", "/Users"), ("GET", "/Schemas"), ("GET", "/nowhere")):
        response = client.request(method, BASE + path, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"].startswith("application/scim+json")
        assert response.json()["schemas"] == [ERROR]


def test_401_for_a_token_without_the_scim_permission(client, tokens) -> None:
    response = client.get(f"{BASE}/Users", headers=auth(tokens.read_only))
    assert response.status_code == 401


def test_token_sees_only_its_subtree(client, tree, tokens, db) -> None:
    inside = seed_person(db, "T-S1-G1-1", "t1", "甲")
    outside = seed_person(db, "T-S2-G7-1", "t2", "乙")
    school = auth(tokens.school)
    listed = client.get(f"{BASE}/Users", headers=school).json()
    assert [r["id"] for r in listed["Resources"]] == [inside] and listed["totalResults"] == 1
    assert client.get(f"{BASE}/Users/{outside}", headers=school).status_code == 404
    found = client.get(f"{BASE}/Users", headers=school, params={"filter": 'userName eq "t2"'})
    assert found.json()["totalResults"] == 0
    city = client.get(f"{BASE}/Users", headers=auth(tokens.city)).json()
    assert {r["id"] for r in city["Resources"]} == {inside, outside}
    groups = client.get(f"{BASE}/Groups", headers=school).json()["Resources"]
    assert {g["externalId"] for g in groups} == {"T-S1", "T-S1-G1", "T-S1-G1-1"}
    assert client.get(f"{BASE}/Groups/{tree.other_school.id}", headers=school).status_code == 404


def test_token_cannot_change_outside_its_subtree(client, tree, tokens, db) -> None:
    outside = seed_person(db, "T-S2-G7-1", "t2", "乙")
    school = auth(tokens.school)
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                                    "value": False}]}
    assert client.patch(f"{BASE}/Users/{outside}", headers=school, json=patch).status_code == 404
    assert client.put(f"{BASE}/Users/{outside}", headers=school,
                      json=new_user("t2")).status_code == 404
    assert client.delete(f"{BASE}/Users/{outside}", headers=school).status_code == 404
    other_group = f"{BASE}/Groups/{tree.other_class.id}"
    assert client.patch(other_group, headers=school, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members",
                                               "value": [{"value": outside}]}]}
    ).status_code == 404
    # Creating a user placed outside the scope is refused, as is adding an outsider.
    placed_outside = client.post(f"{BASE}/Users", headers=school,
                                 json=new_user("zed", school="T-S2", klass="T-S2-G7-1"))
    assert placed_outside.status_code == 400
    own_class = f"{BASE}/Groups/{tree.klass.id}"
    added = client.patch(own_class, headers=school, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members",
                                               "value": [{"value": outside}]}]})
    assert added.status_code == 400
    # The other school's token still sees its person unchanged.
    seen = client.get(f"{BASE}/Users/{outside}", headers=auth(tokens.other_school)).json()
    assert seen["active"] is True and seen[EDU]["class"] == "T-S2-G7-1"


def test_delete_by_one_school_keeps_the_other_placement(client, tree, tokens, db) -> None:
    uid = client.post(f"{BASE}/Users", headers=auth(tokens.city),
                      json=new_user("two", klass="T-S1-G1-1")).json()["id"]
    client.patch(f"{BASE}/Groups/{tree.other_class.id}", headers=auth(tokens.city), json={
        "schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members",
                                               "value": [{"value": uid}]}]})
    assert client.delete(f"{BASE}/Users/{uid}", headers=auth(tokens.school)).status_code == 204
    assert client.get(f"{BASE}/Users/{uid}", headers=auth(tokens.school)).status_code == 404
    still = client.get(f"{BASE}/Users/{uid}", headers=auth(tokens.other_school)).json()
    assert still["active"] is True
