"""directory.importer.bulk.among: a batch of keys as one array, whatever the keys hold."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from core.db import Database
from core.settings import Settings
from directory.importer import Kind
from directory.importer.bulk import among, array_literal, insert_rows
from directory.models import OrgUnit
from tests.directory.cityfiles import GUARDIANS, run, seed_city, write

AWKWARD = ["plain", "with,comma", 'a "quote"', "back\\slash", "{braces}", " spaced ", "NULL",
           "", "学校", "tab\there"]


def test_array_literal_quotes_every_string_and_leaves_integers_bare() -> None:
    assert array_literal([3, 1, 2]) == "{3,1,2}"
    assert array_literal([]) == "{}"
    assert array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'


@pytest.mark.parametrize("values", [AWKWARD, [], ["学校"], AWKWARD[1:4]])
def test_among_finds_exactly_the_given_strings(db: Database, values: list[str]) -> None:
    with db.session() as session:
        for n, code in enumerate(AWKWARD):
            session.add(OrgUnit(kind="school", code=code, name=f"s{n}", path=f"/{n}/"))
        session.flush()
        found = session.scalars(select(OrgUnit.code).where(among(session, OrgUnit.code, values)))
        assert sorted(found) == sorted(values)
        ids = session.scalars(select(OrgUnit.id).where(OrgUnit.code.in_(values[:3]))).all()
        by_id = session.scalars(select(OrgUnit.code).where(among(session, OrgUnit.id, ids)))
        assert sorted(by_id) == sorted(values[:3])
        session.rollback()


def test_insert_rows_takes_each_value_by_its_key_whatever_the_order(db: Database) -> None:
    """PostgreSQL's COPY names the first row's columns: later rows may list them otherwise."""
    table = OrgUnit.__table__
    now = datetime.now(UTC)
    rows = [{"kind": "school", "code": "k1", "name": "first", "path": "/k1/", "status": "active",
             "created_at": now, "updated_at": now},
            {"updated_at": now, "created_at": now, "status": "closed", "path": "/k2/",
             "name": "second", "code": "k2", "kind": "district"}]
    with db.session() as session:
        ids = insert_rows(session, table, rows, ids=True)
        found = session.execute(select(OrgUnit.id, OrgUnit.kind, OrgUnit.code, OrgUnit.name,
                                       OrgUnit.path, OrgUnit.status).order_by(OrgUnit.code)).all()
        assert [tuple(row) for row in found] == [
            (ids[0], "school", "k1", "first", "/k1/", "active"),
            (ids[1], "district", "k2", "second", "/k2/", "closed")]
        session.rollback()


def test_on_postgresql_the_array_is_a_constant_of_the_plan(db: Database) -> None:
    """Sent typed as text, the array would be cast again for every row a scan reads."""
    with db.session() as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("PostgreSQL only: elsewhere among() is IN (...)")
        query = select(OrgUnit.id).where(among(session, OrgUnit.code, ["a", "b,c"]))
        compiled = query.compile(dialect=session.get_bind().dialect)
        plan = "\n".join(row[0] for row in session.connection().exec_driver_sql(
            "EXPLAIN " + str(compiled), compiled.params))
        assert """ANY ('{a,"b,c"}'::text[])""" in plan, plan


def test_every_plan_of_an_import_runs_without_parallel_query(
        db: Database, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel plans start server processes for each 2,000-key lookup: not for an import,
    neither on the run's connection nor on the connection that plans ahead."""
    from directory.importer import pipeline, plan

    seed_city(db, settings, tmp_path)
    seen: list[str] = []
    finish = plan.finish_chunk

    def recording(chunk: plan.Chunk) -> plan.ChunkPlan:
        seen.append(chunk.context.session.execute(
            text("SHOW max_parallel_workers_per_gather")).scalar_one()
            if chunk.context.session.get_bind().dialect.name == "postgresql" else "0")
        return finish(chunk)

    monkeypatch.setattr(pipeline.plan, "finish_chunk", recording)
    result = run(db, settings, write(tmp_path / "g.csv", GUARDIANS), Kind.guardians,
                 chunk_size=1)
    assert result.status == "unchanged"
    assert len(seen) == len(GUARDIANS[1]) and set(seen) == {"0"}
    with db.session() as session:  # only the import's transactions
        if session.get_bind().dialect.name == "postgresql":
            assert session.execute(text("SHOW max_parallel_workers_per_gather")).scalar_one() \
                != "0"
