"""Liveness, readiness and metrics endpoints for load balancers and Prometheus.

``/healthz`` answers while the process runs. ``/readyz`` checks the database
and the store on every call, and that the master keys open the signing keys, answers 503
naming the failing dependency while one is down, and 200 again as soon as it is back
(nothing is cached but the key ring's minute). The checks run side by side and have
``PROBE_SECONDS`` in all to answer:
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
    checks: dict[str, str] = {}
    probes = _probes(request)
    deadline = time.monotonic() + PROBE_SECONDS  # one limit for all: they run side by side
    runs = {name: probes.start(name, probe)
            for name, probe in (("database", request.app.state.db.ping_writable),
                                ("store", request.app.state.store.ping))}
    for name, run in runs.items():
        try:
            _outcome(run, deadline)
            checks[name] = "ok"
        except ProbeTimeout:
            log.warning("readiness check failed", extra={
                "dependency": name, "error": f"no answer within {PROBE_SECONDS:g} s"})
            checks[name] = "unavailable"
        except Exception as exc:  # any failure means "not ready"; the kind is logged
            log.warning("readiness check failed", extra={"dependency": name,
                                                         "error": type(exc).__name__})
            checks[name] = "unavailable"
    keys = getattr(request.app.state, "keys", None)
    if checks["database"] == "ok" and keys is not None:  # the keys are read from it
        checks["signing_keys"] = _signing_keys(probes.start("signing_keys", keys.problem),
                                               deadline)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


def _signing_keys(run: _Run, deadline: float) -> str:
    """"ok", or "unavailable" when the master keys open none of the signing keys (a wrong
    ``IDP_MASTER_KEY`` or key id: this process could sign nothing), or when reading them
    did not answer by ``deadline`` (the key ring reloads from the database each minute)."""
    try:
        _outcome(run, deadline)
    except ProbeTimeout:
        log.warning("readiness check failed", extra={
            "dependency": "signing_keys", "error": f"no answer within {PROBE_SECONDS:g} s"})
        return "unavailable"
    except Exception as exc:
        log.warning("readiness check failed", extra={"dependency": "signing_keys",
                                                     "error": type(exc).__name__})
        return "unavailable"
    if run.result:
        log.error("readiness check failed", extra={"dependency": "signing_keys",
                                                   "error": run.result})
        return "unavailable"
    return "ok"


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
