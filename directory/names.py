"""A person's name split into family and given name, where it can be known.

The directory holds one ``name`` (as the school registers it). OpenID Connect's
``family_name``/``given_name`` (Core 5.1) and SCIM's ``name.familyName``/``givenName`` are
derived from it only for a name written in Chinese characters, where the surname comes
first: one character, or two for a compound surname (欧阳, 司马, ...). Any other name (Latin
letters, a name with a middle dot such as 阿依古丽·买买提, whose parts are not a surname and
a given name, or a single character) is not split: the two members are left out (Core 5.3.2:
a claim without a value is omitted, not sent empty), and ``name`` says it all.

Hand-written: no library splits Chinese names; the compound surnames are those of the
national lists of surnames in common use (百家姓 and the census), less those whose
first character is itself a common surname (单于: 单 is far likelier), where splitting
off one character is the better guess.
"""

from __future__ import annotations

import re

COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "令狐", "夏侯", "独孤", "端木", "轩辕", "西门", "南宫", "万俟", "澹台", "公冶",
    "濮阳", "淳于", "太叔", "仲孙", "赫连", "东郭", "呼延", "司空",
    "公羊", "拓跋", "百里", "东门", "第五", "羊舌", "微生", "公良", "漆雕", "壤驷",
    "公西", "巫马", "司寇", "亓官", "鲜于", "闾丘", "子车",
})
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002ebef]+\Z")


def split(name: str) -> tuple[str, str] | None:
    """``(family_name, given_name)`` of a Chinese name, or None when it cannot be known."""
    name = name.strip()
    if len(name) < 2 or not _HAN.match(name):
        return None
    surname = name[:2] if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else name[:1]
    return surname, name[len(surname):]
