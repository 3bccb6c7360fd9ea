"""The command line: clear one-line errors and non-zero exits, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_MASTER_KEY


def idp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return subprocess.run([sys.executable, "-m", "idp.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDP_ISUER": "x"}, "error: unknown setting IDP_ISUER (did you mean IDP_ISSUER?)"),
        ({"IDP_DATABASE_URL": "nonsense"}, "error: IDP_DATABASE_URL is not a database URL"),
        ({"IDP_REDIS_URL": "redis://127.0.0.1:1/0"}, "error: IDP_REDIS_URL: Redis is unreachable"),
        ({"IDP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
         "error: the database at IDP_DATABASE_URL does not answer"),
        ({"IDP_MODE": "production"}, "error: production mode needs IDP_MASTER_KEY"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = idp("serve", env={"IDP_VAR_DIR": str(tmp_path), **env})
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_workers_need_redis(tmp_path: Path) -> None:
    result = idp("serve", "--workers", "2", env={"IDP_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2 and "needs IDP_REDIS_URL" in result.stderr


def test_upgrade_demo_verify_on_a_fresh_var(tmp_path: Path) -> None:
    env = {"IDP_VAR_DIR": str(tmp_path), "IDP_MASTER_KEY": TEST_MASTER_KEY}
    assert idp("db", "upgrade", env=env).returncode == 0
    first = idp("demo", env=env)
    assert first.returncode == 0, first.stderr
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "demo.json").stat().st_mode & 0o077 == 0
    assert idp("demo", env=env).returncode == 0
    assert json.loads((tmp_path / "demo.json").read_text()) == demo  # idempotent
    verify = idp("audit", "verify", env=env)
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout


def test_version() -> None:
    result = idp("version", env={})
    assert result.returncode == 0 and result.stdout.strip()
