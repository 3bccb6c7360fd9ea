"""The API description (``/api/openapi.json``): every operation has its own id."""

from __future__ import annotations

import warnings

from fastapi.testclient import TestClient


def test_every_operation_has_its_own_id(client: TestClient) -> None:
    """GET and POST of the same endpoint (authorization, UserInfo) are two operations;
    one id for both made FastAPI warn and code generators produce one method."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Duplicate Operation ID")
        document = client.get("/api/openapi.json").json()
    ids = [operation["operationId"] for path in document["paths"].values()
           for operation in path.values()]
    assert len(ids) == len(set(ids))
    assert {"userinfo_get", "userinfo_post", "authorize_get", "authorize_post"} <= set(ids)
