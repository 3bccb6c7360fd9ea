"""Liveness, readiness and metrics endpoints for load balancers and Prometheus.

``/healthz`` answers while the process runs. ``/readyz`` checks the database
and the store on every call, and that the master keys open the signing keys, answers 503
naming the failing dependency while one is down, and 200 again as soon as it is back
(nothing is cached but the key ring's minute).
``/metrics`` is the Prometheus text format of this process.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(include_in_schema=False)
log = logging.getLogger("idp.health")


@router.get("/healthz")
async def healthz() -> dict[str, str]:  # on the event loop: answers while every
    # worker thread waits on a database that stopped answering (a liveness probe)
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, probe in (("database", request.app.state.db.ping_writable),
                        ("store", request.app.state.store.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the kind is logged
            log.warning("readiness check failed", extra={"dependency": name,
                                                         "error": type(exc).__name__})
            checks[name] = "unavailable"
    if checks["database"] == "ok":  # the keys are read from it
        checks["signing_keys"] = _signing_keys(request)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


def _signing_keys(request: Request) -> str:
    """"ok", or "unavailable" when the master keys open none of the signing keys (a wrong
    ``IDP_MASTER_KEY`` or key id: this process could sign nothing)."""
    keys = getattr(request.app.state, "keys", None)
    problem = keys.problem() if keys is not None else None
    if problem:
        log.error("readiness check failed", extra={"dependency": "signing_keys",
                                                   "error": problem})
        return "unavailable"
    return "ok"


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
