"""The demo SCIM token for ``idp demo`` (``var/demo.json`` key ``scim``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.settings import Settings
from directory.api_tokens import authenticate, issue
from directory.models import OrgUnit

TOKEN_NAME = "demo SCIM client"


def demo_token(
    session: Session, settings: Settings, city: OrgUnit, previous: dict[str, Any] | None
) -> dict[str, str]:
    """Reuse the recorded token while it still authenticates for the city with 'scim'."""
    base_url = settings.issuer.rstrip("/") + "/scim/v2"
    token = (previous or {}).get("token")
    if isinstance(token, str):
        scope = authenticate(session, settings, token)
        if scope is not None and scope.org_unit_id == city.id and "scim" in scope.permissions:
            return {"base_url": base_url, "token": token}
    _, token = issue(session, settings, name=TOKEN_NAME, scope=city, permissions={"scim"})
    return {"base_url": base_url, "token": token}
