"""Org units by code for imports: a bounded cache of lookups, and creation in bulk.

Units are found by their official code (school identifier code; grade and class
codes ``<school>-G<grade>[-<class>]``, see ``rows.class_code``). A new unit's
materialised path needs its id, so units are inserted a level at a time. On
PostgreSQL the ids are taken from the sequence first and each level goes in
with its paths in one ``COPY``; elsewhere ``INSERT ... RETURNING id``, then the
paths are set in one batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from directory.importer.bulk import among, insert_rows, next_ids
from directory.importer.lookups import batches
from directory.models import OrgKind, OrgUnit

CACHE_LIMIT = 100_000
ORG_UNIT = OrgUnit.__table__


@dataclass(slots=True)
class Unit:
    code: str
    name: str
    kind: str
    id: int | None = None  # None until created (or never, in a dry run)
    path: str = ""
    parent: Unit | None = None
    planned: bool = False  # to be created by this run

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1


@dataclass
class Units:
    """Code -> unit, from the database or planned by this run."""

    session: Session
    known: dict[str, Unit | None] = field(default_factory=dict)

    def load(self, codes: Iterable[str]) -> None:
        wanted = [c for c in set(codes) if c not in self.known]
        if len(self.known) + len(wanted) > CACHE_LIMIT:
            self.known = {c: u for c, u in self.known.items() if u is not None and u.planned}
        for part in batches(sorted(wanted)):
            query = select(OrgUnit.code, OrgUnit.name, OrgUnit.kind, OrgUnit.id, OrgUnit.path
                           ).where(among(self.session, OrgUnit.code, part))
            for code, name, kind, unit_id, path in self.session.execute(query):
                self.known[code] = Unit(code, name, kind, unit_id, path)
        for code in wanted:
            self.known.setdefault(code, None)

    def get(self, code: str) -> Unit | None:
        if code not in self.known:
            self.load([code])
        return self.known[code]

    def plan(self, code: str, name: str, kind: OrgKind, parent: Unit | None) -> Unit:
        unit = Unit(code, name, kind.value, parent=parent, planned=True)
        self.known[code] = unit
        return unit

    def the_city(self) -> Unit | None:
        row = self.session.execute(
            select(OrgUnit.code).where(OrgUnit.kind == OrgKind.city.value,
                                       OrgUnit.parent_id.is_(None)).order_by(OrgUnit.id).limit(1)
        ).first()
        return self.get(row[0]) if row else None


def create_units(session: Session, units: list[Unit]) -> None:
    """Insert planned units, parents first, and give each its id and path."""
    now = utcnow()
    for depth in sorted({u.depth for u in units}):
        level = [u for u in units if u.depth == depth and u.id is None]
        if level:
            _create_level(session, level, now)


def _create_level(session: Session, level: list[Unit], now: datetime) -> None:
    ids = next_ids(session, ORG_UNIT, len(level))  # None: not PostgreSQL
    if ids is not None:
        _number(level, ids)
        insert_rows(session, ORG_UNIT, [{"id": u.id, **_row(u, now)} for u in level])
        return
    _number(level, insert_rows(session, ORG_UNIT, [_row(u, now) for u in level], ids=True))
    session.execute(update(OrgUnit), [{"id": u.id, "path": u.path} for u in level])


def _row(unit: Unit, now: datetime) -> dict[str, object]:
    return {"parent_id": unit.parent.id if unit.parent else None, "kind": unit.kind,
            "code": unit.code, "name": unit.name, "path": unit.path, "status": "active",
            "created_at": now, "updated_at": now}


def _number(level: list[Unit], ids: list[int]) -> None:
    for unit, unit_id in zip(level, ids, strict=True):
        unit.id, unit.planned = unit_id, False
        unit.path = f"{unit.parent.path if unit.parent else '/'}{unit_id}/"


def rename_units(session: Session, renames: list[tuple[int, str]]) -> None:
    if renames:
        now = utcnow()
        session.execute(update(OrgUnit), [{"id": unit_id, "name": name, "updated_at": now}
                                          for unit_id, name in renames])
