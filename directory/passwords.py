"""Account passwords: the rule a new password must meet, setting one, temporary passwords.

**The rule** (NIST SP 800-63B section 3.1.1.2, no composition rules, no expiry): at least
``MIN_LENGTH`` characters (counted after NFKC, as the hash sees them), at most
``core.passwords.MAX_PASSWORD_LENGTH`` as typed (what the form and the hash accept); not
one of the passwords most often found in leaked password lists, Chinese and English
(``COMMON``, compared without case); not one character repeated; not one of the account's
own login identifiers (a pupil's number).
Eight is the shortest length the guideline allows next to a second factor and the length
a pupil can remember; teachers sign in with a second factor (``mfa.policy``).

**Setting a password** (a person's own change, or an administrator's reset) signs the
account out everywhere (``directory.people.sign_out_everywhere``): whoever knew the old
password, or holds a session or token begun with it, is out.

**Temporary passwords** (an administrator's reset) are 12 characters in three groups,
from an alphabet without look-alikes (no 0/O, 1/l/I), about 59 bits: read aloud or
copied from a screen by a teacher for a pupil. Every sign-in with it must first set a new
password (``Account.must_change_password``), so it serves until that is done, for at most
``TEMPORARY_DAYS`` (a reset on Friday still works on Monday; one forgotten for weeks on a
sticky note does not).
"""

from __future__ import annotations

import secrets
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Context, record
from core.db import utcnow
from core.field_crypto import blind_index_candidates
from core.passwords import MAX_PASSWORD_LENGTH, Passwords
from core.settings import Settings
from core.web.i18n import N_
from directory import identifiers
from directory.models import Account, IdentifierKind, LoginIdentifier
from directory.people import sign_out_everywhere

MIN_LENGTH = 8
TEMPORARY_DAYS = 7  # a temporary password not replaced within a week no longer works
TEMPORARY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
# At least MIN_LENGTH long (shorter ones fail the length first), lower case.
COMMON = frozenset("""
12345678 123456789 1234567890 0123456789 87654321 987654321 11111111 00000000 66666666
88888888 99999999 12341234 11223344 12344321 12121212 123123123 147258369 147852369
741852963 963852741 13141314 5201314520 1314521520 00001111 11112222 123456abc abc123456
abc12345 abcd1234 a1234567 a12345678 aa123456 qq123456 qwe123456 1234qwer asdf1234
1qaz2wsx 1q2w3e4r 1q2w3e4r5t 12qwaszx qweasdzxc qwertyuiop qwerty123 asdfghjkl zxcvbnm123
password password1 passw0rd p@ssw0rd iloveyou woaini1314 woaini520 admin123 admin888
li123456 zhang123456 wang123456
""".split())  # noqa: SIM905 - a word list reads best as words

TOO_SHORT = N_("The new password must have at least %(min)s characters.")
TOO_LONG = N_("The new password is too long.")
TOO_COMMON = N_("This password is too easy to guess: it is one of the most common ones. "
                "Choose another one, for example a few words you will remember.")
OWN_LOGIN = N_("The new password must not be your student number, teacher number, "
               "username, phone number or e-mail.")


def problem_with(session: Session, settings: Settings, account_id: int,
                 password: str) -> str | None:
    """Why ``password`` may not be the account's new password (a translatable message
    with ``min`` as its parameter), or None."""
    normal = unicodedata.normalize("NFKC", password)
    if len(normal) < MIN_LENGTH:
        return TOO_SHORT
    if len(password) > MAX_PASSWORD_LENGTH:
        return TOO_LONG
    folded = normal.casefold()
    if folded in COMMON or len(set(folded)) == 1:
        return TOO_COMMON
    own = session.execute(select(LoginIdentifier.kind, LoginIdentifier.value).where(
        LoginIdentifier.account_id == account_id)).all()
    if _names(settings, normal) & {value for _kind, value in own}:
        return OWN_LOGIN
    return None


def _names(settings: Settings, typed: str) -> set[str]:
    """What ``typed`` would be stored as, as any kind of login identifier (a phone number
    as its blind indexes)."""
    found = set()
    for kind in identifiers.guess_kinds(typed):
        try:
            value = identifiers.normalise(kind, typed)
        except ValueError:
            continue
        found.update(blind_index_candidates(settings, "phone", value)
                     if kind is IdentifierKind.phone else [value])
    return found


def temporary_password() -> str:
    raw = "".join(secrets.choice(TEMPORARY_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def set_password(session: Session, hasher: Passwords, account: Account, password: str, *,
                 must_change: bool, actor: str, action: str,
                 context: Context | None = None,
                 detail: dict[str, str] | None = None) -> None:
    """Hash and store ``password``, sign the account out everywhere, audit ``action``
    (never the password; ``detail``: more for the event). ``must_change``: the next
    sign-in must set a new one first."""
    account.password_hash = hasher.hash(password)
    account.password_changed_at = utcnow()
    account.must_change_password = must_change
    sign_out_everywhere(account)
    record(session, actor=actor, action=action, outcome="success",
           target=f"account:{account.id}", context=context,
           detail={"must_change": must_change, **(detail or {})})
    session.flush()
