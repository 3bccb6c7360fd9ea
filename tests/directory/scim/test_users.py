"""Users: create, read, replace, patch, delete; the education extension; ETags; phone at rest."""

from __future__ import annotations

from sqlalchemy import select, text

from core.audit import AuditEvent
from core.db import Database
from directory.models import Account, Affiliation, Person, Role
from tests.directory.scim.conftest import (
    BASE,
    EDU,
    ERROR,
    PATCH_OP,
    SCIM_JSON,
    new_user,
    seed_person,
)


def _patch(*operations: dict) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def test_create_returns_the_user_with_location_etag_and_extension(scim, tree) -> None:
    response = scim.post(f"{BASE}/Users", json=new_user(
        "Alice", klass="T-S1-G1-1", externalId="ext-1", emails=[{"value": "Alice@Example.cn"}],
        **{EDU: {"schoolCode": "T-S1", "class": "T-S1-G1-1", "roles": ["student"],
                 "studentNumber": "S2026-0001"}}))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    user = response.json()
    assert response.headers["location"] == user["meta"]["location"]
    assert response.headers["etag"] == user["meta"]["version"]
    assert user["meta"]["version"].startswith('W/"')
    assert user["meta"]["resourceType"] == "User"
    assert user["userName"] == "alice"  # normalised as the login form does
    assert user["externalId"] == "ext-1"
    assert user["active"] is True
    assert user["emails"] == [{"value": "alice@example.cn"}]
    assert user[EDU] == {"studentNumber": "s2026-0001", "schoolCode": "T-S1",
                         "grade": "T-S1-G1", "class": "T-S1-G1-1", "roles": ["student"]}
    assert user["groups"][0]["display"] == "1班"
    fetched = scim.get(f"{BASE}/Users/{user['id']}").json()
    assert fetched == user


def test_name_parts_are_derived_and_returned_on_request(scim, tree) -> None:
    uid = scim.post(f"{BASE}/Users", json=new_user("bob", formatted="欧阳小明")).json()["id"]
    plain = scim.get(f"{BASE}/Users/{uid}").json()
    assert plain["name"] == {"formatted": "欧阳小明"}
    asked = scim.get(f"{BASE}/Users/{uid}",
                     params={"attributes": "name.givenName,name.familyName"}).json()
    assert asked["name"] == {"familyName": "欧阳", "givenName": "小明"}  # a compound surname


def test_phone_is_stored_encrypted_and_returned_normalised(scim, tree, db: Database) -> None:
    body = new_user("carol", phoneNumbers=[{"value": "+86 138-0013-8000", "type": "mobile"}])
    user = scim.post(f"{BASE}/Users", json=body).json()
    assert user["phoneNumbers"] == [{"value": "13800138000"}]
    with db.engine.connect() as connection:
        raw = connection.execute(text("SELECT phone_enc FROM person WHERE uid = :uid"),
                                 {"uid": user["id"]}).scalar_one()
    assert raw.startswith("sm4gcm.") and "13800138000" not in raw
    found = scim.get(f"{BASE}/Users",
                     params={"filter": 'phoneNumbers.value eq "138 0013 8000"'}).json()
    assert [r["id"] for r in found["Resources"]] == [user["id"]]
    bad = scim.post(f"{BASE}/Users", json=new_user("dan", phoneNumbers=[{"value": "call me"}]))
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidValue"


def test_address_is_stored_encrypted_one_per_user(scim, tree, db: Database) -> None:
    body = new_user("fay", addresses=[{"formatted": "北京市海淀区学院路 1 号", "type": "home"}])
    user = scim.post(f"{BASE}/Users", json=body).json()
    assert user["addresses"] == [{"formatted": "北京市海淀区学院路 1 号"}]
    with db.engine.connect() as connection:
        raw = connection.execute(text("SELECT address_enc FROM person WHERE uid = :uid"),
                                 {"uid": user["id"]}).scalar_one()
    assert raw.startswith("sm4gcm.") and "学院路" not in raw
    cleared = scim.patch(f"{BASE}/Users/{user['id']}", json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": "addresses"}]})
    assert cleared.status_code == 200 and "addresses" not in cleared.json()
    two = scim.post(f"{BASE}/Users", json=new_user("gus", addresses=[
        {"formatted": "一"}, {"formatted": "二"}]))
    assert two.status_code == 400 and two.json()["scimType"] == "invalidValue"
    long = scim.post(f"{BASE}/Users", json=new_user("hal", addresses=[{"formatted": "长" * 201}]))
    assert long.status_code == 400


def test_address_sent_in_parts_is_stored_as_one_text(scim, tree) -> None:
    """Most provisioning clients send the parts; the directory keeps one text, largest part
    first, and returns it as ``formatted`` (the parts are write-only)."""
    body = new_user("ivy", addresses=[{"type": "home", "country": "中国", "region": "北京市",
                                       "locality": "海淀区", "streetAddress": "学院路 1 号",
                                       "postalCode": "100083"}])
    user = scim.post(f"{BASE}/Users", json=body)
    assert user.status_code == 201, user.text
    assert user.json()["addresses"] == [{"formatted": "中国 北京市 海淀区 学院路 1 号 100083"}]


def test_put_replaces_and_omitted_attributes_are_cleared(scim, tree) -> None:
    uid = scim.post(f"{BASE}/Users", json=new_user(
        "erin", externalId="x", emails=[{"value": "e@x.cn"}])).json()["id"]
    replaced = scim.put(f"{BASE}/Users/{uid}", json=new_user(
        "erin2", formatted="李四", klass="T-S1-G1-1", roles=["teacher", "head_teacher"]))
    assert replaced.status_code == 200, replaced.text
    user = replaced.json()
    assert user["userName"] == "erin2" and user["name"]["formatted"] == "李四"
    assert "externalId" not in user and "emails" not in user
    assert user[EDU]["roles"] == ["teacher", "head_teacher"]
    assert user[EDU]["class"] == "T-S1-G1-1"


def test_patch_add_replace_remove_with_filters(scim, tree) -> None:
    uid = scim.post(f"{BASE}/Users", json=new_user(
        "fay", emails=[{"value": "a@x.cn"}, {"value": "b@x.cn"}])).json()["id"]
    response = scim.patch(f"{BASE}/Users/{uid}", json=_patch(
        {"op": "add", "path": "emails", "value": [{"value": "c@x.cn"}]},
        {"op": "remove", "path": 'emails[value eq "a@x.cn"]'},
        {"op": "replace", "path": "name.formatted", "value": "赵六"},
        {"op": "replace", "value": {"active": False, "externalId": "hr-7"}},
        {"op": "add", "path": f"{EDU}:class", "value": "T-S1-G1-1"},
        {"op": "add", "path": f"{EDU}:teacherNumber", "value": "T-77"},
    ))
    assert response.status_code == 200, response.text
    user = response.json()
    assert [e["value"] for e in user["emails"]] == ["b@x.cn", "c@x.cn"]
    assert user["name"]["formatted"] == "赵六" and user["active"] is False
    assert user["externalId"] == "hr-7"
    assert user[EDU]["class"] == "T-S1-G1-1" and user[EDU]["grade"] == "T-S1-G1"
    assert user[EDU]["teacherNumber"] == "t-77"
    removed = scim.patch(f"{BASE}/Users/{uid}", json=_patch(
        {"op": "remove", "path": f"{EDU}:grade"}, {"op": "remove", "path": "externalId"}))
    user = removed.json()
    assert "class" not in user[EDU] and "grade" not in user[EDU]  # back at school level
    assert user[EDU]["schoolCode"] == "T-S1" and "externalId" not in user
    required = scim.patch(f"{BASE}/Users/{uid}", json=_patch(
        {"op": "remove", "path": f"{EDU}:schoolCode"}))
    assert required.status_code == 400 and required.json()["schemas"] == [ERROR]


def test_patch_placement_history_is_kept(scim, tree, db: Database) -> None:
    uid = scim.post(f"{BASE}/Users", json=new_user("gus")).json()["id"]
    scim.patch(f"{BASE}/Users/{uid}", json=_patch(
        {"op": "replace", "path": f"{EDU}:class", "value": "T-S1-G1-1"}))
    with db.session() as session:
        rows = session.scalars(select(Affiliation).join(Person).where(Person.uid == uid)
                               .order_by(Affiliation.id)).all()
        assert [(r.org_unit_id, r.valid_to is not None) for r in rows] == [
            (tree.school.id, True), (tree.klass.id, False)]


def test_if_match_is_honoured(scim, tree) -> None:
    created = scim.post(f"{BASE}/Users", json=new_user("hal"))
    uid, etag = created.json()["id"], created.headers["etag"]
    stale = scim.patch(f"{BASE}/Users/{uid}", headers={"If-Match": 'W/"old"'},
                       json=_patch({"op": "replace", "path": "active", "value": False}))
    assert stale.status_code == 412 and stale.json()["schemas"] == [ERROR]
    fresh = scim.patch(f"{BASE}/Users/{uid}", headers={"If-Match": etag},
                       json=_patch({"op": "replace", "path": "active", "value": False}))
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag
    assert scim.put(f"{BASE}/Users/{uid}", headers={"If-Match": etag},
                    json=new_user("hal")).status_code == 412
    assert scim.delete(f"{BASE}/Users/{uid}", headers={"If-Match": etag}).status_code == 412
    assert scim.delete(f"{BASE}/Users/{uid}",
                       headers={"If-Match": fresh.headers["etag"]}).status_code == 204


def test_uniqueness_conflicts_are_409(scim, tree, db: Database) -> None:
    seed_person(db, "T-S1", "t900")
    assert scim.post(f"{BASE}/Users", json=new_user("ivy", emails=[{"value": "i@x.cn"}])
                     ).status_code == 201
    for body in (new_user("ivy"), new_user("T900"), new_user("jo", emails=[{"value": "I@x.cn"}]),
                 new_user("jo", **{EDU: {"schoolCode": "T-S1", "roles": ["teacher"],
                                         "teacherNumber": "t900"}})):
        response = scim.post(f"{BASE}/Users", json=body)
        assert response.status_code == 409, response.text
        assert response.json()["scimType"] == "uniqueness"


def test_delete_deactivates_and_keeps_history(scim, tree, db: Database) -> None:
    uid = scim.post(f"{BASE}/Users", json=new_user("kim")).json()["id"]
    assert scim.delete(f"{BASE}/Users/{uid}").status_code == 204
    assert scim.get(f"{BASE}/Users/{uid}").status_code == 404
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.uid == uid))
        assert person.status == "left"
        assert session.scalar(select(Account.disabled).where(Account.person_id == person.id))
        assert session.scalar(select(Affiliation.valid_to).where(
            Affiliation.person_id == person.id)) is not None
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
        assert actions == ["scim.user.create", "scim.user.delete"]
        actors = set(session.scalars(select(AuditEvent.actor)))
        assert len(actors) == 1 and actors.pop().startswith("api-token:")
        details = " ".join(session.scalars(select(AuditEvent.detail)))
        assert "kim" not in details


def test_directory_people_and_admin_roles(scim, tree, db: Database) -> None:
    uid = seed_person(db, "T-S1-G1-1", "T100", role=Role.head_teacher)
    user = scim.get(f"{BASE}/Users/{uid}").json()
    assert user["userName"] == "t100" and user[EDU]["teacherNumber"] == "t100"
    assert user[EDU]["roles"] == ["head_teacher"] and user[EDU]["class"] == "T-S1-G1-1"
    grant = scim.post(f"{BASE}/Users", json=new_user("lee", roles=["school_admin"]))
    assert grant.status_code == 400 and grant.json()["scimType"] == "mutability"


def test_placement_must_be_consistent_and_known(scim, tree) -> None:
    for ext in ({"schoolCode": "NOPE", "roles": ["student"]},
                {"schoolCode": "T-S1", "class": "T-S2-G7-1", "roles": ["student"]},
                {"schoolCode": "T-S1", "roles": []},
                {"schoolCode": "T-S1", "roles": ["wizard"]}):
        response = scim.post(f"{BASE}/Users", json={**new_user("mo"), EDU: ext})
        assert response.status_code == 400, (ext, response.text)
    no_extension = new_user("mo")
    del no_extension[EDU]
    assert scim.post(f"{BASE}/Users", json=no_extension).status_code == 400


def test_invisible_characters_make_no_user_name(scim, tree) -> None:
    """NFKC keeps a zero-width space: ``"\\u200b"`` was stored as an invisible userName, and
    ``"bob\\u200b"`` as a second "bob" nobody could type."""
    for invisible in ("\u200b", "bob\u200b\u200d", "bo\u202eb"):
        refused = scim.post(f"{BASE}/Users", json=new_user(invisible))
        assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"
    assert scim.post(f"{BASE}/Users", json=new_user("bob")).status_code == 201


def test_phone_numbers_are_not_the_login_and_keep_a_suspension_of_sms_codes(
        scim, tree, db: Database, settings) -> None:
    """phoneNumbers is the person's contact number, not the phone login SMS codes go to: a
    new one leaves a stolen login number's suspension (mfa.reset) in place, so the number
    on the stolen phone still gets no code."""
    from core.db import utcnow
    from core.field_crypto import blind_index
    from directory.models import IdentifierKind, LoginIdentifier

    user = scim.post(f"{BASE}/Users", json=new_user(
        "gina", phoneNumbers=[{"value": "13800138000"}])).json()
    with db.session() as session:
        account = session.scalar(select(Account).join(Person).where(Person.uid == user["id"]))
        session.add(LoginIdentifier(account=account, kind=IdentifierKind.phone.value,
                                    value=blind_index(settings, "phone", "13800138000")))
        account.sms_suspended_at = utcnow()
    changed = scim.patch(f"{BASE}/Users/{user['id']}", json=_patch(
        {"op": "replace", "path": "phoneNumbers", "value": [{"value": "13700137000"}]}))
    assert changed.status_code == 200, changed.text
    assert changed.json()["phoneNumbers"] == [{"value": "13700137000"}]
    with db.session() as session:
        account = session.scalar(select(Account).join(Person).where(Person.uid == user["id"]))
        assert account.sms_suspended_at is not None
