"""Liveness, readiness and metrics endpoints for load balancers and Prometheus.

``/healthz`` answers while the process runs. ``/readyz`` checks the database
and the store on every call, answers 503 naming the failing dependency while
one is down, and 200 again as soon as it is back (nothing is cached).
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
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, probe in (("database", request.app.state.db.ping),
                        ("store", request.app.state.store.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the kind is logged
            log.warning("readiness check failed", extra={"dependency": name,
                                                         "error": type(exc).__name__})
            checks[name] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
