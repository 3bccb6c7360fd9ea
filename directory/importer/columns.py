"""The columns of each kind of import file, their Chinese aliases, and kind detection.

Decisions:

- Headers are matched after Unicode NFKC, lower-casing, and removing spaces,
  underscores and the ``*`` that data-pool templates put on required columns:
  ``学校标识码*``, ``School Code`` and ``school_code`` are the same column.
- A missing required column rejects the file. An unknown (extra) column is
  ignored with one warning naming it: exports often carry columns we do not
  keep (学籍号, 民族, ...), and refusing them would make operators edit files.
- A column named twice rejects the file (which one would be right?).
- The kind is detected from the headers when ``--kind`` is not given:
  a student number means students, a teacher number teachers, a relation or a
  guardian name guardians, a class column classes, otherwise schools.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from directory.importer.formats import FileProblem


class Kind(StrEnum):
    schools = "schools"
    classes = "classes"
    students = "students"
    teachers = "teachers"
    guardians = "guardians"


# Canonical column -> the headers accepted for it (canonical name first).
ALIASES: dict[str, tuple[str, ...]] = {
    "school_code": ("school_code", "学校标识码", "学校代码", "学校编码"),
    "school_name": ("school_name", "学校名称"),
    "district_code": ("district_code", "区县代码", "区县编码", "行政区划代码"),
    "district_name": ("district_name", "区县名称", "区县"),
    "grade": ("grade", "年级"),
    "class": ("class", "班级", "班号"),
    "class_name": ("class_name", "班级名称"),
    "name": ("name", "姓名"),
    "gender": ("gender", "性别"),
    "birth_date": ("birth_date", "出生日期", "生日"),
    "national_id": ("national_id", "身份证号", "身份证件号", "身份证号码", "证件号码"),
    "phone": ("phone", "手机号", "手机号码", "联系电话"),
    "guardian_phone": ("guardian_phone", "监护人手机号", "家长手机号", "监护人电话"),
    "student_number": ("student_number", "学号", "学生学号"),
    "teacher_number": ("teacher_number", "工号", "教工号", "教师工号"),
    "role": ("role", "岗位", "角色"),
    "guardian_name": ("guardian_name", "监护人姓名", "家长姓名"),
    "relation": ("relation", "关系", "与学生关系", "监护关系"),
    "password_hash": ("password_hash", "密码哈希"),
}


@dataclass(frozen=True)
class Layout:
    required: tuple[str, ...]
    optional: tuple[str, ...]


LAYOUTS: dict[Kind, Layout] = {
    Kind.schools: Layout(("school_code", "name"), ("district_code", "district_name")),
    Kind.classes: Layout(("school_code", "grade", "class"), ("class_name",)),
    Kind.students: Layout(
        ("school_code", "grade", "class", "student_number", "name"),
        ("gender", "birth_date", "national_id", "phone", "password_hash"),
    ),
    Kind.teachers: Layout(
        ("school_code", "teacher_number", "name"),
        ("gender", "birth_date", "national_id", "phone", "role", "password_hash"),
    ),
    Kind.guardians: Layout(
        ("guardian_name", "phone", "relation", "student_number"), ("national_id",),
    ),
}

# Within one kind, a generic header may stand for a more specific column.
KIND_ALIASES: dict[Kind, dict[str, str]] = {
    Kind.schools: {"school_name": "name"},
    Kind.classes: {"name": "class_name"},
    Kind.guardians: {"name": "guardian_name", "guardian_phone": "phone"},
}


def header_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    return "".join(ch for ch in folded if ch not in " _*-\u3000")


_BY_HEADER = {header_key(alias): column for column, names in ALIASES.items() for alias in names}


def canonical(header: str) -> str | None:
    return _BY_HEADER.get(header_key(header))


def detect_kind(header: list[str]) -> Kind:
    columns = {canonical(h) for h in header}
    if "student_number" in columns and columns & {"relation", "guardian_name", "guardian_phone"}:
        return Kind.guardians
    for column, kind in (("student_number", Kind.students), ("teacher_number", Kind.teachers),
                         ("class", Kind.classes), ("school_code", Kind.schools)):
        if column in columns:
            return kind
    raise FileProblem("cannot tell what the file holds from its headers; give --kind")


def label(column: str) -> str:
    """How an error names a column: ``name (姓名)``."""
    names = ALIASES[column]
    return f"{names[0]} ({names[1]})" if len(names) > 1 else names[0]


@dataclass(frozen=True)
class Columns:
    """Where each known column of a kind sits in the file's rows."""

    kind: Kind
    index: dict[str, int]
    ignored: tuple[str, ...]
    width: int  # cells in the header

    def get(self, cells: list[str], column: str) -> str:
        at = self.index.get(column)
        if at is None or at >= len(cells):
            return ""
        return cells[at].strip()


def resolve(kind: Kind, header: list[str]) -> Columns:
    """Map the header onto ``kind``'s layout; :class:`FileProblem` if it does not fit."""
    layout = LAYOUTS[kind]
    wanted = set(layout.required) | set(layout.optional)
    index: dict[str, int] = {}
    ignored: list[str] = []
    for at, text in enumerate(header):
        column = canonical(text)
        column = KIND_ALIASES.get(kind, {}).get(column or "", column)
        if column is None or column not in wanted:
            if text:
                ignored.append(text)
            continue
        if column in index:
            raise FileProblem(f"column {label(column)} appears twice in the header")
        index[column] = at
    missing = [label(c) for c in layout.required if c not in index]
    if missing:
        raise FileProblem(f"missing columns for {kind.value}: {', '.join(missing)}")
    return Columns(kind, index, tuple(ignored), len(header))
