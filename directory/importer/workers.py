"""The CPU work of an import, in worker processes: checking rows, blind indexes, sealing.

The main process reads the file and owns the database transaction; batches of
raw rows go to a pool of worker processes, which check each row
(``rows.parse_row``), compute the blind indexes of national IDs and phones
(``core.field_crypto.Sealer``) and, when new people are likely, seal them ahead
under fresh uids. The main process plans and writes batch *n* while the
workers check batches *n+1*, *n+2*.

Decisions:

- **Order is kept**: batches come back in file order, so row errors, the
  ledger and the diff are exactly those of a single-process run.
- **Memory stays flat**: at most ``workers + AHEAD`` batches of ``BATCH`` rows
  are in flight (enough for the workers to go on while the main thread plans a
  chunk); cells of columns the kind does not use are dropped before they are
  sent.
- **Sealing ahead is a guess**: a row sealed ahead is used only if it becomes
  a new person (its tokens are bound to the uid it is created with); the main
  process seals whatever was not sealed ahead. Sealing ahead is switched off
  while chunks find mostly known people (a re-import), so no work is wasted.
- **No database in the workers**: they see nothing of the run's transaction.
  The first ``POOL_AFTER`` rows are checked in the main process, so small
  files never start a pool; nor do schools and classes (no personal data:
  checking them is cheaper than starting processes). The pool uses the ``forkserver`` method (never
  ``fork``: the main process may hold threads and connections); ``workers``
  of 0 checks everything in the main process.
- Workers hold derived field keys only (a ``Sealer``), never the master keys.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

from core.db import new_sortable_id
from core.field_crypto import Sealer
from directory.importer.columns import Columns, Kind
from directory.importer.formats import Record
from directory.importer.rows import ParsedRow, RowError, parse_row, stray_cells
from directory.models import NATIONAL_ID, PHONE

PERSON_KINDS = (Kind.students, Kind.teachers, Kind.guardians)
BATCH = 1000  # rows per job: small enough to keep the rows in flight to a few MB
AHEAD = 5  # batches checked ahead beyond one per worker: a chunk, while the main thread plans one
POOL_AFTER = 5000  # rows checked here before a pool is worth starting


def default_workers() -> int:
    """One worker per CPU beyond the main process's (at least one).

    The main process is the import's bottleneck (it plans ahead while the writer writes,
    ``pipeline``), so checking and sealing elsewhere pays even on two cores, where the
    database server shares the second core with the worker (docs/benchmarks.md, session 4)."""
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass(slots=True)
class Sealed:
    """A new person's uid and sealed columns (``Sealer.seal`` sets them)."""

    uid: str
    national_id_enc: str | None = None
    national_id_bidx: str | None = None
    phone_enc: str | None = None
    phone_bidx: str | None = None


@dataclass
class Checked:
    """One batch of rows, checked: in file order, with indexes and what was sealed ahead."""

    rows: list[tuple[ParsedRow, list[RowError]]]
    nid_index: dict[str, list[str]] = field(default_factory=dict)  # value -> candidates
    phone_index: dict[str, list[str]] = field(default_factory=dict)
    sealed: dict[int, Sealed] = field(default_factory=dict)  # by row number

    def absorb(self, other: Checked) -> None:
        """Take ``other``'s indexes and sealed values (not its rows): batches into a chunk."""
        self.nid_index.update(other.nid_index)
        self.phone_index.update(other.phone_index)
        self.sealed.update(other.sealed)


@dataclass(frozen=True)
class Job:
    """What a worker needs besides the rows (sent once, to each worker)."""

    columns: Columns  # re-indexed onto the cells that are sent
    sealer: Sealer


def seal_person(sealer: Sealer, uid: str, national_id: str | None, phone: str | None,
                index: Callable[[str, str], str | None] = lambda kind, value: None) -> Sealed:
    """Seal a person's national ID and phone, bound to ``person/<column>/<uid>``."""
    sealed = Sealed(uid)
    if national_id:
        sealer.seal(NATIONAL_ID, sealed, national_id, index("national_id", national_id))
    if phone:
        sealer.seal(PHONE, sealed, phone, index("phone", phone))
    return sealed


def check_batch(job: Job, records: list[tuple[int, list[str], RowError | None]],
                seal_ahead: bool) -> Checked:
    """Check a batch of rows; index (and maybe seal) the valid rows' personal data."""
    checked = Checked([])
    for row, cells, stray in records:
        parsed, errors = parse_row(job.columns, row, cells)
        if stray is not None:
            errors.append(stray)
        checked.rows.append((parsed, errors))
    if job.columns.kind in PERSON_KINDS:
        _index_and_seal(job.sealer, checked, seal_ahead)
    return checked


def _index_and_seal(sealer: Sealer, checked: Checked, seal_ahead: bool) -> None:
    valid = [parsed for parsed, errors in checked.rows if not errors]
    for parsed in valid:
        if parsed.national_id and parsed.national_id not in checked.nid_index:
            checked.nid_index[parsed.national_id] = sealer.candidates(
                "national_id", parsed.national_id)
        if parsed.phone and parsed.phone not in checked.phone_index:
            checked.phone_index[parsed.phone] = sealer.candidates("phone", parsed.phone)
    if not seal_ahead:
        return
    for parsed in valid:
        if parsed.national_id or parsed.phone:
            checked.sealed[parsed.row] = seal_person(
                sealer, new_sortable_id(), parsed.national_id, parsed.phone,
                lambda kind, value: _first(checked, kind, value))


def _first(checked: Checked, kind: str, value: str) -> str:
    return (checked.nid_index if kind == "national_id" else checked.phone_index)[value][0]


# --- worker processes -----------------------------------------------------------------------

_JOB: Job | None = None


def _start_worker(job: Job) -> None:
    global _JOB  # one job per worker process, set once when it starts
    _JOB = job


def _check_in_worker(records: list[tuple[int, list[str], RowError | None]], seal_ahead: bool
                     ) -> Checked:
    assert _JOB is not None
    return check_batch(_JOB, records, seal_ahead)


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["directory.importer.workers"])
        return context
    return multiprocessing.get_context("spawn")


class Checker:
    """Checks a file's records in batches, in worker processes when worthwhile."""

    def __init__(self, columns: Columns, sealer: Sealer, *, workers: int, size: int = BATCH,
                 seal_ahead: Callable[[], bool]) -> None:
        self.columns, self.workers, self.size = columns, workers, min(size, BATCH)
        self.seal_ahead = seal_ahead
        self._used = sorted(columns.index.values())
        self.job = Job(Columns(columns.kind, {c: self._used.index(at) for c, at
                                              in columns.index.items()},
                               columns.ignored, len(self._used)), sealer)

    def batches(self, records: Iterable[Record]) -> Iterator[Checked]:
        """The checked batches in file order: here first, then in the pool if there is one."""
        groups, checked = self._groups(records), 0
        for group in groups:
            yield check_batch(self.job, group, self.seal_ahead())
            checked += len(group)
            if self.workers > 0 and self.job.columns.kind in PERSON_KINDS \
                    and checked >= POOL_AFTER:
                yield from self._pooled(groups)
                return

    def _pooled(self, groups: Iterator[list]) -> Iterator[Checked]:
        pool = ProcessPoolExecutor(self.workers, mp_context=_context(),
                                   initializer=_start_worker, initargs=(self.job,))
        pending: deque[Future[Checked]] = deque()
        try:
            for group in groups:
                pending.append(pool.submit(_check_in_worker, group, self.seal_ahead()))
                if len(pending) >= self.workers + AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _groups(self, records: Iterable[Record]) -> Iterator[list]:
        """Batches of ``(row, used cells, stray-cells error or None)``."""
        used, width = self._used, self.columns.width
        records = iter(records)
        while batch := [(r.row, [r.cells[at] if at < len(r.cells) else "" for at in used],
                         stray_cells(r.row, r.cells, width))
                        for r in islice(records, self.size)]:
            yield batch
