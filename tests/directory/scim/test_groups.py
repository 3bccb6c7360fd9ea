"""Groups: org units; members are current affiliations."""

from __future__ import annotations

from tests.directory.scim.conftest import BASE, PATCH_OP, new_user


def _patch(*operations: dict) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def test_class_members_follow_affiliations(scim, tree) -> None:
    amy = scim.post(f"{BASE}/Users", json=new_user("amy", klass="T-S1-G1-1")).json()["id"]
    ben = scim.post(f"{BASE}/Users", json=new_user("ben", roles=["teacher"])).json()["id"]
    group = f"{BASE}/Groups/{tree.klass.id}"
    assert [m["value"] for m in scim.get(group).json()["members"]] == [amy]
    added = scim.patch(group, json=_patch({"op": "add", "path": "members",
                                           "value": [{"value": ben}]}))
    assert added.status_code == 200, added.text
    assert {m["value"] for m in added.json()["members"]} == {amy, ben}
    ben_user = scim.get(f"{BASE}/Users/{ben}").json()
    assert {g["value"] for g in ben_user["groups"]} == {str(tree.school.id), str(tree.klass.id)}
    removed = scim.patch(group, json=_patch({"op": "remove",
                                             "path": f'members[value eq "{amy}"]'}))
    assert [m["value"] for m in removed.json()["members"]] == [ben]
    assert scim.get(f"{BASE}/Groups", params={"filter": f'members.value eq "{ben}"'}
                    ).json()["totalResults"] == 2


def test_departments_created_renamed_deleted(scim, tree) -> None:
    created = scim.post(f"{BASE}/Groups", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "语文教研组"})
    assert created.status_code == 201, created.text
    group = created.json()
    assert "externalId" not in group and group["displayName"] == "语文教研组"
    url = f"{BASE}/Groups/{group['id']}"
    renamed = scim.patch(url, json=_patch({"op": "replace", "value": {
        "displayName": "数学教研组", "externalId": "T-S1-MATH"}}))
    assert renamed.json()["externalId"] == "T-S1-MATH"
    clash = scim.patch(url, json=_patch({"op": "replace", "path": "externalId",
                                         "value": "T-S1"}))
    assert clash.status_code == 409
    assert scim.get(f"{BASE}/Groups", params={"filter": 'externalId eq "T-S1-MATH"'}
                    ).json()["totalResults"] == 1
    assert scim.delete(url).status_code == 204
    assert scim.get(url).status_code == 404
    school = scim.delete(f"{BASE}/Groups/{tree.klass.id}")
    assert school.status_code == 400 and school.json()["scimType"] == "mutability"
    official = scim.patch(f"{BASE}/Groups/{tree.klass.id}", json=_patch(
        {"op": "replace", "path": "externalId", "value": "NEW"}))
    assert official.status_code == 400
