"""Garbage in: always a SCIM error (400/404/405/409/501), never a 500."""

from __future__ import annotations

import pytest

from tests.directory.scim.conftest import BASE, EDU, ERROR, PATCH_OP, new_user

GARBAGE = [
    b"", b"{", b"[]", b"null", b"42", b'"user"', b"\xff\xfe\x00", b'{"userName": 5}',
    b'{"schemas": "x"}', b'{"userName": "a", "name": "not an object"}',
    b'{"userName": "a", "name": {"formatted": ""}, "' + EDU.encode() + b'": {}}',
    b'{"userName": ["a"], "emails": [{"value": 3}]}', b'{"Operations": "all"}',
    b'{"schemas": ["' + PATCH_OP.encode() + b'"], "Operations": [{"op": "explode"}]}',
    b'{"schemas": ["' + PATCH_OP.encode() + b'"], "Operations": [{"op": "add", "path": "(("}]}',
    b'{"schemas": ["' + PATCH_OP.encode() + b'"], "Operations": [{"op": "remove"}]}',
    b'{"displayName": "' + b"x" * 300 + b'"}',
    b'{"userName": "' + b"y" * 500 + b'", "name": {"formatted": "a"}}',
]


@pytest.fixture
def targets(scim, tree) -> list[tuple[str, str]]:
    uid = scim.post(f"{BASE}/Users", json=new_user("victim")).json()["id"]
    return [("POST", "/Users"), ("PUT", f"/Users/{uid}"), ("PATCH", f"/Users/{uid}"),
            ("POST", "/Groups"), ("PUT", f"/Groups/{tree.klass.id}"),
            ("PATCH", f"/Groups/{tree.klass.id}"), ("POST", "/Users/.search")]


@pytest.mark.parametrize("body", GARBAGE)
def test_malformed_bodies_are_scim_errors(scim, targets, body: bytes) -> None:
    for method, path in targets:
        response = scim.request(method, BASE + path, content=body)
        assert response.status_code < 500, (method, path, body, response.text)
        assert response.headers["content-type"].startswith("application/scim+json")
        if path.endswith(".search") and response.status_code == 200:
            continue  # a search ignores members it does not know
        assert response.status_code >= 400, (method, path, body, response.text)
        assert response.json()["schemas"] == [ERROR]


def test_unknown_ids_and_endpoints(scim, tree) -> None:
    for path in ("/Users/nope", "/Groups/nope", "/Groups/99999999999999999999", "/Nothing",
                 "/Schemas/urn:nope", "/ResourceTypes/Nope"):
        response = scim.get(BASE + path)
        assert response.status_code == 404, path
        assert response.json()["schemas"] == [ERROR]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert scim.request(method, f"{BASE}/Schemas").status_code == 405
    assert scim.post(f"{BASE}/.search", json={}).status_code == 501


def test_discovery_publishes_the_extension(scim, tree) -> None:
    schemas = scim.get(f"{BASE}/Schemas").json()["Resources"]
    edu = next(s for s in schemas if s["id"] == EDU)
    attributes = {a["name"]: a for a in edu["attributes"]}
    assert set(attributes) == {"studentNumber", "teacherNumber", "schoolCode", "grade",
                               "class", "roles"}
    assert attributes["schoolCode"]["canonicalValues"] == ["T-S1"]
    assert attributes["class"]["canonicalValues"] == ["T-S1-G1-1"]
    assert scim.get(f"{BASE}/Schemas/{EDU}").json()["id"] == EDU
    user_type = scim.get(f"{BASE}/ResourceTypes/User").json()
    assert user_type["schemaExtensions"] == [{"schema": EDU, "required": True}]
    config = scim.get(f"{BASE}/ServiceProviderConfig").json()
    assert config["patch"]["supported"] and config["etag"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
