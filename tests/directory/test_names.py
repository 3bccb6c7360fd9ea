"""Family and given name, derived from the one name the directory holds."""

from __future__ import annotations

import pytest

from directory import names


@pytest.mark.parametrize(("name", "parts"), [
    ("张小明", ("张", "小明")),
    ("钱老师", ("钱", "老师")),
    ("欧阳娜娜", ("欧阳", "娜娜")),
    ("司马光", ("司马", "光")),
    ("单于洋", ("单", "于洋")),  # 单 is far likelier than the rare 单于
    ("上官", ("上", "官")),  # two characters: surname and given name, not a bare surname
    (" 王五 ", ("王", "五")),
    ("王", None),  # one character: no given name to give (omitted, not "")
    ("John Smith", None),  # not written in Chinese characters: not guessed
    ("阿依古丽·买买提", None),  # a name with a middle dot has no surname first
    ("张三Li", None),
    ("", None),
])
def test_split(name: str, parts) -> None:
    assert names.split(name) == parts
