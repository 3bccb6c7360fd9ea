"""Guardians as earlier chunks left them, for a chunk that cannot read that from the directory.

A guardian appears on many rows (one per child), so a later chunk of a guardians file
meets guardians that earlier chunks created or changed. A run that plans on its own
connection after each write (SQLite) finds them in the directory; a dry run, a run that
stopped writing at an invalid row, and a run that plans ahead of its writes (PostgreSQL,
``pipeline``) do not. For those, every chunk leaves here what it planned for guardians,
and the next chunks see it as if it had been written: the diff of a dry run is the diff of
the real run. Otherwise a chunk leaves only its links here (they key repeated links the
same way in every run): the rest is in the directory.

Decisions:

- A guardian planned new is known by the number ``-row`` (person and account), the row
  that planned it, never a directory id. A plan made ahead that names it is given the
  ids it was written with before it goes to the writer (:func:`resolve`); in a run that
  does not write, it stays a number.
- It lives in the run's :class:`Ledger`: keys and values as keyed hashes, on disk, so
  memory stays flat and no personal data reaches the disk. A remembered name or phone is
  therefore a :class:`Fingerprint`, equal to the values that hash the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from directory.importer.ledger import Ledger
from directory.importer.lookups import Known, people_by_id
from directory.models import PersonStatus

if TYPE_CHECKING:
    from directory.importer.plan import Chunk, ChunkPlan, NewPerson

PHONE_OWNER = "guardian phone"  # phone -> account id (-row for a planned guardian)
NID_OWNER = "guardian national_id"  # national ID -> person id
NAME, PHONE, HAS_NID = "guardian name", "guardian phone of", "guardian has national_id"
GIVEN = "given earlier"  # the national_id_bidx of a person given one by an earlier chunk
LINK = "guardian link"  # "guardian>student" -> the row that linked them
WRITTEN = "guardian written"  # id of a guardian this run wrote -> the -row it was planned as
WRITTEN_AS = "guardian written as"  # -row -> the id it was written with (planned ahead)


class Fingerprint:
    """A value remembered by its keyed hash: equal to every string with that hash."""

    __slots__ = ("ledger", "value")

    def __init__(self, ledger: Ledger, value: int) -> None:
        self.ledger, self.value = ledger, value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.ledger.fingerprint(other) == self.value

    __hash__ = None  # type: ignore[assignment]


def owners(chunk: Chunk) -> None:
    """Owners of the chunk's phones and national IDs that earlier chunks planned."""
    ledger = chunk.context.ledger
    chunk.phone_owner |= ledger.get(PHONE_OWNER, _missing(chunk.phone_candidates,
                                                          chunk.phone_owner))
    chunk.nid_owner |= ledger.get(NID_OWNER, _missing(chunk.nid_candidates, chunk.nid_owner))


def _missing(values: Iterable[str], found: dict[str, int]) -> list[str]:
    return [v for v in values if v not in found]


def people(chunk: Chunk) -> None:
    """The guardians planned by earlier chunks, and the changes they planned to known ones."""
    planned = {a for a in chunk.phone_owner.values() if a < 0}
    chunk.account_person |= {a: a for a in planned}
    ids = [str(p) for p in {*chunk.people, *planned, *chunk.nid_owner.values()}]
    ledger = chunk.context.ledger
    names, phones = ledger.get(NAME, ids), ledger.get(PHONE, ids)
    given = ledger.get(HAS_NID, ids)
    for key in {*names, *phones, *given}:
        person = int(key)
        known = chunk.people.get(person) or _planned(person)
        chunk.people[person] = replace(
            known, name=_fingerprint(ledger, names.get(key), known.name),
            phone_bidx=_fingerprint(ledger, phones.get(key), known.phone_bidx),
            national_id_bidx=GIVEN if key in given else known.national_id_bidx)


def aliases(chunk: Chunk) -> None:
    """The guardians this run wrote, by their planned number: a link's key is the same in a
    dry and a real run."""
    found = chunk.context.ledger.get(WRITTEN, [str(p) for p in chunk.people if p > 0])
    chunk.aliases = {int(person): planned for person, planned in found.items()}


def links(chunk: Chunk, keys: Iterable[str]) -> dict[str, int]:
    """The rows of earlier chunks that linked these ``guardian>student`` keys."""
    return chunk.context.ledger.get(LINK, keys)


def written(ledger: Ledger, new_people: Iterable[NewPerson], *, planned_ahead: bool) -> None:
    """After a chunk is written: its new guardians' ids. A run that plans on its own
    connection (sees the directory) finds them there and keys them by their planned
    number (:func:`aliases`); a run that plans ahead never sees them, and its later plans
    name them by that number until :func:`resolve` gives them their ids."""
    if planned_ahead:
        ledger.put(WRITTEN_AS, [(str(-new.row), new.person_id) for new in new_people
                                if new.person_id is not None])
    else:
        ledger.put(WRITTEN, [(str(new.person_id), -new.row) for new in new_people
                             if new.person_id is not None])


def resolve(ledger: Ledger, session: Session, plan: ChunkPlan) -> None:
    """Before a chunk planned ahead is written: the guardians earlier chunks planned new
    (``-row``), which the plan links, affiliates or updates, by the ids they were written
    with (and, for updates, their uids and account ids, from the run's connection)."""
    planned = {link.guardian for link in plan.new_links if _is_planned(link.guardian)}
    planned |= {move.person_id for move in plan.moves if _is_planned(move.person_id)}
    planned |= {u.known.person_id for u in plan.updates if u.known.person_id < 0}
    if not planned:
        return
    ids = {int(key): pid for key, pid in ledger.get(WRITTEN_AS, map(str, planned)).items()}
    for link in plan.new_links:
        if _is_planned(link.guardian):
            link.guardian = ids[link.guardian]
    for move in plan.moves:
        if _is_planned(move.person_id):
            move.person_id = ids[move.person_id]
    updated = [u for u in plan.updates if u.known.person_id < 0]
    if updated:
        found = people_by_id(session, [ids[u.known.person_id] for u in updated])
        for update in updated:
            written = found[ids[update.known.person_id]]
            update.known = replace(update.known, person_id=written.person_id,
                                   uid=written.uid, account_id=written.account_id)


def _is_planned(person: object) -> bool:
    return isinstance(person, int) and person < 0


def _planned(person: int) -> Known:
    return Known(person, "", person, "", None, None, None, None, PersonStatus.active.value,
                 False)


def _fingerprint(ledger: Ledger, value: int | None, default: object) -> object:
    return default if value is None else Fingerprint(ledger, value)


def remember(chunk: Chunk) -> None:
    """The links the chunk plans, now (a repeated link is refused in every run); its new
    guardians and changes to known ones only if it is not written (:func:`keep`): a
    written chunk leaves them in the directory, where the next chunks find them."""
    chunk.context.ledger.put(LINK, chunk.links.items())
    chunk.plan.recall = lambda: _remember_people(chunk)


def keep(plan: ChunkPlan) -> None:
    """A chunk whose writes the next plans will not read (not written: a dry run, a run
    being rejected; or planned ahead): remember what it planned, as if it had been
    written."""
    if plan.recall is not None:
        plan.recall()
        plan.recall = None


def _remember_people(chunk: Chunk) -> None:
    state: dict[str, list[tuple[str, int]]] = {k: [] for k in
                                               (PHONE_OWNER, NID_OWNER, NAME, PHONE, HAS_NID)}
    phones = chunk.plan.phone_numbers
    for new in chunk.plan.new_people:
        _changed(chunk, state, -new.row, new.name, new.national_id, new.phone)
        state[PHONE_OWNER] += [(phones[value], -new.row) for _, value in new.logins]
    for update in chunk.plan.updates:
        known = update.known
        _changed(chunk, state, known.person_id, update.values.get("name"),
                 update.national_id, update.phone)
        if update.phone_login and known.account_id:
            state[PHONE_OWNER].append((phones[update.phone_login[1]], known.account_id))
        if known.account_id:
            state[PHONE_OWNER] += [(phones[v], known.account_id)
                                   for v in update.more_phone_logins]
    for kind, entries in state.items():
        chunk.context.ledger.put(kind, entries)


def _changed(chunk: Chunk, state: dict[str, list[tuple[str, int]]], person: int,
             name: object, national_id: str | None, phone: str | None) -> None:
    fingerprint, key = chunk.context.ledger.fingerprint, str(person)
    if isinstance(name, str):
        state[NAME].append((key, fingerprint(name)))
    if national_id:
        state[NID_OWNER].append((national_id, person))
        state[HAS_NID].append((key, 1))
    if phone:
        state[PHONE].append((key, fingerprint(chunk.phone_candidates[phone][0])))
