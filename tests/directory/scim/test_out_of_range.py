"""SCIM input out of range is a SCIM error, not a 500: a date filter whose offset carries it
past year 1 or 9999, a group id of non-ASCII digits, a search number beyond a double."""

from __future__ import annotations

import pytest

from tests.directory.scim.conftest import BASE, ERROR


@pytest.mark.parametrize("text", [
    'meta.lastModified gt "9999-12-31T23:59:59-23:59"',
    'meta.created lt "0001-01-01T00:00:00+23:59"',
])
@pytest.mark.parametrize("path", ["/Users", "/Groups"])
def test_a_date_out_of_range_after_its_offset_is_an_invalid_filter(scim, tree, path: str,
                                                                   text: str) -> None:
    listed = scim.get(BASE + path, params={"filter": text})
    assert listed.status_code == 400, listed.text
    assert listed.json()["schemas"] == [ERROR] and listed.json()["scimType"] == "invalidFilter"
    searched = scim.post(BASE + path + "/.search", json={"filter": text})
    assert searched.status_code == 400, searched.text


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_a_group_id_of_other_digits_is_no_such_group(scim, tree, method: str) -> None:
    """``"²".isdigit()`` is True, and ``int("²")`` a ValueError."""
    response = scim.request(method, f"{BASE}/Groups/%C2%B2",
                            content=None if method in ("GET", "DELETE") else b"{}")
    assert response.status_code == 404, response.text
    assert response.json()["schemas"] == [ERROR]


@pytest.mark.parametrize("body", [b'{"count": 1e400}', b'{"startIndex": 1e400}',
                                  b'{"startIndex": -1e400}'])
@pytest.mark.parametrize("path", ["/Users/.search", "/Groups/.search"])
def test_a_search_number_beyond_float_is_an_invalid_value(scim, tree, path: str,
                                                          body: bytes) -> None:
    """Python reads JSON ``1e400`` as infinity; ``core.json_input`` refuses it."""
    response = scim.post(BASE + path, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["schemas"] == [ERROR]
