"""Liveness, readiness and metrics endpoints for load balancers and Prometheus.

``/healthz`` answers while the process runs. ``/readyz`` checks the database
and the store on every call, and that the master keys open the signing keys, answers 503
naming the failing dependency while one is down, and 200 again as soon as it is back
(nothing is cached but the key ring's minute). The database and the store are checked side
by side, then the signing keys, each on a thread of its own, ``PROBE_SECONDS`` in all:
a database server that stopped answering on an open connection (a stalled process while
its machine still acknowledges TCP, which no socket option notices) is "unavailable" then,
and while that check is still waiting the next calls do not start another one.
``/metrics`` is the Prometheus text format of this process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(include_in_schema=False)
log = logging.getLogger("idp.health")

PROBE_SECONDS = 3.0  # well under a load balancer's probe timeout


class ProbeTimeout(Exception):
    """A dependency's check did not answer within ``PROBE_SECONDS``."""


class _Run:
    """One check running on a daemon thread (a hung one must not hold the process at exit)."""

    def __init__(self, probe: Callable[[], object]) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.result: object = None  # what the check returned
        self._probe = probe
        threading.Thread(target=self._run, name="readyz", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._probe()
        except BaseException as error:  # handed to whoever waits for the check
            self.error = error
        finally:
            self.done.set()


class Probes:
    """Runs each dependency's check on a thread of its own with a time limit; a check
    still running from an earlier call is waited on again, never started twice, so a hung
    dependency holds one thread, not one per probe."""

    def __init__(self) -> None:
        self._running: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def start(self, name: str, probe: Callable[[], object]) -> _Run:
        """The check ``name`` running: the one still running from an earlier call, or a
        new one."""
        with self._lock:
            running = self._running.get(name)
            if running is None or running.done.is_set():
                running = self._running[name] = _Run(probe)
        return running


def _outcome(run: _Run, deadline: float) -> None:
    """Wait for a check until ``deadline`` (``time.monotonic``); raise what it raised, or
    :class:`ProbeTimeout`."""
    if not run.done.wait(max(0.0, deadline - time.monotonic())):
        raise ProbeTimeout
    if run.error is not None:
        raise run.error


_CREATING = threading.Lock()


def _probes(request: Request) -> Probes:
    """The app's probes (one set per app: its checks run on its own threads)."""
    with _CREATING:
        probes = getattr(request.app.state, "readiness_probes", None)
        if probes is None:
            probes = request.app.state.readiness_probes = Probes()
    return probes


@router.get("/healthz")
async def healthz() -> dict[str, str]:  # on the event loop: answers while every
    # worker thread waits on a database that stopped answering (a liveness probe)
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    probes = _probes(request)
    deadline = time.monotonic() + PROBE_SECONDS  # one limit for all: they run side by side
    state = request.app.state
    runs = {"database": probes.start("database", state.db.ping_writable),
            "store": probes.start("store", state.store.ping)}
    checks = {name: _status(name, run, deadline) for name, run in runs.items()}
    keys = getattr(state, "keys", None)
    if checks["database"] == "ok" and keys is not None:  # the keys are read from it
        # "unavailable" also when the master keys open none of the signing keys (a wrong
        # IDP_MASTER_KEY or key id: this process could sign nothing)
        checks["signing_keys"] = _status("signing_keys",
                                         probes.start("signing_keys", keys.problem), deadline)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


def _status(name: str, run: _Run, deadline: float) -> str:
    """"ok", or "unavailable" (logged) when the check raised, did not answer by
    ``deadline``, or returned a problem (a non-empty text: the key ring's)."""
    level = logging.WARNING  # a dependency down: it comes back by itself
    try:
        _outcome(run, deadline)
    except ProbeTimeout:
        problem = f"no answer within {PROBE_SECONDS:g} s"
    except Exception as exc:  # any failure means "not ready"; the kind is logged
        problem = type(exc).__name__
    else:
        if not run.result:
            return "ok"
        problem, level = str(run.result), logging.ERROR  # a configuration to mend
    log.log(level, "readiness check failed", extra={"dependency": name, "error": problem})
    return "unavailable"


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
