"""Bulk import benchmark: a synthetic city imported into PostgreSQL.

Not a test: it asserts nothing, it prints. Run from the repository root::

    .venv/bin/python bench/import.py [--scale 0.01] [--workers N] [--keep-files DIR]

Generates a deterministic city as CSV files in a temporary folder (at scale 1:
600 schools, 30,000 classes, 60,000 teachers, 1,000,000 students with national
ID and phone, one guardian per student), creates a database of its own on the
server of ``IDP_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), imports every file with
``directory.importer`` (``--workers`` worker processes, default: one per CPU beyond the first),
imports them all again (nothing changes), prints rows per second, the CPU
seconds of the main process, of its worker processes and of its PostgreSQL server
processes (when the server runs on this machine), the peak memory (``ru_maxrss``; the worker
processes are not included), and drops the database.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import secrets
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import procstat  # bench/, this script's folder
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from core import migrate
from core.db import Database
from core.settings import load_settings
from directory.importer import ImportOptions, Kind, import_file
from directory.importer.workers import default_workers
from directory.pii import national_id_check_char

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STAGES = {"primary": range(1, 7), "junior": range(7, 10), "senior": range(10, 13)}


def _national_id(n: int, born_from: date) -> str:
    region = 310101 + n % 90
    born = born_from + timedelta(days=n // 90_000)
    body = f"{region}{born:%Y%m%d}{(n // 90) % 1000:03d}"
    return body + national_id_check_char(body)


def generate(folder: Path, scale: float, seed: int = 2027) -> dict[Kind, Path]:
    """Write the five CSV files of a deterministic synthetic city; return their paths."""
    rng = random.Random(seed)
    schools = max(3, round(600 * scale))
    classes_per_school = max(3, round(30_000 * scale / schools))
    students = round(1_000_000 * scale)
    teachers = round(60_000 * scale)
    paths = {kind: folder / f"{kind.value}.csv" for kind in Kind}
    school_rows, class_codes = [], []
    for s in range(schools):
        stage = list(STAGES)[s % 3]
        code = f"31{s:08d}"
        school_rows.append([code, f"第{s + 1}学校", f"3101{s % 16:02d}", f"第{s % 16 + 1}区"])
        grades = list(STAGES[stage])
        for c in range(classes_per_school):
            class_codes.append((code, grades[c % len(grades)], c // len(grades) + 1))
    _write(paths[Kind.schools], ["学校标识码", "学校名称", "区县代码", "区县名称"], school_rows)
    _write(paths[Kind.classes], ["学校标识码", "年级", "班级"],
           ([s, g, n] for s, g, n in class_codes))
    _write(paths[Kind.teachers], ["学校标识码", "工号", "姓名", "性别", "身份证号", "手机号"], (
        [school_rows[t % schools][0], f"T{t:08d}", f"教师{t}", "女" if t % 2 else "男",
         _national_id(t, date(1970, 1, 1)), f"18{t:09d}"] for t in range(teachers)))
    _write(paths[Kind.students], ["学校标识码", "年级", "班级", "学号", "姓名", "性别", "出生日期",
                                  "身份证号", "手机号"], (
        _student(n, class_codes[rng.randrange(len(class_codes))]) for n in range(students)))
    _write(paths[Kind.guardians], ["监护人姓名", "手机号", "关系", "学号"], (
        [f"家长{n}", f"15{n:09d}", "母亲" if n % 2 else "父亲", f"S{n:09d}"]
        for n in range(students)))
    return paths


def _student(n: int, placement: tuple[str, int, int]) -> list[object]:
    school, grade, number = placement
    nid = _national_id(n, date(2010, 1, 1))
    born = f"{nid[6:10]}-{nid[10:12]}-{nid[12:14]}"
    return [school, grade, number, f"S{n:09d}", f"学生{n}", "男" if n % 2 else "女", born, nid,
            f"13{n:09d}"]


def _write(path: Path, header: list[str], rows) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _admin(url: str):
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"),
                         isolation_level="AUTOCOMMIT")


_BACKENDS: set[int] = set()


def _watch_backends(database: Database) -> None:
    """Remember the server process of each connection, to read its CPU time."""
    def connected(dbapi_connection, _record) -> None:
        _BACKENDS.add(dbapi_connection.info.backend_pid)
    event.listen(database.engine, "connect", connected)


def _server_cpu() -> float:
    """CPU seconds of this benchmark's PostgreSQL backends (a local server only)."""
    return sum(found.cpu for pid in _BACKENDS if (found := procstat.stat(pid)) is not None)


def _descendants_cpu() -> dict[int, float]:
    """CPU seconds of each process below this one (forkserver and worker processes)."""
    processes = list(procstat.every())
    mine, found = {os.getpid()}, True
    while found:
        found = {p.pid for p in processes if p.ppid in mine and p.pid not in mine}
        mine |= found
    return {p.pid: p.cpu for p in processes if p.pid in mine and p.pid != os.getpid()}


class WorkersCPU:
    """The worker processes' CPU during one import, sampled twice a second (they end
    with their pool, and the forkserver's children are not ours to ``wait`` for)."""

    def __init__(self) -> None:
        self._start, self._last = _descendants_cpu(), {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.5):
            self._last.update(_descendants_cpu())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        self._last.update(_descendants_cpu())
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _import_all(database: Database, settings, paths: dict[Kind, Path], label: str,
                workers: int | None) -> float:
    total_rows, started = 0, time.perf_counter()
    for kind in (Kind.schools, Kind.classes, Kind.teachers, Kind.students, Kind.guardians):
        t0, cpu0, server0 = time.perf_counter(), time.process_time(), _server_cpu()
        pool = WorkersCPU()
        result = import_file(database, settings, paths[kind],
                             ImportOptions(kind=kind, workers=workers))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server, pool_cpu = _server_cpu() - server0, pool.stop()
        total_rows += result.rows
        print(f"{label:9} {kind.value:9} {result.rows:>9,} rows {seconds:8.1f} s "
              f"{result.rows / seconds:>9,.0f} rows/s  {result.status:9} "
              f"{result.diff.summary()}  cpu: main {cpu:,.1f} s, workers {pool_cpu:,.1f} s, "
              f"server {server:,.1f} s  "
              f"peak {_peak_mb():,.0f} MB",
              flush=True)
    elapsed = time.perf_counter() - started
    print(f"{label:9} all       {total_rows:>9,} rows {elapsed:8.1f} s "
          f"{total_rows / elapsed:>9,.0f} rows/s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep-files", type=Path, help="Write the CSV files here and keep them.")
    parser.add_argument("--workers", type=int,
                        help="Worker processes (default: one per CPU beyond the first; 0: none).")
    parser.add_argument("--keep-database", action="store_true",
                        help="Keep the database afterwards (its name is printed), to look into.")
    parser.add_argument("--no-reimport", action="store_true",
                        help="Import once: skip the second import (nothing changes).")
    args = parser.parse_args()
    url = os.environ.get("IDP_BENCH_DATABASE_URL", DEFAULT_URL)
    folder = args.keep_files or Path(tempfile.mkdtemp(prefix="idp-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = generate(folder, args.scale)
    size = sum(p.stat().st_size for p in paths.values()) / 1e6
    print(f"generated scale {args.scale} in {time.perf_counter() - t0:.1f} s: {size:,.0f} MB "
          f"of CSV in {folder}", flush=True)
    name = f"idp_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = _admin(url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        db_url = make_url(url).set(drivername="postgresql+psycopg", database=name)
        settings = load_settings({
            "IDP_DATABASE_URL": db_url.render_as_string(hide_password=False),
            "IDP_MASTER_KEY": secrets.token_hex(32), "IDP_VAR_DIR": str(folder),
            "IDP_LOG_LEVEL": "WARNING"})
        database = Database(settings)
        _watch_backends(database)
        migrate.upgrade(database.engine)
        print(f"workers: {args.workers or default_workers()}, cpus: {os.cpu_count()}, "
              f"load average: {os.getloadavg()[0]:.1f}", flush=True)
        _import_all(database, settings, paths, "import", args.workers)
        if not args.no_reimport:
            _import_all(database, settings, paths, "re-import", args.workers)
        print(f"peak memory (ru_maxrss): {_peak_mb():,.0f} MB")
        database.dispose()
    finally:
        if args.keep_database:
            print(f"kept database {name}")
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if not args.keep_files:
            for path in paths.values():
                path.unlink(missing_ok=True)
            for leftover in folder.glob("*"):
                leftover.unlink()
            folder.rmdir()


if __name__ == "__main__":
    main()
