"""The error file: one line per problem (row, column, message, value), CSV for Excel.

Written as UTF-8 with a byte-order mark so that Excel on Chinese Windows shows
it correctly. Created only when there is a problem; values of personal data
are already masked by the row checks, every national ID or mobile number in a message or
value is masked here (``directory.pii.mask_numbers``: the checks against the directory
quote cells), and no cell can start a formula (``inert``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO

from directory.importer.formats import FileProblem
from directory.importer.rows import RowError
from directory.pii import mask_numbers

HEADER = ["row", "column", "message", "value"]


def inert(cell: str) -> str:
    """A cell that Excel and WPS show as text, never run as a formula: one beginning with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe
    (OWASP's advice against CSV injection; the file repeats what an import file held)."""
    return "'" + cell if cell.startswith(("=", "+", "-", "@", "\t", "\r")) else cell


def default_path(source: Path) -> Path:
    return source.with_name(f"{source.stem}.errors.csv")


class ErrorFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._handle: IO[str] | None = None
        self._writer: csv.writer | None = None  # type: ignore[valid-type]

    def write(self, errors: list[RowError]) -> None:
        if not errors:
            return
        if self._writer is None:
            try:
                self._handle = self.path.open("w", encoding="utf-8-sig", newline="")
            except OSError as exc:
                raise FileProblem(f"cannot write the error file {self.path} ({exc.strerror}); "
                                  "choose another place with --errors") from None
            self._writer = csv.writer(self._handle)
            self._writer.writerow(HEADER)
        for error in sorted(errors, key=lambda e: e.row):  # a check against the directory
            self._writer.writerow([error.row, error.column,  # may quote a cell in either
                                   inert(mask_numbers(error.message)),
                                   inert(mask_numbers(error.value))])
        self.count += len(errors)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> ErrorFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
