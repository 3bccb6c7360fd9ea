"""Login identifiers: normalisation, so that one person types it any way they like.

Student and teacher numbers and usernames are case-folded and stripped of
spaces; e-mail addresses are lower-cased; phone numbers are reduced to the
11-digit mainland form (``+86 138-0013-8000`` -> ``13800138000``) and stored
only as a blind index, never in clear.
"""

from __future__ import annotations

import re
import unicodedata

from directory.models import IdentifierKind

_MOBILE = re.compile(r"^1[3-9]\d{9}\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")


def normalise_phone(raw: str) -> str | None:
    digits = re.sub(r"[\s\-()]", "", unicodedata.normalize("NFKC", raw))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == 11 + len(prefix):
            digits = digits[len(prefix):]
    return digits if _MOBILE.match(digits) else None


def normalise(kind: IdentifierKind, raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).strip()
    if kind is IdentifierKind.phone:
        phone = normalise_phone(text)
        if phone is None:
            raise ValueError("not a mainland mobile number")
        return phone
    if kind is IdentifierKind.email:
        if not _EMAIL.match(text):
            raise ValueError("not an e-mail address")
        return text.lower()
    return re.sub(r"\s+", "", text).casefold()


def has_invisible(raw: str) -> bool:
    """Whether ``raw`` holds a control or format character (a zero-width space, a joiner,
    a direction mark) that NFKC keeps: a name written with one would look like another, or
    like nothing, and nobody could type it. Refused where identifiers are written (SCIM,
    imports); normalising them away instead would make names stored before unreachable."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in raw)


# The kinds the sign-in form reads a typed name as (``guess_kinds`` without the phone and
# e-mail shapes): one value may belong to one account among them all, or it would shadow
# another's sign-in
NAME_KINDS = (IdentifierKind.username, IdentifierKind.student_number,
              IdentifierKind.teacher_number)


def guess_kinds(raw: str) -> list[IdentifierKind]:
    """Which identifier kinds a login form entry may be, most specific first."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if "@" in text:
        return [IdentifierKind.email, IdentifierKind.username]
    if normalise_phone(text):
        return [IdentifierKind.phone, IdentifierKind.student_number,
                IdentifierKind.teacher_number, IdentifierKind.username]
    return [IdentifierKind.student_number, IdentifierKind.teacher_number,
            IdentifierKind.username]


def canonical(raw: str) -> str:
    """One form for every way of typing the same login entry (its most specific kind's
    normalisation): what counts failed sign-ins for a name that matches nobody, so that
    respelling it (full-width, spaces, ``+86``) behaves as it would for a real account."""
    for kind in guess_kinds(raw):
        try:
            return f"{kind.value}:{normalise(kind, raw)}"
        except ValueError:
            continue
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw)).casefold()
