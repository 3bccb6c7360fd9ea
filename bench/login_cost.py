"""What one complete login costs the service, argon2id apart: one browser, one worker.

    .venv/bin/python bench/login_cost.py [--logins 60]

Sets up like ``bench/oidc.py`` (fresh PostgreSQL database, Redis prefix, ``idp demo``),
serves with ``idp serve --workers 1``, signs in ``--logins`` times one after the other
through the real login form (the authorization code flow with PKCE and the token
exchange), and prints the server's CPU per login, one argon2id verification's CPU measured
in this process in the same minute, the server's own hashing CPU (its
``idp_password_hash_cpu_seconds`` metric), the rest, and the mean latency of each route from
the server's own ``/metrics``. Sequential on purpose: no contention, so the difference is
what the Python around the password check costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx
from argon2 import PasswordHasher

sys.path.insert(0, str(Path(__file__).parent))
import oidc as bench  # the sibling benchmark's setup helpers

METRIC = re.compile(r'idp_http_request_duration_seconds_(sum|count)\{(.*)\} (\S+)')


def argon2_cpu(samples: int = 20) -> float:
    hasher = PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1)
    digest = hasher.hash("x" * 12)
    began = time.process_time()
    for _ in range(samples):
        hasher.verify(digest, "x" * 12)
    return (time.process_time() - began) / samples


def hashing_cpu(base: str, pgid: int) -> float:
    """The one worker's CPU seconds in password hashing so far (``bench.hashing_cpu``)."""
    found = bench.hashing_cpu(base, pgid, workers=1)
    if found is None:  # without it "the rest" would silently include the hashing
        raise SystemExit("the server's /metrics has no idp_password_hash_cpu_seconds_total")
    return found


def route_latencies(base: str) -> list[str]:
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for match in METRIC.finditer(httpx.get(base + "/metrics").text):
        (sums if match[1] == "sum" else counts)[match[2]] = float(match[3])
    return [f"  {sums[k] / counts[k] * 1000:7.2f} ms  x{counts[k]:.0f}  {k}"
            for k in sums if counts.get(k) and "readyz" not in k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=60)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bench-login-"))
        port = bench.free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env.update({"IDP_VAR_DIR": str(tmp / "var"), "IDP_ISSUER": base,
                    "IDP_DATABASE_URL": bench.create_database(stack, args.database_url),
                    "IDP_REDIS_URL": args.redis_url, "IDP_LOG_LEVEL": "WARNING",
                    "IDP_STORE_PREFIX": bench.redis_prefix(stack, args.redis_url)})
        idp = str(Path(sys.executable).parent / "idp")
        bench.run([idp, "db", "upgrade"], env)
        bench.run([idp, "demo"], env)
        demo = json.loads((tmp / "var" / "demo.json").read_text())
        client = next(c for c in demo["clients"] if c["client_id"] == "demo-sm2")
        server = bench.start_server(stack, "idp", [idp, "serve", "--workers", "1", "--port",
                                                   str(port)], env, tmp)
        bench.wait_ready(server, base + "/readyz")
        students = [u for u in demo["users"] if "student" in u.get("roles", [])]
        redirect_uri = next(u for u in client["redirect_uris"] if not u.startswith(base))
        flow = bench.LoginFlow(base, client, redirect_uri)
        with httpx.Client(base_url=base, timeout=60) as browser:
            for n in range(5):  # warm-up: connections, caches, compiled statements
                flow.login(browser, students[n % len(students)])
            pgid = server.process.pid
            before = bench.group_cpu_seconds(pgid), hashing_cpu(base, pgid)
            browser_began = time.process_time()
            for n in range(args.logins):
                flow.login(browser, students[n % len(students)])
            browser_cpu = (time.process_time() - browser_began) / args.logins
            per_login = (bench.group_cpu_seconds(pgid) - before[0]) / args.logins
            hashing = (hashing_cpu(base, pgid) - before[1]) / args.logins
        argon2 = argon2_cpu()
        print("\n".join(route_latencies(base)))
        print(f"server CPU per login {per_login * 1000:.1f} ms; one argon2id verification "
              f"{argon2 * 1000:.1f} ms here, {hashing * 1000:.1f} ms in the server (its "
              f"idp_password_hash_cpu_seconds); the rest {(per_login - hashing) * 1000:.1f} ms")
        print(f"the scripted browser (httpx, this process): {browser_cpu * 1000:.1f} ms of CPU "
              "per login")


if __name__ == "__main__":
    main()
