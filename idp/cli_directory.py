"""``idp import``, ``idp rollover`` and ``idp erase-departed``: the directory's bulk commands.

Registered on the main app by :func:`register` (``idp/cli.py``). A file that
cannot be used ends in one ``error: ...`` line and exit code 2, like a
configuration problem; invalid rows end in exit code 1 with the error file's
path; success is exit code 0.
"""

from __future__ import annotations

import getpass
import sys
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from directory.importer import FileProblem, ImportOptions, ImportResult, Kind, import_file
from directory.importer.diff import Diff
from directory.importer.formats import is_workbook
from directory.importer.snapshot import LEAVERS_FREE, LEAVERS_PERCENT

out = Console()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _fail(message: str) -> typer.Exit:
    print(f"error: {printable(message)}", file=sys.stderr)  # it may name the file
    return typer.Exit(2)


def printable(text: str) -> str:
    """``text`` for a terminal: a control or format character (an escape sequence is a
    command to the terminal) shown as U+FFFD; pass it to rich as ``Text``, never as
    markup."""
    return "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
                   for c in text)


def _print_diff(diff: Diff) -> None:
    """The examples of a diff, one per line: names and codes that came from files, shown
    with no escape sequence and no rich markup."""
    for line in diff.lines():
        out.print(printable(line), markup=False, highlight=False)


def import_command(
    file: Path = typer.Argument(..., help="CSV (UTF-8 or GBK) or XLSX file."),
    kind: Kind | None = typer.Option(None, "--kind", help="What the file holds (default: "
                                     "detected from the headers)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff; write nothing."),
    snapshot: bool = typer.Option(False, "--snapshot", help="The file is complete for its "
                                  "schools: people missing from it have left."),
    leavers_limit: int = typer.Option(
        LEAVERS_PERCENT, "--leavers-limit", min=0, max=100,
        help="--snapshot: refuse a file that would mark more than this percentage of a "
        f"school's people as left (and more than {LEAVERS_FREE} of them)."),
    errors: Path | None = typer.Option(None, "--errors", help="Where to write row errors "
                                       "(default: FILE.errors.csv next to the file)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Apply the valid rows "
                                      "even when some rows are invalid."),
    show: int = typer.Option(20, "--show", min=0, help="Examples shown per kind of change."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Processes that check "
                                       "and encrypt rows (default: one per CPU beyond the "
                                       "first; 0: none, all in this process)."),
) -> None:
    """Import schools, classes, students, teachers or guardians (see docs/import.md)."""
    from idp.cli import _database, _settings

    settings = _settings()
    database = _database(settings)
    options = ImportOptions(kind=kind, dry_run=dry_run, snapshot=snapshot,
                            leavers_percent=leavers_limit,
                            skip_invalid=skip_invalid, errors_path=errors, actor=_actor(),
                            examples=show, workers=workers)
    try:
        result = _with_progress(lambda progress: import_file(
            database, settings, file, options, progress), file)
    except FileProblem as exc:
        raise _fail(str(exc)) from None
    except BrokenProcessPool:  # the run rolled back and was recorded as failed
        raise _fail("a process checking the rows ended unexpectedly (killed, or out of "
                    "memory?): nothing was written; run again, or with --workers 0") from None
    finally:
        database.dispose()
    _report(result)
    if result.left_accounts:  # they may no longer sign in: their apps are told now
        from idp.cli_security import end_sessions

        end_sessions(result.left_accounts, begun_before=time.time())
    if not result.ok:
        raise typer.Exit(1)


def _with_progress(work: Callable[[Callable[[int], None]], ImportResult], file: Path
                   ) -> ImportResult:
    size = file.stat().st_size if file.is_file() and not is_workbook(file) else None
    columns = [TextColumn("[bold]importing"), BarColumn(),
               DownloadColumn() if size else TextColumn("{task.completed} rows"),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("import", total=size)
        return work(lambda done: progress.update(task, completed=done))


def _report(result: ImportResult) -> None:
    out.print(Text(f"{printable(result.path.name)}: {result.kind.value}, {result.encoding}, "
                   f"{result.rows} rows"))
    for column in result.ignored_columns:
        out.print(Text.assemble(("warning:", "yellow"),
                                f" column {printable(repr(column))} is not used and was ignored"))
    if result.previous_run_id:
        out.print(f"this file was already imported in run {result.previous_run_id}; "
                  "only the differences are applied")
    out.print(result.diff.summary())
    _print_diff(result.diff)
    if result.errors:
        out.print(Text.assemble((f"{result.errors} problems", "red"), " in invalid rows; see ",
                                printable(str(result.errors_path))))
    message = {
        "dry-run": "dry run: nothing was written",
        "applied": f"applied (import run {result.run_id})",
        "unchanged": f"nothing to change (import run {result.run_id})",
        "rejected": f"rejected: nothing was written (import run {result.run_id}); fix the "
                    "rows or use --skip-invalid",
    }[result.status]
    out.print(message)


def rollover_command(
    year: int = typer.Option(..., "--year", min=1900, max=9000,
                             help="The school year that starts (e.g. 2027 for 2027-09-01)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff; write nothing."),
    graduated_grace_days: int = typer.Option(180, "--graduated-grace-days", min=0, max=3650,
                                             help="Days before a graduate's account is disabled "
                                             "(signing in ends at graduation)."),
    final_grades: str = typer.Option("6,9,12", "--final-grades",
                                     help="Grades that end a school stage."),
    show: int = typer.Option(20, "--show", min=0, help="Examples shown per kind of change."),
) -> None:
    """Start a school year: promote students, graduate final years, disable old graduates."""
    from directory.rollover import RolloverOptions, rollover
    from idp.cli import _database, _settings

    try:
        finals = frozenset(int(g) for g in final_grades.split(",") if g.strip())
    except ValueError:
        raise _fail("--final-grades must be numbers separated by commas, e.g. 6,9,12") from None
    options = RolloverOptions(year=year, dry_run=dry_run, final_grades=finals,
                              grace_days=graduated_grace_days, actor=_actor(),
                              today=date.today(), examples=show)
    database = _database(_settings())
    try:
        with out.status(f"rolling over to the {year} school year..."):
            result = rollover(database, options)
    except FileProblem as busy:  # ImportBusy: an import or another rollover is running
        raise _fail(str(busy)) from None
    finally:
        database.dispose()
    out.print(result.diff.summary())
    _print_diff(result.diff)
    out.print("dry run: nothing was written" if dry_run else f"school year {year} started")
    if result.graduated_accounts:  # they may no longer sign in: their apps are told now
        from idp.cli_security import end_sessions

        end_sessions(result.graduated_accounts, begun_before=time.time())


def erase_departed_command(
    days: int = typer.Option(..., "--days", min=30, max=36500,
                             help="The retention period: days since a departed person's last "
                             "place ended."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count them; erase nothing."),
    batch: int = typer.Option(200, "--batch", min=1, max=10000, help="People per transaction."),
) -> None:
    """Erase the personal data of people who graduated, transferred or left more than
    --days ago (docs/operations.md): a tombstone of opaque ids stays."""
    import migrations.models  # noqa: F401 - every table that refers to a person or account
    from directory.importer.lock import ImportBusy
    from directory.retention import erase_departed
    from idp.cli import _database, _settings

    settings = _settings()
    database = _database(settings)
    try:
        with out.status("erasing..." if not dry_run else "counting..."):
            done = erase_departed(settings, database.sessions, days=days, actor=_actor(),
                                  dry_run=dry_run, batch=batch)
    except ImportBusy as busy:  # batches done so far stay done: run it again later
        raise _fail(str(busy)) from None
    finally:
        database.dispose()
    if dry_run:
        out.print(f"dry run: {done.people} people would be erased (and the guardians left "
                  f"with no child), e.g. {', '.join(done.uids) or '-'}; nothing was written")
    else:
        out.print(f"erased {done.people} people and {done.guardians} guardians left with no "
                  "child (audited as directory.person.erase)")


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("rollover")(rollover_command)
    app.command("erase-departed")(erase_departed_command)
