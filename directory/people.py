"""People and their accounts: creation, identifiers, affiliations, lookup."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, or_, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from core.audit import Context, record
from core.db import Database, utcnow
from core.field_crypto import blind_index, blind_index_candidates, open_, seal
from core.gm.errors import DecryptionError
from core.settings import Settings
from directory import subjects
from directory.identifiers import guess_kinds, normalise
from directory.models import (
    PHONE,
    PHONE_LOGIN,
    Account,
    Affiliation,
    IdentifierKind,
    LoginIdentifier,
    OrgUnit,
    Person,
    PersonStatus,
    Role,
)


def find_account(session: Session, kind: IdentifierKind, raw: str) -> Account | None:
    try:
        value = normalise(kind, raw)
    except ValueError:
        return None
    return session.scalar(
        select(Account).join(LoginIdentifier)
        .where(LoginIdentifier.kind == kind.value, LoginIdentifier.value == value)
    )


def find_login_account(session: Session, settings: Settings, raw: str) -> Account | None:
    """The account a sign-in form entry names, with its person (``find_for_sign_in``)."""
    found = find_for_sign_in(session, settings, raw)
    return found[0] if found else None


def find_for_sign_in(session: Session, settings: Settings,
                     raw: str) -> tuple[Account, frozenset[str]] | None:
    """The account a sign-in form entry names, with its person and the person's current
    roles (the MFA policy needs them), in one query.

    The entry may be any login identifier (``guess_kinds``); when it matches several
    kinds (a number that is a student number of one person and a username of another),
    the most specific kind wins. Phone logins are stored as blind indexes, so a phone
    number is looked up under the index of every known master key. An entry with a NUL
    names nobody (no identifier holds one, and PostgreSQL refuses it in a query)."""
    if "\x00" in raw:
        return None
    kinds, values = [], {}
    for kind in guess_kinds(raw):
        try:
            value = normalise(kind, raw)
        except ValueError:
            continue
        values[f"v{len(kinds)}"] = blind_index_candidates(settings, "phone", value) \
            if kind is IdentifierKind.phone else [value]
        kinds.append(kind)
    if not kinds:
        return None
    rows = session.execute(_login_lookup(tuple(kinds)), values).all()
    if not rows:
        return None
    order = {kind.value: n for n, kind in enumerate(kinds)}
    account, _kind, roles = min(rows, key=lambda row: order[row[1]])
    return account, frozenset((roles or "").split())


# The person's current roles as one space-separated text (string_agg / group_concat).
_ROLES_TEXT = (select(func.aggregate_strings(Affiliation.role, " "))
               .where(Affiliation.person_id == Account.person_id,
                      Affiliation.valid_to.is_(None))
               .scalar_subquery().label("roles"))


@cache
def _login_lookup(kinds: tuple[IdentifierKind, ...]) -> Select:
    """The sign-in lookup for these kinds, built once: on the sign-in hot path, building
    an ORM statement with a joined load (and its cache key) cost more than running it."""
    return (select(Account, LoginIdentifier.kind, _ROLES_TEXT).join(LoginIdentifier)
            .where(or_(*((LoginIdentifier.kind == kind.value)
                         & LoginIdentifier.value.in_(bindparam(f"v{n}", expanding=True))
                         for n, kind in enumerate(kinds))))
            .options(joinedload(Account.person)))


def create_person_with_account(
    session: Session,
    *,
    name: str,
    identifiers: dict[IdentifierKind, str],
    password_hash: str | None,
    gender: str | None = None,
) -> Account:
    person = Person(name=name, gender=gender)
    account = Account(person=person, password_hash=password_hash)
    session.add_all([person, account])
    for kind, raw in identifiers.items():
        session.add(LoginIdentifier(account=account, kind=kind.value, value=normalise(kind, raw)))
    session.flush()
    return account


def affiliate(
    session: Session, person: Person, unit: OrgUnit, role: Role, since: date
) -> Affiliation:
    """Add a current affiliation unless the same one is already current."""
    existing = session.scalar(
        select(Affiliation).where(
            Affiliation.person_id == person.id, Affiliation.org_unit_id == unit.id,
            Affiliation.role == role.value, Affiliation.valid_to.is_(None),
        )
    )
    if existing:
        return existing
    affiliation = Affiliation(person=person, org_unit=unit, role=role.value, valid_from=since)
    session.add(affiliation)
    session.flush()
    return affiliation


def current_roles(session: Session, person_id: int) -> set[str]:
    """The roles a person holds today (affiliations without an end date)."""
    return set(session.scalars(_CURRENT_ROLES, {"person_id": person_id}))


# Built once: every sign-in reads the roles (the MFA policy).
_CURRENT_ROLES = select(Affiliation.role).where(
    Affiliation.person_id == bindparam("person_id"), Affiliation.valid_to.is_(None))


@dataclass(frozen=True)
class Standing:
    """Whether an account may stay signed in (it exists, is not disabled, and its person
    is active: not suspended, graduated, transferred or gone), and the person's roles."""

    allowed: bool
    roles: frozenset[str]
    # sessions begun and tokens issued before this (seconds since the epoch) are void: the
    # account's "sign out everywhere" (a password change or reset); 0 for none
    signed_out_at: float = 0.0

    def allows(self, since: float) -> bool:
        """Whether something begun at ``since`` (seconds since the epoch) still holds."""
        return self.allowed and since >= self.signed_out_at


def sign_out_everywhere(account: Account) -> None:
    """Void every SSO session begun and every token issued for ``account`` until now (a
    password change or reset, a lost phone, "sign out everywhere"). No token is searched
    for: sessions and tokens are checked against ``signed_out_at`` when they are next used
    (``Standing.allows``: the browser's session at once, refresh tokens at their next use,
    access tokens at UserInfo at once and at introspection within 30 s). (The idp layer
    also ends the account's SSO sessions at once, once this is committed, to tell their
    apps: ``idp.sessions.end_everywhere``.) Access tokens
    carry whole seconds (``iat``): one issued in the very second of the sign-out, before
    it, still holds."""
    account.signed_out_at = utcnow()


def sign_out(session: Session, account: Account, *, actor: str,
             context: Context | None = None) -> None:
    """"Sign out everywhere" asked for as such (by the person, the helpdesk, an operator):
    ``sign_out_everywhere``, audited. (A password or second-factor reset signs out as part
    of its own audited action.)"""
    sign_out_everywhere(account)
    record(session, actor=actor, action="account.sign_out_everywhere", outcome="success",
           target=f"account:{account.id}", context=context)


def holds(db: Database, account_id: int, since: float) -> bool:
    """Whether what the account began at ``since`` (a sign-in step, a code, a refresh
    token) still holds: the account may sign in and has not signed out everywhere since."""
    with db.reading() as connection:  # one statement: no transaction needed
        return _standing_of(connection.execute(_STANDING, {"key": account_id}).all()
                            ).allows(since)


def accounts_of(session: Session, people: set[int]) -> tuple[int, ...]:
    """The ids of the accounts of these people (by ``Person.id``), in order; in batches, so
    that a rollover's thousands of graduates never make one huge ``IN``."""
    found: list[int] = []
    ordered = sorted(people)
    for start in range(0, len(ordered), _IN_BATCH):
        found += session.scalars(select(Account.id).where(
            Account.person_id.in_(ordered[start:start + _IN_BATCH])))
    return tuple(sorted(found))


_IN_BATCH = 5000  # ids per IN list (SQLite allows 32,766 parameters, PostgreSQL 65,535)


def may_sign_in(disabled: bool, status: str) -> bool:
    """The rule: an account that is not disabled, of a person who is active."""
    return not disabled and status == PersonStatus.active.value


def standing(session: Session, account_id: int) -> Standing:
    """One query: the account's state and its person's current roles."""
    return _standing_of(session.execute(_STANDING, {"key": account_id}).all())


def account_standing(row: Any, roles: frozenset[str] = frozenset()) -> Standing:
    """The standing of a row that holds the account's ``disabled`` and ``signed_out_at``
    and its person's ``status`` (this module's queries, UserInfo's person rows)."""
    signed_out = row.signed_out_at
    return Standing(may_sign_in(row.disabled, row.status), roles,
                    signed_out.timestamp() if signed_out else 0.0)


def _standing_of(rows: list) -> Standing:
    if not rows:
        return Standing(False, frozenset())
    return account_standing(rows[0], frozenset(row.role for row in rows
                                               if row.role is not None))


def _standing_query(key: object) -> Select:
    """The account's state with one row per current role (one row if it has none)."""
    return (select(Account.disabled, Account.signed_out_at, Person.status, Affiliation.role)
            .join(Person, Person.id == Account.person_id)
            .outerjoin(Affiliation, (Affiliation.person_id == Person.id)
                       & Affiliation.valid_to.is_(None))
            .where(key == bindparam("key")))


_STANDING, _STANDING_BY_SUB = _standing_query(Account.id), _standing_query(Account.sub)


class StandingBySub:
    """Whether the account with this ``sub`` may still sign in, and since when its tokens
    hold, remembered ``seconds`` per process (at most ``size`` accounts): token
    introspection is the resource servers' hot path, and a suspension or a "sign out
    everywhere" then reaches it within ``seconds``."""

    def __init__(self, database: Database, seconds: float = 30.0, size: int = 10_000) -> None:
        self._database, self._seconds, self._size = database, seconds, size
        self._seen: dict[str, tuple[float, Standing]] = {}
        self._lock = threading.Lock()

    def allows(self, sub: str, issued_at: float) -> bool:
        """Whether a token of ``sub`` issued at ``issued_at`` (seconds since the epoch)
        still holds."""
        now = time.monotonic()
        hit = self._seen.get(sub)
        if hit is not None and hit[0] > now:
            return hit[1].allows(issued_at)
        with self._database.reading() as connection:
            public = subjects.public_sub(connection, sub)  # a pairwise sub: its account's
            rows = connection.execute(_STANDING_BY_SUB, {"key": public}).all() if public else []
        standing = _standing_of(rows)
        with self._lock:
            if len(self._seen) >= self._size:
                self._seen.clear()
            self._seen[sub] = (now + self._seconds, standing)
        return standing.allows(issued_at)


@dataclass(frozen=True)
class Reindexed:
    """What :func:`reindex_phone_logins` did: phone logins moved to the current master
    key's index, and those it could not check (a number other than the one on file)."""

    moved: int
    unknown: int


def reindex_phone_logins(settings: Settings, sessions: sessionmaker[Session], *,
                         batch: int = 500) -> Reindexed:
    """Move phone logins to the blind index under the current master key, after a
    master-key change (``idp keys reencrypt``, which runs :func:`core.field_crypto.reencrypt`
    first). A phone login with its number sealed beside its index (``PHONE_LOGIN``, every
    one written since migration 0017) was moved by that re-encryption. One written before
    holds only the index of its number, so it can be moved only when it is the person's
    number on file (opened from ``person.phone_enc``), and then gets its number sealed too;
    another (a guardian's second phone written before 0017) stays findable while its
    master key is listed in ``IDP_OLD_MASTER_KEYS`` and is counted as ``unknown`` while old
    keys are listed (an index cannot tell which key made it).
    Batches commit one by one, so an interrupted run resumes."""
    moved = unknown = 0
    after = 0
    while True:
        with sessions.begin() as session:
            rows = session.execute(
                select(LoginIdentifier, Person)
                .join(Account, Account.id == LoginIdentifier.account_id)
                .join(Person, Person.id == Account.person_id)
                .where(LoginIdentifier.kind == IdentifierKind.phone.value,
                       LoginIdentifier.number_enc.is_(None), LoginIdentifier.id > after)
                .order_by(LoginIdentifier.id).limit(batch)).all()
            after = rows[-1][0].id if rows else after
            for login, person in rows:
                try:
                    number = open_(settings, PHONE, person)
                except DecryptionError:  # under a key not listed: counted, the run goes on
                    number = None
                if number and login.value in blind_index_candidates(settings, "phone", number):
                    moved += login.value != blind_index(settings, "phone", number)
                    seal(settings, PHONE_LOGIN, login, number)  # its index, current key's
                elif settings.old_master_key_bytes:  # else every index is the current key's
                    unknown += 1
        if len(rows) < batch:
            return Reindexed(moved, unknown)
