"""The framework floor for bench/oidc.py: a bare FastAPI app, one POST endpoint.

Served exactly as ``idp serve`` serves the provider (uvicorn with its default
uvloop/httptools, no access log, no server header), so the difference between
the two is the provider's own work. The endpoint neither reads the body nor
authenticates anybody; it returns a small JSON object shaped like a token
response. Run by bench/oidc.py; by hand::

    .venv/bin/python bench/bare_fastapi.py --port 9200 --workers 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

# The same FastAPI options as the service (idp.app): OpenTelemetry hooks off.
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None,
              telemetry={"tracing": False, "metrics": False, "logs": False,
                         "operation_spans": False})
BODY = {"access_token": "x" * 64, "token_type": "Bearer", "expires_in": 600}


@app.post("/token")
async def token() -> JSONResponse:
    return JSONResponse(BODY, headers={"Cache-Control": "no-store"})


@app.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run("bare_fastapi:app", app_dir=str(Path(__file__).resolve().parent),
                host=args.host, port=args.port, workers=args.workers, log_config=None,
                access_log=False, server_header=False, log_level="warning")


if __name__ == "__main__":
    main()
