"""A live uvicorn server on a free 127.0.0.1 port, for peers that speak real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from core.db import Database
from core.settings import Settings
from core.store import Store
from tests.conftest import make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(settings: Settings, db: Database, store: Store) -> Iterator[str]:
    """Serve the app on a thread; yields the issuer URL (``http://127.0.0.1:<port>``)."""
    from idp.app import create_app

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    app = create_app(make_settings(settings.var_dir, settings.database_url, issuer=issuer),
                     db=db, store=store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the SCIM test server did not start")
        time.sleep(0.05)
    try:
        yield issuer
    finally:
        server.should_exit = True
        thread.join(timeout=10)
