"""Applying a chunk's plan: bulk statements, no ORM unit of work.

Each write step writes a whole chunk per table at once (``bulk.insert_rows``:
PostgreSQL ``COPY`` with ids from the sequence, or an ``INSERT ... RETURNING``
executemany elsewhere; updates as ORM bulk UPDATE by primary key), so a chunk
of 5,000 new students costs a few round trips, not 20,000. Ids and uids are
chosen client-side where encryption needs them first: ``Person.uid`` is the
row key in the encryption context of the national ID and phone, so it is
generated (``core.db.new_sortable_id``) before the values are sealed, by a worker
process ahead of time (``workers``) or here. The caller owns
the transaction: the whole run commits or rolls back as one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from core.db import new_id, new_sortable_id, utcnow
from core.field_crypto import Sealer
from directory.importer import lookups
from directory.importer.bulk import insert_rows
from directory.importer.plan import ChunkPlan, NewPerson
from directory.importer.units import create_units, rename_units
from directory.importer.workers import seal_person
from directory.models import (
    PHONE_LOGIN,
    Account,
    Affiliation,
    GuardianLink,
    IdentifierKind,
    LoginIdentifier,
    Person,
    PersonStatus,
    lift_sms_suspension,
)

PERSON = Person.__table__
ACCOUNT = Account.__table__
LOGIN = LoginIdentifier.__table__
AFFILIATION = Affiliation.__table__
LINK = GuardianLink.__table__


@dataclass
class Writer:
    session: Session
    sealer: Sealer
    today: date
    now: datetime


def write_units(w: Writer, plan: ChunkPlan) -> None:
    create_units(w.session, [u for u in plan.new_units if u.id is None])
    rename_units(w.session, plan.renamed_units)


def write_new_people(w: Writer, plan: ChunkPlan) -> None:
    news = plan.new_people
    if not news:
        return
    person_ids = _insert_returning(w.session, PERSON, [_person_row(w, n) for n in news])
    for new, person_id in zip(news, person_ids, strict=True):
        new.person_id = person_id
    account_ids = _insert_returning(w.session, ACCOUNT, [
        {"person_id": n.person_id, "sub": new_id(), "password_hash": n.password_hash,
         "disabled": False, "created_at": w.now} for n in news])
    logins = [_login(w, plan, account_id, kind, value)
              for new, account_id in zip(news, account_ids, strict=True)
              for kind, value in new.logins]
    _insert(w.session, LOGIN, logins)
    _insert(w.session, AFFILIATION, [_affiliation(w, n.person_id, n.unit.id, n.role)
                                     for n in news if n.unit is not None])


def _login(w: Writer, plan: ChunkPlan, account_id: int, kind: str, value: str
           ) -> dict[str, object]:
    """A login identifier's row; a phone login's number sealed beside its index."""
    if kind != IdentifierKind.phone.value:
        return {"account_id": account_id, "kind": kind, "value": value, "number_enc": None}
    return {"account_id": account_id, "kind": kind,
            **_sealed_number(w, account_id, plan.phone_numbers[value], value)}


def _person_row(w: Writer, new: NewPerson) -> dict[str, object]:
    sealed = new.sealed or seal_person(w.sealer, new_sortable_id(), new.national_id, new.phone)
    return {"uid": sealed.uid, "name": new.name, "gender": new.gender,
            "birth_date": new.birth_date, "national_id_enc": sealed.national_id_enc,
            "national_id_bidx": sealed.national_id_bidx, "phone_enc": sealed.phone_enc,
            "phone_bidx": sealed.phone_bidx, "status": PersonStatus.active.value,
            "created_at": w.now, "updated_at": w.now}


def _affiliation(w: Writer, person_id: int | None, unit_id: int | None, role: str
                 ) -> dict[str, object]:
    return {"person_id": person_id, "org_unit_id": unit_id, "role": role,
            "valid_from": w.today, "valid_to": None}


def write_updates(w: Writer, plan: ChunkPlan) -> None:
    rows, enable, new_logins, changed_logins = [], [], [], []
    renumbered: list[int] = []
    for change in plan.updates:
        known = change.known
        row: dict[str, object] = {"id": known.person_id, **change.values, "updated_at": w.now}
        sealed = seal_person(w.sealer, known.uid, change.national_id, change.phone)
        if change.national_id:
            row |= {"national_id_enc": sealed.national_id_enc,
                    "national_id_bidx": sealed.national_id_bidx}
        if change.phone:
            row |= {"phone_enc": sealed.phone_enc, "phone_bidx": sealed.phone_bidx}
        rows.append(row)
        if change.enable and known.account_id:
            enable.append({"id": known.account_id, "disabled": False})
        if change.phone_login and known.account_id:
            login_id, value = change.phone_login
            login = _login(w, plan, known.account_id, IdentifierKind.phone.value, value)
            if login_id is None:
                new_logins.append(login)
            else:  # the number on file replaced: a stolen one's suspension ends
                changed_logins.append({"id": login_id, "value": value,
                                       "number_enc": login["number_enc"]})
                renumbered.append(known.account_id)
        if known.account_id:
            new_logins += [_login(w, plan, known.account_id, IdentifierKind.phone.value, value)
                           for value in change.more_phone_logins]
    _update(w.session, Person, rows)
    _update(w.session, Account, enable)
    _update(w.session, LoginIdentifier, changed_logins)
    if renumbered:
        w.session.execute(lift_sms_suspension(renumbered))
    _insert(w.session, LOGIN, new_logins)


def write_moves(w: Writer, plan: ChunkPlan) -> None:
    """Close the current affiliations (history kept) and open the new ones, unless current.

    An affiliation that is current already is not opened twice: chunks planned ahead
    (``pipeline``) do not see each other's writes, so two of them may both affiliate a
    guardian with the same school."""
    _update(w.session, Affiliation, [{"id": aid, "valid_to": w.today}
                                     for move in plan.moves for aid in move.close])
    opened = {(_person_id(m.person_id), m.unit.id, m.role): m for m in plan.moves}
    current = lookups.current_affiliations(w.session, [person for person, _, _ in opened],
                                           {role for _, _, role in opened}) if opened else {}
    held = {(c.person_id, c.unit_id, c.role) for found in current.values() for c in found}
    _insert(w.session, AFFILIATION, [_affiliation(w, *key) for key in opened if key not in held])


def _person_id(person: int | NewPerson) -> int | None:
    return person if isinstance(person, int) else person.person_id


def write_links(w: Writer, plan: ChunkPlan) -> None:
    _insert(w.session, LINK, [
        {"guardian_id": _person_id(link.guardian), "student_id": link.student_id,
         "relation": link.relation} for link in plan.new_links])
    _update(w.session, GuardianLink, [{"id": link_id, "relation": relation}
                                      for link_id, relation in plan.link_updates])


def _insert(session: Session, table: Table, rows: list[dict[str, object]]) -> None:
    insert_rows(session, table, rows)


def _insert_returning(session: Session, table: Table, rows: list[dict[str, object]]
                      ) -> list[int]:
    return insert_rows(session, table, rows, ids=True)


def _update(session: Session, model: type, rows: list[dict[str, object]]) -> None:
    """ORM bulk UPDATE by primary key: one executemany per set of columns."""
    if rows:
        session.execute(update(model), rows)


def seal_found_phone_logins(w: Writer, plan: ChunkPlan) -> None:
    """The chunk's numbers that are phone logins written before migration 0017 (their index
    alone): seal each number beside its index, and move the index to the current master
    key's, so that a later master-key change moves them too (a guardian's second phone has
    its number nowhere else: importing the guardians' file again heals it)."""
    candidates = {number: w.sealer.candidates("phone", number)
                  for number in plan.phone_numbers.values()}
    _update(w.session, LoginIdentifier, [
        {"id": login_id, **_sealed_number(w, account_id, number)}
        for login_id, account_id, number in lookups.unsealed_phone_logins(w.session,
                                                                          candidates)])


def _sealed_number(w: Writer, account_id: int, number: str, index: str | None = None
                   ) -> dict[str, object]:
    """A phone login's value (``index``: the current key's, when known) and sealed number,
    in the order of every login row's keys (``bulk.insert_rows`` copies by position)."""
    sealed = w.sealer.sealed(PHONE_LOGIN, account_id, number, index)
    return {"value": sealed["value"], "number_enc": sealed["number_enc"]}


WRITE_STEPS: list[Callable[[Writer, ChunkPlan], None]] = [
    write_units, write_new_people, write_updates, write_moves, write_links,
    seal_found_phone_logins,
]


def apply_plan(session: Session, sealer: Sealer, plan: ChunkPlan, today: date) -> None:
    writer = Writer(session, sealer, today, utcnow())
    for step in WRITE_STEPS:
        step(writer, plan)
