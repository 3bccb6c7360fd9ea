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
    b"[" * 100000,  # deeper than Python's recursion limit
    b'{"userName": "\\ud800", "name": {"formatted": "a"}}',  # a lone surrogate
    b'{"userName": "a\\u0000b", "name": {"formatted": "a"}}',  # NUL: PostgreSQL refuses it
    b'{"displayName": "\\udfff"}', b'{"filter": "userName eq \\"\\ud800\\""}',
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
        refused = scim.request(method, f"{BASE}/Schemas")
        assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD"
        assert refused.json()["schemas"] == [ERROR]


def test_a_known_endpoint_names_its_methods(scim, tree) -> None:
    """RFC 9110 15.5.6: a method an endpoint does not take is a 405 naming those it does
    (not the catch-all's 404), in SCIM's error format; only after the token is checked."""
    for method, path, allow in (("PUT", "/Users", "GET, HEAD, POST"),
                                ("DELETE", "/Groups", "GET, HEAD, POST"),
                                ("POST", "/Users/some-id", "GET, HEAD, PUT, PATCH, DELETE"),
                                ("GET", "/.search", "POST"),
                                ("PATCH", "/ServiceProviderConfig", "GET, HEAD")):
        refused = scim.request(method, BASE + path)
        assert refused.status_code == 405, (method, path, refused.text)
        assert refused.headers["Allow"] == allow and refused.json()["schemas"] == [ERROR]
    assert scim.put(f"{BASE}/Nothing").status_code == 404
    anonymous = scim.put(f"{BASE}/Users", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and "Allow" not in anonymous.headers
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


@pytest.mark.parametrize("params", [
    {"startIndex": "99999999999999999999"},
    {"filter": 'emails[value eq "a"].value eq "b"'},  # a path after a value filter
    {"filter": 'userName eq "a\x00b"'},  # NUL: PostgreSQL refuses it
])
def test_list_parameters_never_500(scim, params: dict[str, str]) -> None:
    for path in ("/Users", "/Groups"):
        response = scim.get(BASE + path, params=params)
        assert response.status_code < 500, (path, params, response.text)
    huge = scim.get(f"{BASE}/Users", params={"startIndex": "99999999999999999999"})
    assert huge.status_code == 200 and huge.json()["Resources"] == []  # past the end


def test_search_with_a_huge_start_index(scim) -> None:
    response = scim.post(f"{BASE}/Users/.search", json={"startIndex": 1e20})
    assert response.status_code < 500, response.text


def test_nul_in_an_id_or_filter_is_a_scim_error(scim) -> None:
    """PostgreSQL refuses NUL in text: the answer is still SCIM's error schema (RFC 7644
    3.12), not problem JSON."""
    for method, path in (("GET", "/Users/a%00b"), ("DELETE", "/Users/a%00b"),
                         ("GET", "/Groups/a%00b")):
        response = scim.request(method, BASE + path)
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert response.json()["schemas"] == [ERROR]
    listed = scim.get(f"{BASE}/Users", params={"filter": 'userName eq "a\x00"'})
    assert listed.status_code < 500
    if listed.status_code >= 400:
        assert listed.json()["schemas"] == [ERROR]
