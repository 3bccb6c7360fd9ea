"""Is a redirect URI registered for the client? (RFC 6749 3.1.2.3, RFC 8252 7.3)

Compared as exact strings, except for the loopback interface of a native app (a public
client; a web server's redirect URI is always exact): it registers
``http://127.0.0.1/cb`` (or ``http://[::1]/cb``) and listens on whatever port the
system gives it, so the port of a loopback redirect URI is not compared (RFC 8252 7.3:
the server MUST allow any port). Only IP literals count as loopback: ``localhost`` is
compared exactly (RFC 8252 8.3)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]"})


def _without_port(uri: str) -> str | None:
    """``uri`` with its port removed if it is an http loopback URI, else None."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    name = host[: host.index("]") + 1] if host.startswith("[") else host.partition(":")[0]
    if parts.scheme != "http" or name not in LOOPBACK_HOSTS or "@" in parts.netloc:
        return None
    return parts._replace(netloc=name).geturl()


def registered(uri: str, uris: Iterable[str], *, native: bool) -> bool:
    """``native``: a public client (a native app on the person's device), the only kind
    whose loopback redirect URI may take any port."""
    uris = tuple(uris)
    if uri in uris:
        return True
    if not native:
        return False
    loopback = _without_port(uri)
    return loopback is not None and any(_without_port(r) == loopback for r in uris)
