"""The composition root: builds the FastAPI application from every layer.

This is the one module allowed to import the layers above ``idp`` (the
import-linter contract names it), because it mounts their routers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from admin_ui import (
    account,
    console,
    console_apps,
    console_tokens,
    security_locks,
    security_passkeys,
    security_password,
    security_recovery,
    security_reset,
    security_totp,
)
from core import passwords, web
from core.db import Database
from core.settings import Settings, get_settings
from core.signing_keys import KeyRing, NoSigningKey
from core.store import Store, StoreUnavailable, make_store
from core.web import errors, health, logs, templates
from core.web.middleware import BodyLimitMiddleware, WebKitMiddleware
from directory import api as directory_api
from directory.models import check_roles
from directory.people import StandingBySub
from directory.scim import router as scim
from idp import (
    demo_rp,
    home,
    jwks,
    login,
    mfa_step,
    passkey_login,
    password_change,
    qr_login,
    sessions,
    sms_login,
)
from idp.oidc import (
    authorize,
    backchannel_logout,
    clients,
    cors,
    discovery,
    end_session,
    introspection,
    par,
    resources,
    revocation,
    token_endpoint,
    userinfo,
)

IDP_TEMPLATES = Path(__file__).parent / "templates"
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def _unavailable_errors() -> tuple[type[Exception], ...]:
    import redis

    # NoSigningKey: an algorithm without an active key (retired, or taken out of
    # IDP_SIGNING_ALGS after an app registered it): 503 until the operator makes one
    # ReadOnlyError, OutOfMemoryError: a Redis that answers but takes no writes (a replica
    # after a failover; full under noeviction)
    return (StoreUnavailable, OperationalError, redis.ConnectionError, redis.TimeoutError,
            redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError, NoSigningKey)


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, store: Store | None = None
) -> FastAPI:
    """Build the app. Tests pass their own settings, database and store."""
    settings = settings or get_settings()
    check_roles(settings.mfa_required_roles, "IDP_MFA_REQUIRED_ROLES")  # also without the CLI
    logs.configure(settings.log_level)
    passwords.limit_concurrency(settings.password_hash_concurrency)
    database = db or Database(settings)
    kv = store or make_store(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync endpoints run in this thread pool (40 threads by default). With more
        # threads than pooled connections, the extra ones open throwaway connections
        # (the pool's overflow, closed again on return): measured with 16 concurrent
        # UserInfo requests, 200 PostgreSQL backends started in 12 s. One thread per
        # pooled connection; the other requests wait for a thread instead.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = settings.database_pool_size
        backchannel_logout.start(kv)  # logout deliveries kept in the store, taken over
        yield
        backchannel_logout.drain()  # logout tokens under way: sent before the process ends
        backchannel_logout.stop()  # what is left stays in the store for another process
        if db is None:
            database.dispose()
        if store is None:
            kv.close()

    app = FastAPI(
        title="City Education Unified Identity",
        version=version(),
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hooks look up the global providers (and the
        # environment) on every request: 7 % of the token endpoint's CPU. The service has
        # its own Prometheus metrics and JSON access log (core.web.middleware).
        telemetry=NO_TELEMETRY,
    )
    app.state.settings, app.state.db, app.state.store = settings, database, kv
    app.state.keys = KeyRing(settings, database.sessions)
    app.state.clients = clients.ClientRegistry(database.sessions)
    app.state.resources = resources.ResourceRegistry(database.sessions)
    app.state.standing = StandingBySub(database)
    # for the layers below idp (SCIM): end an account's sessions now and tell their apps
    app.state.end_sessions = lambda account_id: sessions.end_everywhere(
        app.state, account_id, begun_before=time.time())

    templates.add_folder(IDP_TEMPLATES)
    errors.install(app, _unavailable_errors())
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(WebKitMiddleware)
    # Routes are matched in order: the protocol hot paths come first.
    for router in (token_endpoint.router, par.router, introspection.router, userinfo.router,
                   jwks.router,
                   cors.router,
                   discovery.router, authorize.router, revocation.router, end_session.router,
                   login.router, health.router, home.router, scim.router, directory_api.router,
                   account.router, mfa_step.router, security_totp.router,
                   security_passkeys.router, security_recovery.router, security_locks.router,
                   security_reset.router, security_password.router,
                   passkey_login.router, sms_login.router, qr_login.router,
                   password_change.router, console.router, console_apps.router,
                   console_tokens.router):
        app.include_router(router)
    if settings.mode == "dev":
        app.include_router(demo_rp.router)
    app.mount("/static/core", StaticFiles(directory=Path(web.__file__).parent / "static"),
              "static-core")
    app.mount("/static/idp", StaticFiles(directory=Path(__file__).parent / "static"),
              "static-idp")
    app.mount("/static/admin", StaticFiles(directory=Path(security_passkeys.__file__).parent
                                           / "static"), "static-admin")
    return app


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("edu-idp")
    except PackageNotFoundError:
        return "0+unknown"
