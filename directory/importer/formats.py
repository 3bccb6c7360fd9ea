"""Reading import files: CSV in any of the encodings schools export, and XLSX.

Decisions:

- **Streaming**: a file is read record by record; nothing holds the whole file.
  CSV goes through a strict text decoder over the binary file, XLSX through
  openpyxl's ``read_only`` mode (first sheet). Progress is reported in bytes
  (CSV) or rows (XLSX), against :attr:`Table.size`.
- **Encodings** (CSV): a byte-order mark decides (UTF-8, UTF-16, UTF-32).
  Without one, the first megabyte must decode as strict UTF-8, else as GB18030
  (a superset of GBK and GB2312, what Excel for Chinese Windows writes). NUL
  bytes without a BOM mean UTF-16/32 without BOM or a binary file: rejected.
  A later byte that does not decode in the chosen encoding stops the import
  with the byte offset (a file that mixes encodings).
- **No NUL character** anywhere (CSV): the sample's check sees only the first
  megabyte, and none of a file with a BOM (UTF-16/32 hold NUL bytes), while the
  csv module reads NUL as any other character and PostgreSQL refuses it in text
  when the row is written. So every decoded header and record is checked: a NUL
  stops the import (:class:`FileProblem` naming the row), nothing written. It is
  not a row error: NUL is no typo, but a damaged or binary file. (XLSX cannot
  hold one: XML refuses the character.)
- **Delimiter**: comma, tab or semicolon, whichever the header line holds most.
- **XLSX is known by its content**: a file that starts as a zip archive is read as a
  workbook whatever its name (a workbook renamed ``students.csv``); a damaged
  workbook (broken zip, missing part, broken XML), found as it is opened or
  while its rows are read, is a :class:`FileProblem`, never a parser's traceback.
- **Cells** are text. XLSX numbers that are whole become ``"42"`` (never
  ``"42.0"``), dates become ``YYYY-MM-DD``. Long numbers such as national IDs
  must be stored as text in the sheet: as numbers Excel has already lost digits.
- **Row numbers** are those a spreadsheet shows: the header is row 1.
- **Content hash**: SHA-256 of the file's bytes, computed in one streaming pass.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO

SAMPLE_SIZE = 1 << 20
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_XLSX_MAGIC = b"PK\x03\x04"
# What zipfile, zlib and openpyxl raise on a damaged workbook, as they open it or while its
# rows are read (found by corrupting workbooks byte by byte and part by part): a broken zip
# (BadZipFile, a bad CRC), a broken deflate stream (zlib.error), a truncated member
# (EOFError, OSError), broken XML (ElementTree's ParseError and lxml's XMLSyntaxError, both
# SyntaxError), a missing part (KeyError) or sheet (IndexError), an unsupported compression
# (NotImplementedError, a RuntimeError), an encrypted member (RuntimeError), values
# openpyxl cannot convert (ValueError, TypeError); ArithmeticError and AttributeError in case.
DAMAGED_XLSX: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, EOFError, OSError, SyntaxError, LookupError, RuntimeError,
    ValueError, TypeError, ArithmeticError, AttributeError,
)
_MAX_FIELD = 1 << 16
_NUL = "\x00"
_NUL_PROBLEM = ("the file is not text: it holds a NUL character (a damaged or binary file); "
                "remove it, or save the file again as CSV in UTF-8")

Progress = Callable[[int], None]  # called with the bytes or rows done so far


class FileProblem(Exception):
    """The file as a whole cannot be read. The message is one line for the operator."""


@dataclass(frozen=True)
class Record:
    row: int  # as a spreadsheet numbers it: the header is row 1
    cells: list[str]


@dataclass
class Table:
    """An opened import file: its header, then its records one at a time."""

    header: list[str]
    records: Iterator[Record]
    encoding: str  # "xlsx" for spreadsheets
    size: int  # bytes (CSV) or rows (XLSX, 0 if unknown): the total for progress


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_table(path: Path, progress: Progress | None = None) -> Table:
    """Open ``path`` (CSV or XLSX) and read its header; :class:`FileProblem` if unreadable."""
    try:
        with path.open("rb") as handle:
            head = handle.read(SAMPLE_SIZE)
    except FileNotFoundError:
        raise FileProblem(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileProblem(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise FileProblem(f"{path}: cannot be read ({exc.strerror})") from None
    if not head:
        raise FileProblem(f"{path}: the file is empty")
    if is_workbook(path, head):
        return _open_xlsx(path, progress)
    return _open_csv(path, head, progress)


def is_workbook(path: Path, head: bytes | None = None) -> bool:
    """Whether ``path`` is read as a workbook: a zip archive whatever its name, or named
    ``.xlsx``/``.xlsm``. ``head``: its first bytes, if read already."""
    if head is None:
        try:
            with path.open("rb") as handle:
                head = handle.read(len(_XLSX_MAGIC))
        except OSError:
            head = b""
    return head.startswith(_XLSX_MAGIC) or path.suffix.lower() in (".xlsx", ".xlsm")


def detect_encoding(head: bytes, *, complete: bool) -> str:
    """The encoding of a CSV file from its first bytes (``complete``: that is all of it)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" in head:
        raise FileProblem("the file is not text: it holds NUL bytes (binary, or UTF-16 "
                          "without a byte-order mark); save it as CSV in UTF-8 or GBK")
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)("strict").decode(head, final=complete)
        except UnicodeDecodeError:
            continue
        return encoding
    raise FileProblem("the file is neither UTF-8 nor GBK/GB18030 text; save it as CSV in UTF-8")


def _delimiter(header_line: str) -> str:
    return max((",", "\t", ";"), key=header_line.count)


def _open_csv(path: Path, head: bytes, progress: Progress | None) -> Table:
    size = path.stat().st_size
    encoding = detect_encoding(head, complete=size <= len(head))
    raw = path.open("rb")
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    csv.field_size_limit(_MAX_FIELD)
    try:
        first = text.readline()
        reader = csv.reader(_chain(first, text), delimiter=_delimiter(first))
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        text.close()
        raise FileProblem(f"{path}: the header line cannot be read ({exc})") from None
    if not header or not any(cell.strip() for cell in header):
        text.close()
        raise FileProblem(f"{path}: the first line must be the column headers")
    if _NUL in "".join(header):
        text.close()
        raise FileProblem(f"{path}: row 1: {_NUL_PROBLEM}")
    return Table([cell.strip() for cell in header],
                 _csv_records(reader, text, raw, path, encoding, progress), encoding, size)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _csv_records(
    reader: Iterator[list[str]], text: IO[str], raw: IO[bytes], path: Path, encoding: str,
    progress: Progress | None,
) -> Iterator[Record]:
    row = 1
    try:
        for cells in reader:
            row += 1
            if progress and row % 1000 == 0:
                progress(raw.tell())
            if any(map(str.strip, cells)):
                if _NUL in "".join(cells):
                    raise FileProblem(f"{path}: row {row}: {_NUL_PROBLEM}")
                yield Record(row, cells)
        if progress:
            progress(raw.tell())
    except UnicodeDecodeError:
        raise FileProblem(f"{path}: near row {row + 1} (byte {raw.tell()}) the text is not "
                          f"valid {encoding} (does the file mix encodings?); save it again "
                          "as CSV in UTF-8") from None
    except csv.Error as exc:
        raise FileProblem(f"{path}: row {row + 1}: {exc}") from None
    finally:
        text.close()


def cell_text(value: object) -> str:
    """An XLSX cell as the text a person sees in it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _damaged(path: Path, exc: BaseException, where: str = "") -> FileProblem:
    detail = (str(exc).splitlines() or [""])[0].strip() or type(exc).__name__
    return FileProblem(f"{path}: {where}not a readable XLSX workbook ({detail}); open it in "
                       "Excel and save it again, or save it as CSV in UTF-8")


def _open_xlsx(path: Path, progress: Progress | None) -> Table:
    from openpyxl import load_workbook

    handle = path.open("rb")  # a file, not a name: openpyxl refuses names not ending in .xlsx
    try:
        workbook = load_workbook(handle, read_only=True, data_only=True)
    except DAMAGED_XLSX as exc:
        handle.close()
        raise _damaged(path, exc) from None

    def close() -> None:
        workbook.close()
        handle.close()

    try:
        if not workbook.worksheets:
            raise _damaged(path, LookupError("it has no worksheet"))
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
        size = sheet.max_row or 0
    except FileProblem:
        close()
        raise
    except DAMAGED_XLSX as exc:
        close()
        raise _damaged(path, exc) from None
    if not header or not any(cell is not None for cell in header):
        close()
        raise FileProblem(f"{path}: the first row must be the column headers")
    cells = [cell_text(c).strip() for c in header]
    while cells and not cells[-1]:
        cells.pop()
    return Table(cells, _xlsx_records(rows, path, close, progress), "xlsx", size)


def _xlsx_records(rows: Iterator[tuple], path: Path, close: Callable[[], None],
                  progress: Progress | None) -> Iterator[Record]:
    number = 1
    try:
        for number, values in enumerate(rows, start=2):
            cells = [cell_text(v) for v in values]
            if progress and number % 1000 == 0:
                progress(number)
            if any(map(str.strip, cells)):
                yield Record(number, cells)
    except DAMAGED_XLSX as exc:
        raise _damaged(path, exc, f"after row {number}: ") from None
    finally:
        close()
