"""Bulk import of schools, classes, students, teachers and guardians (``idp import``).

The steps of a run, each in its own module:

``lock``        one writing run at a time (advisory lock / SQLite write lock)
``formats``     read CSV (UTF-8, GBK/GB18030, ...) or XLSX, streaming
``columns``     the columns of each kind, Chinese aliases, kind detection
``rows``        check each row on its own; errors in plain words, PII masked
``workers``     check rows, blind-index and seal PII in worker processes, in order
``ledger``      keys seen so far (duplicates, snapshot coverage), on disk
``lookups``     batch queries: what a chunk of rows refers to
``recall``      guardians as earlier chunks planned them (a dry run writes nothing)
``units``       org units by code; bulk creation
``plan``        the diff of a chunk, as operations
``apply``       write a chunk's operations with bulk statements
``snapshot``    deactivate people missing from a full snapshot
``diff``        counts and examples of what changes
``error_file``  the CSV of row errors
``runs``        the ``ImportRun`` record
``pipeline``    one run: the ordered steps, the transaction, the record

The operator's guide is ``docs/import.md``.
"""

from directory.importer.columns import Kind
from directory.importer.formats import FileProblem
from directory.importer.lock import ImportBusy
from directory.importer.pipeline import ImportOptions, ImportResult, import_file

__all__ = ["FileProblem", "ImportBusy", "ImportOptions", "ImportResult", "Kind", "import_file"]
