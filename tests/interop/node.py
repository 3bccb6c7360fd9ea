"""Run the node peers of tests/interop (installed by scripts/install-peers.sh, or here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

INTEROP_DIR = Path(__file__).resolve().parent
PACKAGES = ("sm-crypto", "jose", "openid-client", "oauth4webapi")


def ensure_node_peers() -> str:
    """Path of ``node``, after installing the pinned packages if any is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the npm interop peers need it")
    if not all((INTEROP_DIR / "node_modules" / p).is_dir() for p in PACKAGES):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("node is installed but npm is not; cannot install tests/interop peers")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=INTEROP_DIR, check=True,
                       timeout=300, capture_output=True)
    return node


def run_json(script: str, *args: str, stdin: Any = None, timeout: float = 60) -> Any:
    """Run ``node script args...`` (optionally with JSON on stdin); parse its JSON output."""
    node = ensure_node_peers()
    result = subprocess.run(
        [node, str(INTEROP_DIR / script), *args],
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"node {script} failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout)
