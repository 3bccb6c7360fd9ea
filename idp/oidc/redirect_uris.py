"""Is a redirect URI registered for the client? (RFC 6749 3.1.2.3, RFC 8252 7.3)

Compared as exact strings, except for the loopback interface of a native app (a public
client; a web server's redirect URI is always exact): it registers
``http://127.0.0.1/cb`` (or ``http://[::1]/cb``) and listens on whatever port the
system gives it, so the port of a loopback redirect URI is not compared (RFC 8252 7.3:
the server MUST allow any port). Only IP literals count as loopback: ``localhost`` is
compared exactly (RFC 8252 8.3). A loopback URI is compared as text too, all but its
port: no URL parser's normalising (which drops a leading space, a tab, an empty ``?``
or ``#``) may make an unregistered string match and then be redirected to as sent."""

from __future__ import annotations

import re
from collections.abc import Iterable

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]"})
# an http loopback URI, compared as text: the host, an optional port (1-65535, not
# compared), then the path and query as given, printable ASCII without a fragment; no
# userinfo, no space or control character, nothing a URL parser would quietly drop
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?][!-\"$-~]*)?")


def _without_port(uri: str) -> str | None:
    """``uri`` with its port removed if it is an http loopback URI, else None."""
    found = _LOOPBACK.fullmatch(uri)
    if found is None or (found[2] is not None and not 0 < int(found[2]) <= 65535):
        return None
    return f"http://{found[1]}{found[3] or ''}"


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
