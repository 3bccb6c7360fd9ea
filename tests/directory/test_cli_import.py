"""``idp import`` and ``idp rollover`` on the command line: exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_MASTER_KEY
from tests.directory.cityfiles import (
    CLASSES,
    SCHOOLS,
    STUDENT_HEADER,
    STUDENTS,
    csv_text,
    write,
)
from tests.idp.test_cli import idp


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {"IDP_VAR_DIR": str(tmp_path / "var"), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    assert idp("db", "upgrade", env=env).returncode == 0
    return env


@pytest.mark.parametrize(("content", "args", "message"), [
    (None, [], "error: {path}: no such file"),
    (b"\x00\x01binary", [], "error: the file is not text"),
    (b"PK\x03\x04" + b"\x00" * 100, [], "error: {path}: not a readable XLSX workbook"),
    ("学校标识码,年级\n1,2\n".encode(), ["--kind", "students"],
     "error: missing columns for students: class (班级), student_number (学号), name (姓名)"),
    (b"a,b\n1,2\n", [], "error: cannot tell what the file holds"),
    (csv_text(*STUDENTS).encode(), ["--kind", "classes"],
     "error: --kind classes does not match the headers: they are those of a students file"),
    ("学校标识码,学校名称\n1,x\n".encode(), ["--snapshot"], "error: --snapshot applies to"),
])
def test_file_problems_are_one_line(env: dict[str, str], tmp_path: Path, content: bytes | None,
                                    args: list[str], message: str) -> None:
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    result = idp("import", str(path), *args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(message.format(path=path)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_nothing_from_the_file_reaches_the_terminal_as_an_escape(env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    """A file's name and its cells are shown with control characters replaced: an escape
    sequence is a command to the operator's terminal (retitle, clear, worse); a name that
    holds one is a row error."""
    path = write(tmp_path / "in\x1b]0;owned\x07.csv", (["学校标识码", "学校名称", "[/x]"], [
        ["3100000001", "第一小学\x1b[2J"], ["3100000002", "第二小学"]]))
    result = idp("import", str(path), "--dry-run", env=env)
    assert result.returncode == 1, result.stderr  # the row error rejects the file
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
    errors = (tmp_path / "in\x1b]0;owned\x07.errors.csv").read_text(encoding="utf-8-sig")
    assert "holds a control character" in errors
    missing = idp("import", str(tmp_path / "gone\x1b[2J.csv"), env=env)
    assert missing.returncode == 2 and "\x1b" not in missing.stderr


def test_import_dry_run_apply_and_rejection(env: dict[str, str], tmp_path: Path) -> None:
    schools = write(tmp_path / "schools.csv", SCHOOLS, "gbk")
    dry = idp("import", str(schools), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "schools, gb18030, 3 rows" in dry.stdout and "dry run: nothing was written" in dry.stdout
    applied = idp("import", str(schools), env=env)
    assert applied.returncode == 0 and "applied (import run 1)" in applied.stdout
    again = idp("import", str(schools), env=env)
    assert "already imported in run 1" in again.stdout and "nothing to change" in again.stdout
    students = write(tmp_path / "students.csv", STUDENTS)  # no classes yet: every row invalid
    rejected = idp("import", str(students), "--errors", str(tmp_path / "e.csv"), env=env)
    assert rejected.returncode == 1 and "rejected: nothing was written" in rejected.stdout
    assert (tmp_path / "e.csv").exists()
    assert "138" not in (tmp_path / "e.csv").read_text(encoding="utf-8-sig")


def test_rollover_command(env: dict[str, str]) -> None:
    dry = idp("rollover", "--year", "2027", "--dry-run", env=env)
    assert dry.returncode == 0 and "promoted 0" in dry.stdout
    bad = idp("rollover", "--year", "2027", "--final-grades", "six", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --final-grades")


def test_a_snapshot_says_how_the_sessions_of_those_who_left_end(env: dict[str, str],
                                                                tmp_path: Path) -> None:
    """The import is committed before the sessions are ended: without the shared store, or
    with a Redis that does not answer, it says they end when next used, and succeeds."""
    for table in (SCHOOLS, CLASSES, STUDENTS):
        assert idp("import", str(write(tmp_path / "t.csv", table)), env=env).returncode == 0
    snapshot = write(tmp_path / "snapshot.csv", (STUDENT_HEADER, [STUDENTS[1][0]]))
    unreachable = idp("import", str(snapshot), "--snapshot",
                      env={**env, "IDP_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert unreachable.returncode == 0, unreachable.stderr
    assert "deactivated 1" in unreachable.stdout
    assert "the sessions end when next used: IDP_REDIS_URL: Redis is unreachable" in (
        unreachable.stderr)
    back = idp("import", str(write(tmp_path / "all.csv", STUDENTS)), env=env)
    assert back.returncode == 0 and "moved 1" in back.stdout  # S002 placed again
    alone = idp("import", str(snapshot), "--snapshot", env=env)
    assert alone.returncode == 0 and "the sessions end when next used (without IDP_REDIS_URL" \
        in alone.stderr


def test_a_worker_that_dies_ends_in_one_line(env: dict[str, str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A process checking rows killed (the OOM killer, say): the run rolls back and is
    recorded as failed (``import_file``), and the command says so in one line, exit 2."""
    from concurrent.futures.process import BrokenProcessPool

    from typer.testing import CliRunner

    from idp import cli_directory
    from idp.cli import app

    def killed(*_args: object, **_kwargs: object) -> None:
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli_directory, "import_file", killed)
    result = CliRunner().invoke(app, ["import", str(write(tmp_path / "s.csv", SCHOOLS))])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "ended unexpectedly" in result.output and "Traceback" not in result.output
