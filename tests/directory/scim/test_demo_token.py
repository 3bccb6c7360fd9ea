"""``idp demo`` records a SCIM token for the demo city, and keeps it across runs."""

from __future__ import annotations

from core.db import Database
from core.settings import Settings
from directory.api_tokens import authenticate
from idp import demo


def test_demo_records_a_working_city_scim_token(db: Database, settings: Settings, client) -> None:
    with db.session() as session:
        first = demo.seed(session, settings)
    demo.write(settings, first)
    with db.session() as session:
        second = demo.seed(session, settings)
        scope = authenticate(session, settings, second["scim"]["token"])
    assert second["scim"] == first["scim"]
    assert first["scim"]["base_url"] == settings.issuer + "/scim/v2"
    assert scope is not None and scope.permissions == frozenset({"scim"})
    listed = client.get("/scim/v2/Users",
                        headers={"Authorization": f"Bearer {first['scim']['token']}"})
    assert listed.status_code == 200 and listed.json()["totalResults"] >= 5
    demo.demo_path(settings).unlink()
