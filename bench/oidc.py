"""Token-endpoint benchmark: our provider against a bare FastAPI app and node oidc-provider.

Not a test: it asserts nothing, it prints. Run from the repository root::

    .venv/bin/python bench/oidc.py [--duration 15]

Everything is measured side by side in one run on this machine (see
``docs/benchmarks.md``), so the ratios stay meaningful on a noisy machine:

* a fresh PostgreSQL database and a Redis key prefix, ``idp db upgrade`` and
  ``idp demo`` in a temporary ``IDP_VAR_DIR``, then ``idp serve --workers 2``;
* ``bench/bare_fastapi.py`` (the framework floor) and node ``oidc-provider``
  (``bench/oidc_provider/server.mjs``), each with 2 workers;
* ``wrk`` (16 connections, 2 threads, a short warm-up first) against: the bare
  POST, our ``client_credentials`` with SM2 and with RS256 access tokens, our
  introspection and userinfo, oidc-provider's ``client_credentials`` (RS256);
* complete authorization-code logins with a password (authorize, which shows the sign-in
  page; the login POST with argon2id, answered by the redirect with the code; the token
  exchange), played by ``wrk`` with ``bench/login_flow.lua`` (8 threads, one browser
  each; ``--login-driver httpx``: Python threads instead), and argon2id verifications
  alone in one process per core.

Everything it creates (servers, database, Redis keys, temporary directory) is
removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import httpx
import procstat  # bench/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = ROOT / "bench"
NODE_PROJECT = BENCH / "oidc_provider"
ADMIN_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
WORKERS = 2  # uvicorn workers / node cluster workers, for every server


# -- processes and cleanup ---------------------------------------------------------------


class Unavailable(Exception):
    """A service or tool the benchmark needs is missing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server process in its own process group (stopped as a group)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def start_server(stack: contextlib.ExitStack, name: str, command: list[str], env: dict[str, str],
                 tmp: Path, cwd: Path = ROOT) -> Server:
    log = tmp / f"{name}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, process, log)
    stack.callback(server.stop)
    return server


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group, from /proc."""
    return sum(p.cpu for p in procstat.every() if p.pgrp == pgid)


def wait_ready(server: Server, url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n"
                               + server.tail())
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s at {url}:\n"
                       + server.tail())


def run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result.stdout


def create_database(stack: contextlib.ExitStack, admin_url: str) -> str:
    """A fresh database; returns its SQLAlchemy URL. Dropped when the stack closes."""
    import psycopg

    name = f"idp_bench_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        raise Unavailable(f"PostgreSQL at {admin_url}: {error}".strip()) from None

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    admin = urlsplit(admin_url)
    return f"postgresql+psycopg://{admin.netloc}/{name}"


def redis_prefix(stack: contextlib.ExitStack, url: str) -> str:
    """A fresh key prefix; every key under it is deleted when the stack closes."""
    import redis

    prefix = f"bench-{secrets.token_hex(6)}:"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        raise Unavailable(f"Redis at {url}: {error}") from None

    def clean() -> None:
        client = redis.Redis.from_url(url)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        finally:
            client.close()

    stack.callback(clean)
    return prefix


def ensure_node_project() -> str | None:
    """``npm ci`` in bench/oidc_provider when needed; why node cannot run, else None."""
    if not shutil.which("node"):
        return "node is not installed"
    modules = NODE_PROJECT / "node_modules"
    lock = NODE_PROJECT / "package-lock.json"
    if modules.is_dir() and modules.stat().st_mtime >= lock.stat().st_mtime:
        return None
    if not shutil.which("npm"):
        return "npm is not installed"
    print("installing bench/oidc_provider (npm ci) ...", flush=True)
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                            cwd=NODE_PROJECT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"npm ci failed: {result.stderr.strip()[-500:]}"
    modules.touch()
    return None


# -- wrk -----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int = 0
    bad: int = 0  # non-2xx/3xx responses plus socket errors
    note: str = ""


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(name: str, output: str) -> Result:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        output)
    if not rps:
        return Result(name, 0.0, None, None, note="wrk printed no result: "
                      + " ".join(output.split())[-200:])
    bad = int(non2xx[1]) if non2xx else 0
    if sockets:
        bad += sum(int(sockets[i]) for i in range(1, 5))
    return Result(name, float(rps[1]), _ms(p50[1]) if p50 else None,
                  _ms(p99[1]) if p99 else None, int(total[1]) if total else 0, bad)


def lua_script(tmp: Path, slug: str, method: str, headers: dict[str, str],
               body: str | None = None) -> Path:
    def lua(value: str) -> str:
        return json.dumps(value)  # a JSON string literal is a valid Lua string literal here

    lines = [f"wrk.method = {lua(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {lua(body)}")
    lines += [f"wrk.headers[{lua(k)}] = {lua(v)}" for k, v in headers.items()]
    path = tmp / f"{slug}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Target:
    name: str
    url: str
    script: Path


def run_wrk(target: Target, args: argparse.Namespace) -> Result:
    base = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-s",
            str(target.script)]
    if args.warmup > 0:
        subprocess.run([*base, "-d", f"{args.warmup}s", target.url], capture_output=True,
                       check=False)
    result = subprocess.run([*base, "-d", f"{args.duration}s", "--latency", target.url],
                            capture_output=True, text=True, check=False)
    return parse_wrk(target.name, result.stdout + result.stderr)


# -- our provider: tokens and checks --------------------------------------------------------


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 2.3.1: each part form-urlencoded, then Base64."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def client_auth(client: dict, body: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, body) authenticating ``client`` by its registered method."""
    if client.get("token_endpoint_auth_method") == "client_secret_post":
        return {}, {**body, "client_id": client["client_id"],
                    "client_secret": client["client_secret"]}
    return {"Authorization": basic(client["client_id"], client["client_secret"])}, body


def jwt_alg(token: str) -> str:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("alg", "?")


FORM = "application/x-www-form-urlencoded"


def check(name: str, response: httpx.Response, ok: bool, detail: str) -> None:
    status = "ok" if ok and response.status_code == 200 else "UNEXPECTED"
    print(f"  check {name}: HTTP {response.status_code}, {detail} [{status}]", flush=True)
    if status != "ok":
        print(f"    body: {response.text[:300]}", flush=True)


def client_credentials_target(tmp: Path, base: str, client: dict, label: str) -> Target:
    headers, body = client_auth(client, {"grant_type": "client_credentials"})
    response = httpx.post(base + "/oauth2/token", data=body, headers=headers)
    token = response.json().get("access_token", "") if response.status_code == 200 else ""
    check(label, response, bool(token), f"access token alg {jwt_alg(token) if token else '-'}")
    script = lua_script(tmp, label.replace(" ", "_"), "POST",
                        {"Content-Type": FORM, **headers}, urlencode(body))
    return Target(label, base + "/oauth2/token", script)


def introspection_target(tmp: Path, base: str, client: dict) -> Target:
    headers, body = client_auth(client, {"grant_type": "client_credentials"})
    token = httpx.post(base + "/oauth2/token", data=body, headers=headers).json()["access_token"]
    headers, body = client_auth(client, {"token": token})
    response = httpx.post(base + "/oauth2/introspect", data=body, headers=headers)
    active = response.status_code == 200 and response.json().get("active") is True
    check("introspection", response, active, f"active={active}, token alg {jwt_alg(token)}")
    script = lua_script(tmp, "introspect", "POST", {"Content-Type": FORM, **headers},
                        urlencode(body))
    return Target("ours introspection (SM2 JWT)", base + "/oauth2/introspect", script)


def userinfo_target(tmp: Path, base: str, client: dict, user: dict, redirect_uri: str) -> Target:
    with httpx.Client(base_url=base, timeout=30) as browser:
        tokens = LoginFlow(base, client, redirect_uri, "openid profile edu").login(
            browser, user)
    token = tokens["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.get(base + "/oauth2/userinfo", headers=headers)
    sub = response.json().get("sub") if response.status_code == 200 else None
    check("userinfo", response, bool(sub), f"sub present={bool(sub)}, token alg {jwt_alg(token)}")
    script = lua_script(tmp, "userinfo", "GET", headers)
    return Target("ours userinfo (SM2 user token)", base + "/oauth2/userinfo", script)


# -- complete logins --------------------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
IA_INPUT = re.compile(r'<input type="hidden" name="ia" value="([^"]*)"')


class LoginError(Exception):
    pass


@dataclass
class LoginFlow:
    """One person signing in through a browser, scripted: the authorization code flow."""

    base: str
    client: dict
    redirect_uri: str
    scope: str = "openid profile"

    def _follow(self, browser: httpx.Client, response: httpx.Response) -> httpx.Response:
        """Follow our own redirects; stop at the client's redirect URI (never fetched)."""
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(self.redirect_uri):
                return response
            response = browser.get(location)
        raise LoginError("too many redirects")

    def login(self, browser: httpx.Client, user: dict) -> dict:
        browser.cookies.clear()  # a new browser: no SSO session yet
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        state = secrets.token_urlsafe(12)
        page = self._follow(browser, browser.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": self.client["client_id"],
            "redirect_uri": self.redirect_uri, "scope": self.scope, "state": state,
            "nonce": secrets.token_urlsafe(12), "code_challenge": challenge,
            "code_challenge_method": "S256",
        }))
        csrf = CSRF_INPUT.search(page.text)
        ia_field = IA_INPUT.search(page.text)  # the authorization endpoint shows the page
        ia = ia_field[1] if ia_field else ""
        if page.status_code != 200 or not csrf or not ia:
            raise LoginError(f"no login form (HTTP {page.status_code} at {page.url})")
        done = self._follow(browser, browser.post("/login", data={
            "csrf_token": csrf[1], "ia": ia, "login": user["login"],
            "password": user["password"],
        }))
        location = done.headers.get("location", "")
        query = parse_qs(urlsplit(location).query)
        if not location.startswith(self.redirect_uri) or "code" not in query:
            raise LoginError(f"no code (HTTP {done.status_code}, location {location[:120]!r})")
        if query.get("state") != [state]:
            raise LoginError("state mismatch")
        headers, body = client_auth(self.client, {
            "grant_type": "authorization_code", "code": query["code"][0],
            "redirect_uri": self.redirect_uri, "code_verifier": verifier,
        })
        response = browser.post("/oauth2/token", data=body, headers=headers)
        if response.status_code != 200 or "id_token" not in response.json():
            raise LoginError(f"token exchange: HTTP {response.status_code} {response.text[:200]}")
        return response.json()


@dataclass
class LoginStats:
    done: list[float] = field(default_factory=list)  # seconds per complete login
    errors: int = 0
    first_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


LOGIN_FLOW_LUA = BENCH / "login_flow.lua"
LOGINS_LINE = re.compile(r"^LOGINS ok=(\d+) failed=(\d+) seconds=([\d.]+) p50_ms=(\S+) "
                         r"p99_ms=(\S+) first_error=(.*)$", re.M)


def login_data(tmp: Path, flow: LoginFlow, users: list[dict]) -> Path:
    """The data ``bench/login_flow.lua`` reads: client, redirect URI, credentials, PKCE."""
    def lua(value: str) -> str:
        if not value.isascii():
            raise ValueError("login_flow.lua data must be ASCII (form-encode it first)")
        return json.dumps(value)

    pairs = []
    for _ in range(1024):
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        pairs.append(f"{{{lua(verifier)}, {lua(challenge)}}}")
    credentials = [f"{{{lua(quote(u['login'], safe=''))}, {lua(quote(u['password'], safe=''))}}}"
                   for u in users]
    authorization = client_auth(flow.client, {})[0].get("Authorization", "")
    if not authorization:
        raise Unavailable("the login driver authenticates the client with HTTP Basic only")
    path = tmp / "login_data.lua"
    path.write_text(
        f"return {{client_id = {lua(flow.client['client_id'])}, "
        f"redirect_uri = {lua(flow.redirect_uri)}, scope = {lua(flow.scope)}, "
        f"authorization = {lua(authorization)},\n"
        f"users = {{{', '.join(credentials)}}},\n"
        f"pkce = {{{', '.join(pairs)}}}}}\n")
    return path


def wrk_login_benchmark(meter: MachineCpu, flow: LoginFlow, users: list[dict],
                        args: argparse.Namespace, tmp: Path) -> Result:
    """Scripted browsers in wrk (``bench/login_flow.lua``), one connection per thread; the
    measured run (not the warm-up) is ``meter``'s window."""
    data = login_data(tmp, flow, users)
    command = ["wrk", "-t", str(args.login_workers), "-c", str(args.login_workers), "-s",
               str(LOGIN_FLOW_LUA)]
    if args.warmup > 0:
        subprocess.run([*command, "-d", f"{args.warmup}s", flow.base, "--", str(data)],
                       capture_output=True, check=False)
        # wrk stops mid-login: let the server finish the sign-ins it was left with, or the
        # same students' next attempts meet them (one password check at a time: 429)
        time.sleep(2)
    meter.start()
    output = subprocess.run([*command, "-d", f"{args.duration}s", flow.base, "--", str(data)],
                            capture_output=True, text=True, check=False)
    meter.stop()
    name = f"complete logins ({args.login_workers} wrk browsers)"
    found = LOGINS_LINE.search(output.stdout)
    if found is None:
        return Result(name, 0.0, None, None, note="wrk printed no LOGINS line: " + " ".join(
            (output.stdout + output.stderr).split())[-200:])
    ok, failed, elapsed = int(found[1]), int(found[2]), float(found[3])
    row = Result(name, ok / elapsed, float(found[4]), float(found[5]), ok, failed)
    if failed:
        row.note = f"{failed} failed logins, first: {found[6]}"
    return row


def login_benchmark(meter: MachineCpu, flow: LoginFlow, users: list[dict], workers: int,
                    seconds: float) -> tuple[Result, LoginStats]:
    """Scripted browsers in Python (``--login-driver httpx``): threads of this process. The
    measured run is ``meter``'s window: it opens once every browser has warmed up."""
    stats = LoginStats()
    start = threading.Barrier(workers + 1, action=meter.start)
    stop = threading.Event()

    def worker(index: int) -> None:
        with httpx.Client(base_url=flow.base, timeout=60) as browser:
            n = index
            with contextlib.suppress(LoginError, httpx.HTTPError):
                flow.login(browser, users[n % len(users)])  # warm-up: connection, caches
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait()
            while not stop.is_set():
                n += workers
                began = time.perf_counter()
                try:
                    flow.login(browser, users[n % len(users)])
                except (LoginError, httpx.HTTPError, ValueError) as error:
                    with stats.lock:
                        stats.errors += 1
                        stats.first_error = stats.first_error or f"{type(error).__name__}: {error}"
                    continue
                elapsed = time.perf_counter() - began
                if not stop.is_set():
                    with stats.lock:
                        stats.done.append(elapsed)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    try:
        start.wait(timeout=120)
        began = time.perf_counter()
        time.sleep(seconds)
        meter.stop()
    finally:
        stop.set()
        start.abort()
    elapsed = time.perf_counter() - began
    for thread in threads:
        thread.join(timeout=60)
    with stats.lock:
        durations = sorted(stats.done)
    rate = len(durations) / elapsed
    p50 = durations[len(durations) // 2] * 1000 if durations else None
    p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))] * 1000 \
        if durations else None
    result = Result(f"complete logins ({workers} concurrent browsers)", rate, p50, p99,
                    len(durations), stats.errors)
    return result, stats


def _argon2_worker(start_at: float, seconds: float, queue: multiprocessing.Queue) -> None:
    from core.passwords import Passwords

    hasher = Passwords("argon2id")
    stored = hasher.hash("correct horse battery")
    hasher.verify(stored, "correct horse battery")
    time.sleep(max(0.0, start_at - time.time()))
    count, began = 0, time.perf_counter()
    while True:
        hasher.verify(stored, "correct horse battery")
        count += 1
        now = time.perf_counter()
        if now - began >= seconds:
            break
    queue.put(count / (now - began))


def argon2_benchmark(processes: int, seconds: float) -> float:
    """argon2id verifications per second on the whole machine, ``processes`` in parallel."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start_at = time.time() + 1.0
    children = [context.Process(target=_argon2_worker, args=(start_at, seconds, queue))
                for _ in range(processes)]
    for child in children:
        child.start()
    try:
        rates = [queue.get(timeout=seconds + 120) for _ in children]
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
    return sum(rates)


# -- what a login costs the whole machine ---------------------------------------------------


PARTS = {"postgres": "postgres", "redis-server": "redis"}  # process name: part
HASH_CPU = re.compile(r"^idp_password_hash_cpu_seconds_total (\S+)$", re.M)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # ended
        return ""


def busy_cpu_seconds() -> float:
    """The whole machine's busy CPU seconds since boot: the ``cpu`` line of /proc/stat but
    idle and iowait (and guest, guest_nice: already counted in user and nice)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pgid: int) -> dict[tuple[str, int], float]:
    """CPU seconds so far by (part, pid): the identity service (its process group),
    PostgreSQL and Redis (by process name), the load generator (wrk: this process's
    finished children; httpx: this process) and the whole machine's busy time."""
    snapshot = {}
    for process in procstat.every():
        part = "service" if process.pgrp == pgid else PARTS.get(_comm(process.pid))
        if part:
            snapshot[part, process.pid] = process.cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    snapshot["wrk", 0] = children.ru_utime + children.ru_stime
    snapshot["httpx", 0] = time.process_time()
    snapshot["busy", 0] = busy_cpu_seconds()
    return snapshot


def cpu_spent(before: dict[tuple[str, int], float],
              after: dict[tuple[str, int], float]) -> dict[str, float]:
    """CPU seconds per part between two snapshots. A process that started in between counts
    from 0; one that ended in between is lost with its CPU (/proc forgets it), which is why
    wrk, gone before the second snapshot, is read from its parent's rusage instead."""
    spent: dict[str, float] = defaultdict(float)
    for (part, pid), seconds in after.items():
        spent[part] += seconds - before.get((part, pid), 0.0)
    return spent


def socket_owner(pgid: int, peer_port: int) -> int | None:
    """The process of group ``pgid`` holding the TCP socket connected to our local port
    ``peer_port`` (/proc/net/tcp gives the socket's inode, /proc/<pid>/fd its holder)."""
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    sockets = {f"socket:[{row[9]}]" for row in rows if int(row[2].split(":")[1], 16) == peer_port}
    for process in procstat.every():
        if process.pgrp == pgid:
            with contextlib.suppress(OSError):
                fds = Path(f"/proc/{process.pid}/fd").iterdir()
                if any(os.readlink(fd) in sockets for fd in fds):
                    return process.pid
    return None


def hashing_cpu(base: str, pgid: int, workers: int = WORKERS,
                tries: int = 100) -> float | None:
    """The service's CPU seconds in password hashing so far, all workers together (their
    ``idp_password_hash_cpu_seconds`` metric), or None without it. ``/metrics`` answers
    for the one worker that accepted the connection: new connections until every worker
    has answered, each told apart by the process holding the server end."""
    seen: dict[int, float] = {}
    for _ in range(tries):
        with httpx.Client() as client:
            response = client.get(base + "/metrics")
            stream = response.extensions["network_stream"]
            worker = socket_owner(pgid, stream.get_extra_info("socket").getsockname()[1])
        if (found := HASH_CPU.search(response.text)) is None:
            return None
        if worker is not None:
            seen[worker] = float(found[1])
        if len(seen) == workers:
            return sum(seen.values())
    return None


class MachineCpu:
    """Whole-machine CPU seconds per part from :meth:`start` to :meth:`stop`, and the
    service's own argon2id seconds ("argon2id", None without its metric): what a login
    costs everyone on these cores, not only the service."""

    def __init__(self, server: Server, base: str) -> None:
        self.pgid, self.base = server.process.pid, base
        self.spent: dict[str, float | None] = {}

    def start(self) -> None:
        self.hashing = hashing_cpu(self.base, self.pgid)  # its requests before the window
        self.before = cpu_snapshot(self.pgid)

    def stop(self) -> dict[str, float | None]:
        self.spent = dict(cpu_spent(self.before, cpu_snapshot(self.pgid)))
        hashing = hashing_cpu(self.base, self.pgid)  # and after it
        self.spent["argon2id"] = None if None in (hashing, self.hashing) else hashing - self.hashing
        return self.spent


# -- output ---------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def print_table(rows: list[Result]) -> None:
    print()
    print(f"{'name':<48} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'requests':>9} {'bad':>6}")
    for row in rows:
        rps = "-" if row.note and not row.rps else f"{row.rps:,.1f}"
        print(f"{row.name:<48} {rps:>10} {fmt_ms(row.p50_ms):>9} {fmt_ms(row.p99_ms):>9} "
              f"{row.requests:>9,} {row.bad:>6,}")
        if row.note:
            print(f"    {row.note}")


def ratio(label: str, top: float | None, bottom: float | None) -> None:
    value = f"{top / bottom:.2f}" if top and bottom else "-"
    print(f"  {label:<62} {value:>6}")


def print_machine_cpu(spent: dict[str, float | None], logins: int, driver: str, cores: int,
                      rate: float, argon2: float | None) -> None:
    """The measured logins' CPU per login on the whole machine, part by part, and the ratio
    the other parts leave room for: logins per core over argon2id per core if the service
    spent nothing but its verifications (``argon2``: one verification's CPU seconds, from
    the "argon2id alone" processes)."""
    def ms(seconds: float | None) -> str:
        return fmt_ms(None if seconds is None else 1000 * seconds / logins)

    service, busy = spent.get("service", 0.0), spent.get("busy", 0.0)
    others = [spent.get("postgres", 0.0), spent.get("redis", 0.0), spent.get(driver, 0.0)]
    rest = busy - service - sum(others)
    print("whole-machine CPU per login during the measured logins, ms")
    for label, seconds in (("identity service", service),
                           ("  of which argon2id (its idp_password_hash_cpu_seconds)",
                            spent.get("argon2id")),
                           ("PostgreSQL", others[0]), ("Redis", others[1]),
                           (f"load generator ({driver})", others[2]),
                           ("rest of the machine", rest), ("total busy", busy)):
        print(f"  {label:<62} {ms(seconds):>6}")
    print(f"  {f'({cores} cores / logins per second: total busy if saturated)':<62} "
          f"{fmt_ms(1000 * cores / rate if rate else None):>6}")
    ceiling = argon2 / (argon2 + (sum(others) + rest) / logins) if argon2 else None
    print(f"  ceiling: logins per core / argon2id per core if the service did nothing but "
          f"argon2id: {'-' if ceiling is None else f'{ceiling:.2f}'}")


def median_result(results: list[Result]) -> Result:
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


# -- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="wrk warm-up seconds per target")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the wrk targets; the round with the median req/s is shown")
    parser.add_argument("--login-workers", type=int, default=8,
                        help="concurrent scripted browsers in the login benchmark")
    parser.add_argument("--logins-only", action="store_true",
                        help="measure only the logins and argon2id (no other wrk target)")
    parser.add_argument("--login-driver", choices=("wrk", "httpx"), default="wrk",
                        help="who plays the browsers: wrk running bench/login_flow.lua "
                             "(default: little CPU of its own) or Python httpx threads")
    parser.add_argument("--database-url", default=ADMIN_DATABASE_URL,
                        help="PostgreSQL server (a database is created and dropped there)")
    parser.add_argument("--redis-url", default=REDIS_URL,
                        help="Redis (keys under a random prefix, deleted at the end)")
    return parser.parse_args()


def _raise_interrupt(signum: int, _frame: object) -> None:
    for name in ("SIGTERM", "SIGHUP"):  # a second signal must not cut the cleanup short
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args = parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (Debian: apt-get install wrk, or scripts/install-peers.sh)",
              file=sys.stderr)
        return 2
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _raise_interrupt)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    print(f"bench/oidc.py: {cores} cores, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s (warm-up {args.warmup}s), {WORKERS} workers per server, "
          f"{args.rounds} round(s)", flush=True)
    print(f"load average before: {load_average()}", flush=True)
    try:
        with contextlib.ExitStack() as stack:
            return measure(stack, args, cores)
    except KeyboardInterrupt:
        print("\ninterrupted; everything cleaned up", file=sys.stderr)
        return 130
    except Unavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "-"


def measure(stack: contextlib.ExitStack, args: argparse.Namespace, cores: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-oidc-"))
    stack.callback(shutil.rmtree, tmp, ignore_errors=True)
    node_problem = "--logins-only" if args.logins_only else ensure_node_project()

    port, bare_port, node_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    # IDP_PASSWORD_HASH_CONCURRENCY passes through, to compare hashing bounds side by side.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IDP_") or k == "IDP_PASSWORD_HASH_CONCURRENCY"}
    env.update({
        "IDP_VAR_DIR": str(tmp / "var"),
        "IDP_DATABASE_URL": create_database(stack, args.database_url),
        "IDP_REDIS_URL": args.redis_url, "IDP_STORE_PREFIX": redis_prefix(stack, args.redis_url),
        "IDP_ISSUER": base, "IDP_LOG_LEVEL": "WARNING",
    })
    idp = str(Path(sys.executable).parent / "idp")
    print("setting up: database, demo city ...", flush=True)
    run([idp, "db", "upgrade"], env)
    run([idp, "demo"], env)
    demo = json.loads((tmp / "var" / "demo.json").read_text())
    clients = {c["client_id"]: c for c in demo["clients"]}

    print("starting servers ...", flush=True)
    ours = start_server(stack, "idp", [idp, "serve", "--workers", str(WORKERS), "--port",
                                       str(port)], env, tmp)
    bare = start_server(stack, "bare_fastapi", [sys.executable, str(BENCH / "bare_fastapi.py"),
                                                "--port", str(bare_port), "--workers",
                                                str(WORKERS)], env, tmp)
    node_secret = secrets.token_urlsafe(24)
    node = None
    if node_problem is None:
        node = start_server(stack, "oidc_provider", [
            "node", "server.mjs", "--port", str(node_port), "--workers", str(WORKERS),
            # "=": a random secret may begin with "-", which node's parseArgs would take
            # for an option
            "--client-id", "bench", f"--client-secret={node_secret}",
        ], env, tmp, cwd=NODE_PROJECT)
    wait_ready(ours, base + "/readyz")
    wait_ready(bare, f"http://127.0.0.1:{bare_port}/healthz")
    if node is not None:
        wait_ready(node, f"http://127.0.0.1:{node_port}/.well-known/openid-configuration")

    print("checking every target once ...", flush=True)
    bare_target = Target("bare FastAPI POST (framework floor)",
                         f"http://127.0.0.1:{bare_port}/token",
                         lua_script(tmp, "bare", "POST", {"Content-Type": FORM},
                                    "grant_type=client_credentials"))
    sm2 = client_credentials_target(tmp, base, clients["demo-sm2"],
                                    "ours client_credentials SM2")
    rs256 = client_credentials_target(tmp, base, clients["demo-rs256"],
                                      "ours client_credentials RS256")
    introspect = introspection_target(tmp, base, clients["demo-sm2"])
    redirect_uri = next((u for u in clients["demo-sm2"]["redirect_uris"]
                         if not u.startswith(base)), clients["demo-sm2"]["redirect_uris"][0])
    # Students sign in with a password alone; teachers and administrators need a second
    # factor (mfa.policy), which a scripted browser does not have. One student of its own
    # per scripted browser (bench/students.py): the sign-in guard checks one password at
    # a time per account, and a morning is many people signing in once each.
    students = json.loads(run([sys.executable, str(ROOT / "bench" / "students.py"),
                               str(args.login_workers)], env))
    userinfo = userinfo_target(tmp, base, clients["demo-sm2"], students[0], redirect_uri)
    response = httpx.post(bare_target.url, data={"grant_type": "client_credentials"})
    check("bare FastAPI", response, "access_token" in response.text, "small JSON")
    targets = [bare_target, sm2, rs256, introspect, userinfo]
    node_target = None
    if node is not None:
        node_client = {"client_id": "bench", "client_secret": node_secret,
                       "token_endpoint_auth_method": "client_secret_basic"}
        node_base = f"http://127.0.0.1:{node_port}"
        headers, body = client_auth(node_client, {"grant_type": "client_credentials",
                                                  "scope": "api"})
        response = httpx.post(node_base + "/token", data=body, headers=headers)
        token = response.json().get("access_token", "") if response.status_code == 200 else ""
        check("oidc-provider client_credentials", response, bool(token),
              f"access token alg {jwt_alg(token) if token else '-'}")
        node_target = Target("oidc-provider client_credentials RS256", node_base + "/token",
                             lua_script(tmp, "oidc_provider", "POST",
                                        {"Content-Type": FORM, **headers}, urlencode(body)))
        targets.append(node_target)

    if args.logins_only:
        targets = []
    measured: dict[str, list[Result]] = {t.name: [] for t in targets}
    for round_number in range(1, args.rounds + 1):
        for target in targets:
            print(f"wrk [{round_number}/{args.rounds}] {target.name} ...", flush=True)
            measured[target.name].append(run_wrk(target, args))
    rows = [median_result(measured[t.name]) for t in targets]
    if node is None:
        rows.append(Result("oidc-provider client_credentials RS256", 0.0, None, None,
                           note=f"skipped: {node_problem}"))

    print(f"complete logins: {args.login_workers} concurrent browsers ({args.login_driver}) "
          f"for {args.duration} s ...", flush=True)
    flow = LoginFlow(base, clients["demo-sm2"], redirect_uri)
    meter = MachineCpu(ours, base)
    if args.login_driver == "wrk":
        login_row = wrk_login_benchmark(meter, flow, students, args, tmp)
    else:
        login_row, login_stats = login_benchmark(meter, flow, students, args.login_workers,
                                                 args.duration)
        if login_stats.errors:
            login_row.note = (f"{login_stats.errors} failed logins, first: "
                              f"{login_stats.first_error}")
    rows.append(login_row)
    server_cpu = meter.spent.get("service") or 0.0

    argon2_seconds = max(3.0, args.duration / 3)
    print(f"argon2id verify alone: {cores} processes for {argon2_seconds:.0f} s ...", flush=True)
    argon2_rate = argon2_benchmark(cores, argon2_seconds)
    rows.append(Result(f"argon2id verify ({cores} processes, no server work)", argon2_rate,
                       None, None))

    print_table(rows)
    by_name = {r.name: r.rps for r in rows}
    node_rps = by_name.get("oidc-provider client_credentials RS256")
    print("\nratios (req/s over req/s)")
    ratio("ours client_credentials SM2 / oidc-provider RS256",
          by_name.get(sm2.name), node_rps)
    ratio("ours client_credentials RS256 / oidc-provider RS256",
          by_name.get(rs256.name), node_rps)
    ratio("ours client_credentials SM2 / bare FastAPI", by_name.get(sm2.name),
          by_name.get(bare_target.name))
    ratio("ours client_credentials RS256 / bare FastAPI", by_name.get(rs256.name),
          by_name.get(bare_target.name))
    logins_per_core, argon2_per_core = login_row.rps / cores, argon2_rate / cores
    print(f"\ncomplete logins per core: {logins_per_core:,.1f}/s; argon2id verifications per "
          f"core: {argon2_per_core:,.1f}/s")
    ratio("logins per core / argon2id verifications per core", logins_per_core,
          argon2_per_core)
    # The load generator (wrk or Python browsers), PostgreSQL and Redis share these cores;
    # what the identity service itself spends per login is its own CPU time per login.
    logins_done = login_row.requests
    if server_cpu > 0 and logins_done:
        per_server_core = logins_done / server_cpu
        print(f"identity service CPU: {server_cpu:.1f} s for {logins_done} logins = "
              f"{1000 * server_cpu / logins_done:.1f} ms per login, i.e. {per_server_core:.1f} "
              "logins per second per core of the service")
        ratio("logins per service core-second / argon2id verifications per core",
              per_server_core, argon2_per_core)
        print_machine_cpu(meter.spent, logins_done, args.login_driver, cores, login_row.rps,
                          cores / argon2_rate if argon2_rate else None)
    print(f"\nload average after: {load_average()} (1, 5, 15 min; {cores} cores)")
    print("\nsetting up and measuring done; cleaning up (servers, database, Redis keys) ...",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
