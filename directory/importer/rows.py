"""Checking one row of an import file, on its own (no database): parsed row or errors.

Each kind has a parser that reads its cells through small field parsers
(``_name``, ``_grade``, ``_national_id``...). A field parser returns the clean
value or raises ``ValueError`` with a message in plain words; the row parser
collects every error of the row, not just the first, so one pass over the error
file fixes a row. Error values of personal data are masked.

Decisions:

- Empty optional cells mean "not given": they never erase a stored value.
- Grades are numbers 1-12; ``7``, ``G7``, ``七年级``, ``初一`` and ``高一`` (= 10)
  are accepted. Classes are numbers: ``3``, ``03``, ``3班``, ``(3)班``.
- Gender: ``男``/``M``/``male``/``1`` and ``女``/``F``/``female``/``2``.
- Dates: ``2012-03-04``, ``2012/3/4``, ``2012.3.4``, ``20120304``. A birth date
  that contradicts the national ID's birth date is an error.
- ``password_hash`` (optional) carries a legacy hash as ``md5:<hex>``,
  ``sha1:<hex>``, ``sha256:<salt>:<hex>``, ``sha256-ps:<salt>:<hex>`` or a bcrypt
  string; it is used only when the account is created.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from core.passwords import import_legacy_hash
from directory.identifiers import has_invisible, normalise
from directory.importer.columns import Columns, Kind, label
from directory.models import Account, IdentifierKind, OrgUnit, Role
from directory.pii import (
    mask_name,
    mask_national_id,
    mask_numbers,
    mask_phone,
    normalise_mobile,
    normalise_national_id,
)

MAX_NAME = 100
FINAL_GRADE = 12


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str
    value: str = ""  # as shown to the operator: personal data masked


@dataclass(slots=True)
class SchoolRow:
    row: int
    code: str
    name: str
    district_code: str
    district_name: str

    @property
    def key(self) -> str:
        return self.code


@dataclass(slots=True)
class ClassRow:
    row: int
    school_code: str
    grade: int
    number: int
    name: str

    @property
    def key(self) -> str:
        return class_code(self.school_code, self.grade, self.number)


@dataclass(slots=True)
class PersonRow:
    """A student or a teacher: ``number`` is the student or teacher number (normalised)."""

    row: int
    number: str
    name: str
    school_code: str
    gender: str | None = None
    birth_date: date | None = None
    national_id: str | None = None
    phone: str | None = None
    grade: int | None = None
    class_number: int | None = None
    role: str = Role.student.value
    password_hash: str | None = None

    @property
    def key(self) -> str:
        return self.number

    @property
    def class_code(self) -> str | None:
        if self.grade is None or self.class_number is None:
            return None
        return class_code(self.school_code, self.grade, self.class_number)


@dataclass(slots=True)
class GuardianRow:
    row: int
    name: str
    phone: str
    relation: str
    student_number: str
    national_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.phone}>{self.student_number}"


ParsedRow = SchoolRow | ClassRow | PersonRow | GuardianRow


def _pickle_by_position(*classes: type) -> None:
    """Pickle parsed rows as class and field values: a fraction of the default's cost.

    Worker processes (``workers``) send parsed rows back by the thousand.
    """
    for cls in classes:
        fields = operator.attrgetter(*cls.__slots__)
        cls.__reduce__ = lambda row, cls=cls, fields=fields: (cls, fields(row))


_pickle_by_position(SchoolRow, ClassRow, PersonRow, GuardianRow)


def grade_code(school_code: str, grade: int) -> str:
    return f"{school_code}-G{grade}"


def class_code(school_code: str, grade: int, number: int) -> str:
    """The org-unit code of a class: ``<school code>-G<grade>-<class number>``."""
    return f"{grade_code(school_code, grade)}-{number}"


# a class_code read back: its school code, grade and class number
CLASS_CODE = re.compile(r"^(?P<school>.+)-G(?P<grade>\d{1,2})-(?P<number>\d{1,2})\Z")


GRADE_NAMES = ["一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "七年级", "八年级",
               "九年级", "高一", "高二", "高三"]
_GRADE_WORDS = {name: n for n, name in enumerate(GRADE_NAMES, start=1)} | {
    "初一": 7, "初二": 8, "初三": 9, "十年级": 10, "十一年级": 11, "十二年级": 12,
    "高中一年级": 10, "高中二年级": 11, "高中三年级": 12,
}
_GENDERS = {"男": "male", "m": "male", "male": "male", "1": "male",
            "女": "female", "f": "female", "female": "female", "2": "female"}
RELATIONS = {"父亲": "father", "爸爸": "father", "father": "father",
             "母亲": "mother", "妈妈": "mother", "mother": "mother",
             "祖父": "grandparent", "祖母": "grandparent", "外祖父": "grandparent",
             "外祖母": "grandparent", "爷爷": "grandparent", "奶奶": "grandparent",
             "外公": "grandparent", "外婆": "grandparent", "grandparent": "grandparent",
             "监护人": "guardian", "guardian": "guardian", "其他": "other", "other": "other"}
_TEACHER_ROLES = {"教师": Role.teacher.value, "teacher": Role.teacher.value,
                  "职工": Role.staff.value, "教职工": Role.staff.value, "staff": Role.staff.value}
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?\Z|^(\d{4})(\d{2})(\d{2})\Z")
_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}\Z")
_CODE_LENGTH = OrgUnit.__table__.c.code.type.length
# a school's code leaves room for its classes' (class_code: "-G12-99" at most)
SCHOOL_CODE_LENGTH = _CODE_LENGTH - len(class_code("", FINAL_GRADE, 99))
_HASH_LENGTH = Account.__table__.c.password_hash.type.length


def _text(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip()


def _required(raw: str) -> str:
    if not raw:
        raise ValueError("is empty")
    return raw


def _name(raw: str) -> str:
    if any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in raw):
        raise ValueError("holds a control character (an escape or a bell, say)")
    text = re.sub(r"\s+", " ", _text(_required(raw)))
    if len(text) > MAX_NAME:
        raise ValueError(f"is longer than {MAX_NAME} characters")
    return text


def _code(raw: str) -> str:
    text = _text(_required(raw))
    if not _CODE.match(text):
        raise ValueError(f"must be letters, digits, '-', '_' or '.' (at most {_CODE_LENGTH})")
    return text


def _school_code(raw: str) -> str:
    text = _code(raw)
    if len(text) > SCHOOL_CODE_LENGTH:
        raise ValueError(f"is longer than {SCHOOL_CODE_LENGTH} characters (the codes of its "
                         "classes add -G<grade>-<class>)")
    return text


def _grade(raw: str) -> int:
    text = _text(_required(raw)).upper().removeprefix("G")
    grade = int(text) if text.isascii() and text.isdigit() else _GRADE_WORDS.get(text)
    if grade is None or not 1 <= grade <= FINAL_GRADE:
        raise ValueError("is not a grade from 1 to 12 (e.g. 7, G7, 七年级, 初一, 高一)")
    return grade


def _class_number(raw: str) -> int:
    text = _text(_required(raw)).strip("()（）").removesuffix("班").strip("()（）")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 99:
        raise ValueError("is not a class number from 1 to 99 (e.g. 3, 3班)")
    return int(text)


def _gender(raw: str) -> str | None:
    if not raw:
        return None
    gender = _GENDERS.get(_text(raw).lower())
    if gender is None:
        raise ValueError("must be 男 or 女 (M/F)")
    return gender


def parse_date(raw: str) -> date | None:
    if not raw:
        return None
    text = _text(raw).split(" ")[0].split("T")[0]
    match = _DATE.match(text)
    if not match:
        raise ValueError("is not a date like 2012-03-04")
    y, m, d = (int(g) for g in match.groups() if g is not None)
    try:
        value = date(y, m, d)
    except ValueError:
        raise ValueError("is not a real date") from None
    if value.year < 1900 or value > date.today():
        raise ValueError("is not a plausible birth date")
    return value


def _national_id(raw: str) -> str | None:
    return normalise_national_id(raw) if raw else None


def _phone(raw: str) -> str | None:
    return normalise_mobile(raw) if raw else None


def _identifier(kind: IdentifierKind) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if has_invisible(raw):
            raise ValueError("holds an invisible character (a zero-width space, say)")
        value = normalise(kind, _required(raw))
        if len(value) > 64:
            raise ValueError("is longer than 64 characters")
        return value
    return parse


_STUDENT_NUMBER = _identifier(IdentifierKind.student_number)
_TEACHER_NUMBER = _identifier(IdentifierKind.teacher_number)


def _relation(raw: str) -> str:
    relation = RELATIONS.get(_text(_required(raw)).lower())
    if relation is None:
        raise ValueError("must be 父亲, 母亲, 祖父母 (爷爷/奶奶/外公/外婆), 监护人 or 其他")
    return relation


def _teacher_role(raw: str) -> str:
    if not raw:
        return Role.teacher.value
    role = _TEACHER_ROLES.get(_text(raw).lower())
    if role is None:
        raise ValueError("must be 教师 (teacher) or 职工 (staff)")
    return role


def _password_hash(raw: str) -> str | None:
    if not raw:
        return None
    if raw.startswith("$2"):
        return import_legacy_hash("bcrypt", raw)
    kind, _, rest = raw.partition(":")
    if kind in ("sha256", "sha256-ps"):
        salt, _, digest = rest.rpartition(":")
        stored = import_legacy_hash(kind, digest, salt=salt)
    else:
        stored = import_legacy_hash(kind, rest)
    if len(stored) > _HASH_LENGTH:
        raise ValueError(f"is too long to store (a salt of at most {_SALT_LENGTH} bytes)")
    return stored


# the longest salt whose stored form fits: "$legacy-sha256-ps$<salt, base64url>$<64 hex>"
_SALT_LENGTH = (_HASH_LENGTH - len("$legacy-sha256-ps$$") - 64) * 3 // 4


def shown(column: str, raw: str) -> str:
    """A cell as an error file may show it: personal data masked, long text cut."""
    if column == "national_id":
        return mask_national_id(raw.strip())
    if column in ("phone", "guardian_phone"):
        return mask_phone(re.sub(r"\D", "", raw))
    if column == "password_hash":
        return "***" if raw else ""
    if column in ("name", "guardian_name"):
        return mask_name(raw)
    return mask_numbers(raw)[:60]  # masked first: a number cut short is still one


class _Cells:
    """Reads fields of one row, collecting errors instead of stopping at the first."""

    def __init__(self, columns: Columns, row: int, cells: list[str]) -> None:
        self.index, self.row, self.cells = columns.index, row, cells
        self.errors: list[RowError] = []

    def get(self, column: str, parse: Callable[[str], object]):
        at = self.index.get(column)  # Columns.get, inlined: this runs for every cell
        raw = self.cells[at].strip() if at is not None and at < len(self.cells) else ""
        try:
            return parse(raw)
        except ValueError as exc:
            self.errors.append(RowError(self.row, label(column), f"{label(column)} {exc}",
                                        shown(column, raw)))
            return None


def _school(c: _Cells) -> SchoolRow:
    return SchoolRow(c.row, c.get("school_code", _school_code), c.get("name", _name),
                     c.get("district_code", lambda r: _code(r) if r else ""),
                     c.get("district_name", lambda r: _name(r) if r else ""))


def _class(c: _Cells) -> ClassRow:
    return ClassRow(c.row, c.get("school_code", _school_code), c.get("grade", _grade),
                    c.get("class", _class_number),
                    c.get("class_name", lambda r: _name(r) if r else ""))


def _person_fields(c: _Cells) -> dict[str, object]:
    return {
        "name": c.get("name", _name), "school_code": c.get("school_code", _school_code),
        "gender": c.get("gender", _gender), "birth_date": c.get("birth_date", parse_date),
        "national_id": c.get("national_id", _national_id), "phone": c.get("phone", _phone),
        "password_hash": c.get("password_hash", _password_hash),
    }


def _student(c: _Cells) -> PersonRow:
    return PersonRow(c.row, c.get("student_number", _STUDENT_NUMBER),
                     grade=c.get("grade", _grade), class_number=c.get("class", _class_number),
                     **_person_fields(c))


def _teacher(c: _Cells) -> PersonRow:
    return PersonRow(c.row, c.get("teacher_number", _TEACHER_NUMBER),
                     role=c.get("role", _teacher_role), **_person_fields(c))


def _guardian(c: _Cells) -> GuardianRow:
    return GuardianRow(c.row, c.get("guardian_name", _name), c.get("phone", _required_phone),
                       c.get("relation", _relation),
                       c.get("student_number", _STUDENT_NUMBER),
                       c.get("national_id", _national_id))


def _required_phone(raw: str) -> str:
    return normalise_mobile(_required(raw))


def _birth_date_agrees(parsed: ParsedRow, c: _Cells) -> None:
    if not isinstance(parsed, PersonRow) or not (parsed.national_id and parsed.birth_date):
        return
    nid = parsed.national_id
    if parsed.birth_date != date(int(nid[6:10]), int(nid[10:12]), int(nid[12:14])):
        c.errors.append(RowError(c.row, label("birth_date"),
                                 "birth date differs from the birth date in the national ID",
                                 parsed.birth_date.isoformat()))


_PARSERS: dict[Kind, Callable[[_Cells], ParsedRow]] = {
    Kind.schools: _school, Kind.classes: _class, Kind.students: _student,
    Kind.teachers: _teacher, Kind.guardians: _guardian,
}


def parse_row(columns: Columns, row: int, cells: list[str]) -> tuple[ParsedRow, list[RowError]]:
    """The parsed row and its errors (every one of them); with errors, fields may be None."""
    reader = _Cells(columns, row, cells)
    parsed = _PARSERS[columns.kind](reader)
    _birth_date_agrees(parsed, reader)
    stray = stray_cells(row, cells, columns.width)
    if stray is not None:
        reader.errors.append(stray)
    return parsed, reader.errors


def stray_cells(row: int, cells: list[str], width: int) -> RowError | None:
    """The error of a row with more non-empty cells than the header has columns."""
    if len(cells) <= width or not any(cell.strip() for cell in cells[width:]):
        return None
    return RowError(row, "", f"the row has {len(cells)} cells but the header has {width} "
                    "columns (a stray delimiter?)")
