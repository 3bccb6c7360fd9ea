"""An external peer: the scim2-cli command line against a live server, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.db import Database
from core.settings import Settings
from core.store import Store
from tests.directory.scim.conftest import EDU, Tokens
from tests.directory.scim.live import live_server


def _scim2() -> str:
    return shutil.which("scim2") or str(Path(sys.executable).parent / "scim2")


def test_scim2_cli_creates_and_queries_a_user(
    settings: Settings, db: Database, store: Store, tokens: Tokens
) -> None:
    with live_server(settings, db, store) as issuer:
        # The token goes through the environment, not the command line (others can read argv).
        env = {**os.environ, "SCIM_CLI_HEADERS": f"Authorization: Bearer {tokens.school}"}
        base = [_scim2(), "--url", f"{issuer}/scim/v2"]

        def run(*args: str, stdin: str | None = None) -> dict:
            done = subprocess.run([*base, *args], input=stdin, capture_output=True, text=True,
                                  env=env, timeout=60, check=False)
            assert done.returncode == 0, done.stderr + done.stdout
            return json.loads(done.stdout)

        user = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EDU],
                "userName": "cli-user", "name": {"formatted": "命令行"},
                EDU: {"schoolCode": "T-S1", "class": "T-S1-G1-1", "roles": ["student"]}}
        created = run("create", "user", stdin=json.dumps(user))
        assert created["userName"] == "cli-user"
        listed = run("query", "user", "--filter", 'userName eq "cli-user"')
        assert listed["totalResults"] == 1
        assert listed["Resources"][0][EDU]["class"] == "T-S1-G1-1"
        fetched = run("query", "user", created["id"])
        assert fetched["id"] == created["id"]
