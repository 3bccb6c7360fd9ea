"""The org-unit tree: creation with materialised paths, subtree queries."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.models import OrgKind, OrgUnit


def ensure_org_unit(
    session: Session, *, code: str, name: str, kind: OrgKind, parent: OrgUnit | None = None
) -> OrgUnit:
    """Return the unit with ``code``, creating it (idempotent)."""
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if unit is not None:
        return unit
    unit = OrgUnit(code=code, name=name, kind=kind.value, parent=parent)
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    session.flush()
    return unit


def subtree(session: Session, root: OrgUnit) -> list[OrgUnit]:
    return list(session.scalars(
        select(OrgUnit).where(OrgUnit.path.startswith(root.path)).order_by(OrgUnit.path)
    ))
