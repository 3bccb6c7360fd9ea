"""CPU time of processes, read from ``/proc/<pid>/stat`` (Linux): the benchmarks' one reader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

_TICKS = os.sysconf("SC_CLK_TCK")


class Stat(NamedTuple):
    pid: int
    ppid: int
    pgrp: int
    cpu: float  # seconds, user + system


def stat(pid: int) -> Stat | None:
    """The process's figures, or None once it has ended."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the name: state ppid pgrp ...
    return Stat(pid, int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / _TICKS)


def every() -> Iterator[Stat]:
    """Every live process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := stat(int(entry.name))) is not None:
            yield found
