"""One import run, as an ordered list of steps: read, check, plan, apply, record.

Decisions:

- **All or nothing**: the whole run is one database transaction. Chunks are
  planned and written as the file streams by; at the end the run commits, or
  rolls back if anything failed. With invalid rows the run is *rejected*:
  nothing is written and the exit code is non-zero, unless ``skip_invalid``
  is set, in which case the valid rows are applied and the invalid ones are
  only reported. Once a row is invalid (without ``skip_invalid``), later
  chunks are still checked but no longer written: the rollback is coming.
- **Idempotent**: every row is compared with the directory, so importing the
  same file again finds nothing to change and writes nothing (status
  ``unchanged``). The file's SHA-256 names an earlier run of the same bytes.
- **Memory stays flat**: rows are read one at a time and handled in chunks of
  ``chunk_size`` (5,000) rows; keys seen so far live in an on-disk
  :class:`Ledger`; the diff keeps counts and a few examples only.
- **Dry run**: the same steps without writing anything, not even the run.
- **The error file is never the input** (``--errors`` naming it, through any path or
  link): refused before anything is read or written.
- **``--kind`` must not contradict the headers**: a kind given whose columns are a
  part of another kind's that the file has (a students file given as ``classes``
  or ``schools``) is refused; otherwise ``--kind`` wins over detection (a students
  export with guardian columns, which detection calls guardians).
- **Rare full garbage collections** while the run lasts (``core.gc_policy``): each
  chunk's objects outlive many young collections and would otherwise trigger a
  full collection of the whole process every few chunks.
- **One writing run at a time**: the first statement of a writing run takes
  the import lock (``lock``); a second run fails at once ("another import is
  running").
- **CPU work in worker processes**: rows are checked, indexed and sealed by
  ``workers`` (``options.workers``, default: one per CPU beyond the first)
  while this process plans and writes; batches come back in file order, so the result is that
  of a single process.
- **Writing overlaps checking**: a writer thread writes chunk *n* on the run's
  connection while this thread checks chunk *n+1*; the plan of chunk *n+1*
  waits for chunk *n*'s writes (``stream_chunks``).
- **Students and guardians are planned ahead** (PostgreSQL): their chunks are
  planned on a second, read-only connection, which sees the directory as it was
  before the run (the run's writes are not committed yet), while the writer
  writes the previous chunk. That is what a dry run sees, and a dry run's diff
  is the real run's: a students file's keys (student numbers, national IDs)
  are unique across its chunks (the ledger), so a student's plan reads only
  what the student's own row changes; a guardian that earlier chunks planned
  or changed is recalled from the ledger (``recall``) exactly as in a dry run,
  known by its planned number (``-row``) until ``recall.resolve`` gives the
  plan the ids the writer gave it. A guardian's school affiliation is written
  only if it is not current already (``apply.write_moves``): two chunks may
  both plan it. Teachers are not planned ahead (a teacher's phone login may pass
  to another teacher of the same file), nor schools and classes (units created
  by earlier chunks): they are small, and wait.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from core import audit
from core.db import Database, utcnow
from core.field_crypto import sealer
from core.gc_policy import batch_collections
from core.settings import Settings
from directory.importer import apply, plan, recall, snapshot
from directory.importer.bulk import Statistics, serial_plans
from directory.importer.columns import Columns, Kind, detect_kind, label, resolve
from directory.importer.diff import Change, Diff
from directory.importer.error_file import ErrorFile, default_path
from directory.importer.formats import FileProblem, Progress, Table, content_hash, open_table
from directory.importer.ledger import Ledger
from directory.importer.lock import hold_import_lock
from directory.importer.runs import ImportRun, RunStatus, previous_run
from directory.importer.snapshot import LEAVERS_PERCENT
from directory.importer.units import Units
from directory.importer.workers import Checked, Checker, default_workers
from directory.people import accounts_of

CHUNK_SIZE = 5000
SNAPSHOT_KINDS = (Kind.students, Kind.teachers)
PLANNED_AHEAD = (Kind.students, Kind.guardians)  # planned while the last chunk is written


@dataclass
class ImportOptions:
    kind: Kind | None = None
    dry_run: bool = False
    snapshot: bool = False
    leavers_percent: int = LEAVERS_PERCENT  # --snapshot: the most a school may lose
    skip_invalid: bool = False
    errors_path: Path | None = None
    actor: str = "cli"
    today: date | None = None
    chunk_size: int = CHUNK_SIZE
    examples: int = 20  # examples kept per kind of change in the diff
    workers: int | None = None  # processes checking and sealing rows; 0: none; None: one per
    #                             CPU beyond the first


@dataclass
class ImportResult:
    path: Path
    kind: Kind
    sha256: str
    encoding: str
    status: str  # a RunStatus, or "dry-run"
    diff: Diff
    rows: int = 0
    errors: int = 0
    errors_path: Path | None = None
    ignored_columns: tuple[str, ...] = ()
    previous_run_id: int | None = None
    run_id: int | None = None

    skip_invalid: bool = False
    # accounts whose person left (snapshot mode) and may no longer sign in: their sessions
    # are to be ended now that the import is committed (``idp import`` does)
    left_accounts: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """Success for the exit code: nothing rejected, and no invalid row unless skipped."""
        return self.status != RunStatus.rejected.value and (
            not self.errors or self.skip_invalid)


@dataclass
class Run:
    """The state of one run while its steps execute."""

    database: Database
    settings: Settings
    session: Session
    path: Path
    options: ImportOptions
    progress: Progress | None
    today: date = field(default_factory=date.today)
    started: datetime = field(default_factory=utcnow)
    sha256: str = ""
    table: Table | None = None
    columns: Columns | None = None
    context: plan.Context | None = None
    ledger: Ledger | None = None
    errors: ErrorFile | None = None
    diff: Diff = field(default_factory=Diff)
    rows: int = 0
    previous_id: int | None = None  # an earlier run of the same bytes
    run_id: int | None = None
    left_people: set[int] = field(default_factory=set)  # snapshot mode: they left
    affiliations_before: int = 0  # snapshot mode: the newest affiliation before any write
    left_accounts: tuple[int, ...] = ()  # their accounts, once the run is applied
    seal_ahead: bool = True  # the last chunk was mostly new people
    reader: Session | None = None  # plans ahead of the writes (``plan_ahead``), if not None
    chunk_done: Callable[[], None] = lambda: None  # core.gc_policy's step, once per chunk

    @property
    def kind(self) -> Kind:
        assert self.columns is not None
        return self.columns.kind

    @property
    def writing(self) -> bool:
        """Whether chunks are written now (not a dry run, and no rejection coming)."""
        assert self.errors is not None
        return not self.options.dry_run and (self.options.skip_invalid or not self.errors.count)


# --- steps ----------------------------------------------------------------------------------

def refuse_overwriting_the_input(run: Run) -> None:
    """The error file must not be the file imported (``--errors`` naming it, or another
    path to it: a symlink, a hard link): it would be truncated while it is read."""
    assert run.errors is not None
    target = run.errors.path
    try:
        same = os.path.samefile(target, run.path)
    except OSError:  # one does not exist: not the same (a missing input is found next)
        same = False
    if same:
        raise FileProblem(f"the error file {target} is the file being imported: it would be "
                          "overwritten; choose another place with --errors")


def lock(run: Run) -> None:
    if not run.options.dry_run:
        hold_import_lock(run.session)


def hash_content(run: Run) -> None:
    try:
        run.sha256 = content_hash(run.path)
    except FileNotFoundError:
        raise FileProblem(f"{run.path}: no such file") from None
    except IsADirectoryError:
        raise FileProblem(f"{run.path}: is a directory, not a file") from None
    except OSError as exc:
        raise FileProblem(f"{run.path}: cannot be read ({exc.strerror})") from None


def read_header(run: Run) -> None:
    run.table = open_table(run.path, run.progress)
    kind = run.options.kind or detect_kind(run.table.header)
    run.columns = resolve(kind, run.table.header)
    if run.options.kind is not None:
        _refuse_another_kinds_file(run.columns, run.table.header)
    if run.options.snapshot and kind not in SNAPSHOT_KINDS:
        raise FileProblem(f"--snapshot applies to students and teachers, not {kind.value}")


def _refuse_another_kinds_file(columns: Columns, header: list[str]) -> None:
    """:class:`FileProblem` if the headers are those of another kind than ``--kind``: one
    whose required columns are all there, and which would use every column the given kind
    uses, and more (a students file given as classes would rename every class after its
    students, their numbers ignored). A file that fits the given kind and also holds
    another kind's columns the given kind does not use (a students file with a guardian's
    phone and relation) is the given kind's, with extra columns."""
    ours = set(columns.index.values())
    richest: Columns | None = None
    for kind in Kind:
        if kind is columns.kind:
            continue
        try:
            theirs = resolve(kind, header)
        except FileProblem:
            continue
        if ours < set(theirs.index.values()) and (
                richest is None or len(theirs.index) > len(richest.index)):
            richest = theirs
    if richest is not None:
        unused = ", ".join(label(column) for column, at in richest.index.items()
                           if at not in ours)
        raise FileProblem(f"--kind {columns.kind.value} does not match the headers: they are "
                          f"those of a {richest.kind.value} file ({unused} would be ignored); "
                          f"give --kind {richest.kind.value}, or leave --kind out")


def note_previous_run(run: Run) -> None:
    previous = previous_run(run.session, run.sha256, run.kind.value)
    run.previous_id = previous.id if previous else None  # read now: a dry run rolls back


def plan_ahead(run: Run) -> None:
    """Open the planning connection of a writing students or guardians run (PostgreSQL)."""
    if (run.kind in PLANNED_AHEAD and not run.options.dry_run
            and run.session.get_bind().dialect.name == "postgresql"):
        run.reader = run.database.sessions()
        serial_plans(run.reader)


def prepare(run: Run) -> None:
    run.diff = Diff(run.options.examples)
    planning = run.reader or run.session
    run.context = plan.Context(planning, run.settings, run.kind, run.ledger,
                               Units(planning), run.today, sealer(run.settings))
    if run.options.snapshot:  # before any write: what each school had (the leavers' limit)
        run.affiliations_before = snapshot.affiliations_before(run.session)


Pending = tuple[Future[None], plan.ChunkPlan] | None  # the chunk in the writer's hands


def stream_chunks(run: Run) -> None:
    """Check, plan and (unless dry or rejected) write the file, chunk after chunk.

    Writing chunk *n* runs in a writer thread (mostly waiting for the database, which
    frees the interpreter) while this thread reads, checks and seals chunk *n+1*. The
    lookups and the plan of chunk *n+1* wait until chunk *n* is written, on the same
    connection and in the same transaction, so every plan sees every earlier write as in
    a sequential run; only the checking and the ledger's duplicate keys overlap, and
    neither touches the database session. A run with a ``reader`` plans on it without
    waiting (see "planned ahead" above): the writer then waits for the plan, not the
    plan for the writer."""
    statistics = Statistics(run.session)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer") as writer:
        pending: Pending = None
        for valid, checked in _checked_chunks(run):
            begun = plan.begin_chunk(run.context, valid, checked)  # the ledger: no waiting
            if run.reader is None:  # the plan must see the previous chunk's writes
                pending = _written(run, pending)
            chunk = _plan(run, begun, len(valid))
            pending = _written(run, pending)  # one chunk in the writer's hands at a time
            if run.writing:
                pending = _hand_over(run, writer, chunk, statistics)
        _written(run, pending)
    if run.reader is not None:  # later steps read what the run wrote
        run.context.session = run.context.units.session = run.session


def _plan(run: Run, begun: plan.Chunk, rows: int) -> plan.ChunkPlan:
    """The chunk's plan, its errors and diff noted. What later plans cannot read from the
    directory (a chunk not written, or any chunk when they are made ahead) is remembered
    (``recall.keep``)."""
    chunk = plan.finish_chunk(begun)
    run.chunk_done()
    if run.reader is not None:
        run.reader.rollback()  # read only: end the transaction, hold no snapshot
    run.errors.write(chunk.errors)
    run.diff.merge(chunk.diff)
    run.seal_ahead = 2 * len(chunk.new_people) >= rows
    if run.reader is not None or not run.writing:  # the next plans will not read it
        recall.keep(chunk)
    return chunk


def _hand_over(run: Run, writer: ThreadPoolExecutor, chunk: plan.ChunkPlan,
               statistics: Statistics) -> Pending:
    """Give the chunk to the writer (a plan made ahead first learns the ids of the guardians
    earlier chunks wrote)."""
    if run.reader is not None:
        recall.resolve(run.ledger, run.session, chunk)
    return writer.submit(_write, run, chunk, statistics), chunk


def _write(run: Run, chunk: plan.ChunkPlan, statistics: Statistics) -> None:
    """The writer thread's part: the chunk's statements (and, now and then, ``ANALYZE``)."""
    apply.apply_plan(run.session, run.context.sealer, chunk, run.today)
    statistics.chunk_written()


def _written(run: Run, pending: Pending) -> Pending:
    """Wait until the chunk handed to the writer is in (re-raising its error); note it.
    Returns what is pending then: nothing."""
    if pending is None:
        return None
    future, chunk = pending
    future.result()
    if run.kind is Kind.guardians:
        recall.written(run.ledger, chunk.new_people, planned_ahead=run.reader is not None)
    return None


def _checked_chunks(run: Run) -> Iterator[tuple[list, Checked]]:
    """Valid parsed rows in chunks, checked by the workers; errors are written as they come."""
    workers = run.options.workers
    checker = Checker(run.columns, run.context.sealer, size=run.options.chunk_size,
                      workers=default_workers() if workers is None else workers,
                      seal_ahead=lambda: run.seal_ahead and run.writing)
    valid: list = []
    chunk = Checked([])
    for checked in checker.batches(run.table.records):
        valid += _valid_rows(run, checked)
        chunk.absorb(checked)
        if len(valid) >= run.options.chunk_size:
            yield valid, chunk
            valid, chunk = [], Checked([])
    if valid:
        yield valid, chunk


def _valid_rows(run: Run, checked: Checked) -> list:
    """The valid rows of a batch; invalid ones go to the error file (their keys to the ledger)."""
    valid: list = []
    invalid_keys: list[tuple[str, int]] = []
    for parsed, errors in checked.rows:
        run.rows += 1
        if errors:
            run.errors.write(errors)
            run.diff.add(Change.invalid)
            if getattr(parsed, "key", None):
                invalid_keys.append((parsed.key, parsed.row))
        else:
            valid.append(parsed)
    run.ledger.mark("key", invalid_keys)
    return valid


def deactivate_missing(run: Run) -> None:
    if run.options.snapshot:
        run.left_people = snapshot.deactivate_missing(
            run.context, run.diff, write=run.writing, before=run.affiliations_before,
            leavers_percent=run.options.leavers_percent)


STEPS: list[Callable[[Run], None]] = [
    refuse_overwriting_the_input, lock, hash_content, read_header, note_previous_run,
    plan_ahead, prepare, stream_chunks, deactivate_missing,
]


# --- the run --------------------------------------------------------------------------------

def import_file(
    database: Database, settings: Settings, path: Path, options: ImportOptions | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one file; :class:`FileProblem` when the file itself cannot be used."""
    options = options or ImportOptions()
    session = database.sessions()
    serial_plans(session)  # short batch lookups, many of them: no parallel plans
    run = Run(database, settings, session, path, options, progress,
              today=options.today or date.today())
    errors_path = options.errors_path or default_path(path)
    try:
        with (batch_collections() as run.chunk_done, Ledger() as run.ledger,
              ErrorFile(errors_path) as run.errors):
            for step in STEPS:
                step(run)
            status = _finish(run)
    except Exception:
        session.rollback()
        if run.columns is not None and not options.dry_run:
            _record(run, RunStatus.failed.value)
            session.commit()
        raise
    finally:
        if run.reader is not None:
            run.reader.close()
        session.close()
    return ImportResult(
        path, run.kind, run.sha256, run.table.encoding, status, run.diff, run.rows,
        run.errors.count, errors_path if run.errors.count else None, run.columns.ignored,
        run.previous_id, run.run_id, options.skip_invalid, run.left_accounts)


def _finish(run: Run) -> str:
    """Commit, or roll back; record the run (not for a dry run)."""
    if run.options.dry_run:
        run.session.rollback()
        return "dry-run"
    if run.errors.count and not run.options.skip_invalid:
        run.session.rollback()
        status = RunStatus.rejected.value
    else:
        status = RunStatus.unchanged.value if run.diff.empty else RunStatus.applied.value
        run.left_accounts = accounts_of(run.session, run.left_people)
    _record(run, status)
    run.session.commit()
    return status


def _record(run: Run, status: str) -> None:
    counts = run.diff.counts
    row = ImportRun(
        kind=run.kind.value, file_name=run.path.name[:400], sha256=run.sha256, status=status,
        snapshot=run.options.snapshot, rows=run.rows, actor=run.options.actor[:200],
        started_at=run.started, finished_at=utcnow(),
        message=f"{run.errors.count if run.errors else 0} errors",
        **{c.value: counts[c.value] for c in Change},
    )
    run.session.add(row)
    run.session.flush()
    run.run_id = row.id
    audit.record(run.session, actor=run.options.actor, action="directory.import",
                 outcome=status, target=f"import_run:{row.id}",
                 detail={"kind": run.kind.value, "file": run.path.name, "sha256": run.sha256,
                         "snapshot": run.options.snapshot, "rows": run.rows, **counts})
