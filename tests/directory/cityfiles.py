"""Small import files for the directory tests, and a helper to import them."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

from core.db import Database
from core.settings import Settings
from directory.importer import ImportOptions, ImportResult, Kind, import_file
from directory.pii import national_id_check_char

TODAY = date(2026, 9, 10)

SCHOOLS = (["学校标识码", "学校名称", "区县代码", "区县名称"], [
    ["3100000001", "第一小学", "310101", "黄浦区"],
    ["3100000002", "第二中学", "310101", "黄浦区"],
    ["3100000003", "滨江九年一贯制学校", "310104", "徐汇区"],
])
CLASSES = (["学校标识码", "年级", "班级"], [
    ["3100000001", "一年级", "1班"], ["3100000001", "一年级", "2班"],
    ["3100000001", "六年级", "1班"],
    ["3100000002", "初一", "1"], ["3100000002", "初三", "1"], ["3100000002", "高三", "1"],
    ["3100000003", "6", "1"], ["3100000003", "7", "1"],
])
STUDENT_HEADER = ["学校标识码", "年级", "班级", "学号", "姓名", "性别", "出生日期", "身份证号",
                  "手机号"]


def national_id(born: str, seq: int, region: str = "310101") -> str:
    body = f"{region}{born}{seq:03d}"
    return body + national_id_check_char(body)


def student(number: str, name: str, school: str = "3100000001", grade: str = "1",
            klass: str = "1", seq: int = 1, phone: str = "") -> list[str]:
    return [school, grade, klass, number, name, "男", "2014-03-05",
            national_id("20140305", seq), phone]


STUDENTS = (STUDENT_HEADER, [
    student("S001", "张小明", seq=1, phone="13800138001"),
    student("S002", "陈小红", klass="2", seq=2),
    student("S003", "刘小刚", school="3100000002", grade="初一", seq=3),
])
TEACHERS = (["学校标识码", "工号", "姓名", "手机号"], [
    ["3100000001", "T001", "王丽", "13900139001"],
    ["3100000002", "T002", "李强", "13900139002"],
])
GUARDIANS = (["监护人姓名", "手机号", "关系", "学号"], [
    ["张大伟", "13700137001", "父亲", "S001"],
    ["张大伟", "13700137001", "父亲", "S003"],
    ["陈静", "13700137002", "母亲", "S002"],
])


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write(path: Path, table: tuple[list[str], list[list[str]]], encoding: str = "utf-8"
          ) -> Path:
    path.write_bytes(csv_text(*table).encode(encoding))
    return path


def run(db: Database, settings: Settings, path: Path, kind: Kind | None = None,
        **options: object) -> ImportResult:
    options.setdefault("today", TODAY)
    return import_file(db, settings, path, ImportOptions(kind=kind, **options))


def seed_city(db: Database, settings: Settings, folder: Path, *, people: bool = True) -> None:
    """Schools and classes; with ``people``, students, teachers and guardians too."""
    tables = [("schools", SCHOOLS), ("classes", CLASSES)]
    if people:
        tables += [("students", STUDENTS), ("teachers", TEACHERS), ("guardians", GUARDIANS)]
    for name, table in tables:
        result = run(db, settings, write(folder / f"{name}.csv", table), Kind(name))
        assert result.status == "applied", (name, result.diff.summary(), result.errors)


def cli_env(monkeypatch, db: Database, settings: Settings, var_dir: Path) -> None:
    """The environment of an in-process ``idp`` command (typer's ``CliRunner``) working on
    the test's database."""
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(var_dir), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
