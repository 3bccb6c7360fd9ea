"""Personal data: validation and masking of national ID and phone numbers.

National ID numbers follow GB 11643-1999: 17 digits and an ISO 7064 MOD 11-2
check character (``0``-``9`` or ``X``), with a valid birth date inside. They are
stored upper-cased. Masked forms are what every page, API and log shows:
``110***********1234`` and ``138****5678``. Storage is encrypted
(``core.field_crypto``; columns declared in ``directory.models``).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from directory.identifiers import normalise_phone

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SHAPE = re.compile(r"^\d{17}[\dX]\Z")


def national_id_check_char(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalise_national_id(raw: str) -> str:
    """The canonical form of a national ID number, or ValueError saying what is wrong."""
    text = unicodedata.normalize("NFKC", raw).strip().upper().replace(" ", "")
    if not _SHAPE.match(text):
        raise ValueError("national ID must be 17 digits and a check digit or X")
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        raise ValueError("national ID holds an impossible birth date") from None
    if born.year < 1900 or born > date.today():
        raise ValueError("national ID holds an impossible birth date")
    if national_id_check_char(text[:17]) != text[17]:
        raise ValueError("national ID check digit is wrong")
    return text


def normalise_mobile(raw: str) -> str:
    phone = normalise_phone(raw)
    if phone is None:
        raise ValueError("not a mainland mobile number (11 digits starting with 13-19)")
    return phone


def mask_national_id(value: str | None) -> str:
    if not value:
        return ""
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str | None) -> str:
    if not value:
        return ""
    return value[:3] + "****" + value[-4:]



# a national ID (or the digits of one, cut short or run on: 15 and more) or a mobile number
# inside any text
_ID_OR_PHONE = re.compile(r"(?<![0-9])(?:[0-9]{14,}[0-9Xx]|1[0-9]{10})(?![0-9Xx])")


def mask_numbers(text: str) -> str:
    """``text`` with every national-ID-like run of 15 digits or more and every mobile
    number in it masked (``110***********1234``, ``138****5678``): a value read from a
    file, wherever it came from (a row that lost a cell, a student number made of a
    national ID) and a message that repeats one."""
    return _ID_OR_PHONE.sub(_masked_match, text)


def _masked_match(found: re.Match[str]) -> str:
    text = found.group()
    return mask_phone(text) if len(text) == 11 else mask_national_id(text)


def mask_name(name: str) -> str:
    """``张小明`` -> ``张*明``, ``李雷`` -> ``李*``: enough to recognise, not to identify (an
    import report's row, whose phone approved a QR sign-in)."""
    name = name.strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
