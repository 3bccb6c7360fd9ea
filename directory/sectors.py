"""The sector of an app's pairwise subjects (OpenID Connect Core 8.1).

A pairwise app knows each person by an id of its *sector* (``directory.subjects``):

- the one host all its ``redirect_uris`` share (a native app's URI scheme when it has no
  host), or
- the host of its ``sector_identifier_uri``: an ``https`` URL of a JSON array of URIs that
  must list every redirect URI the app registers. An app with redirect URIs on several hosts
  (``www.`` and ``m.`` of one school system, say) needs one; several apps of one vendor may
  share one, and so share the ids. The document is fetched when the app is registered or
  updated (``check_sector_identifier``; ``idp apps`` does), never when people sign in.

Loopback hosts are refused as a sector: every native app on a loopback port would share it.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

DOCUMENT_LIMIT = 64 * 1024  # bytes: a list of redirect URIs, not a download
FETCH_SECONDS = 5.0


def sector_of(subject_type: str, redirect_uris: Any,
              sector_identifier_uri: str | None = None) -> str | None:
    """The pairwise subjects' sector, ``None`` for public subjects."""
    if subject_type != "pairwise":
        return None
    if sector_identifier_uri:
        return (urlsplit(sector_identifier_uri).hostname or "").lower()
    return next(iter(sectors_of(redirect_uris)), None)


def sectors_of(redirect_uris: Any) -> set[str]:
    """The hosts of the redirect URIs (a native app's URI scheme when it has no host)."""
    found = set()
    for uri in redirect_uris:
        parts = urlsplit(uri)
        found.add((parts.hostname or parts.scheme).lower())
    return found


def check_pairwise(data: dict[str, Any]) -> None:
    """Registration's rules for ``subject_type`` and ``sector_identifier_uri`` (the
    document's content is ``check_sector_identifier``'s)."""
    if data.get("subject_type", "public") not in ("public", "pairwise"):
        raise ValueError("subject_type must be public or pairwise")
    uri = data.get("sector_identifier_uri") or None  # "", null: none (as before it existed)
    if uri is not None:
        _check_sector_uri(uri)
        if data.get("subject_type") != "pairwise":  # it would be stored and never used
            raise ValueError("sector_identifier_uri is for subject_type pairwise")
    if data.get("subject_type") != "pairwise":
        return
    if uri is None and len(sectors_of(data.get("redirect_uris", []))) != 1:
        raise ValueError("subject_type pairwise needs redirect_uris that all share one host, "
                         "or a sector_identifier_uri that lists them")
    if _is_loopback(sector_of("pairwise", data.get("redirect_uris", []), uri) or ""):
        raise ValueError("subject_type pairwise needs a host of the app's own, not "
                         "127.0.0.1, [::1] or localhost")


def _is_loopback(host: str) -> bool:
    """``localhost`` and its subdomains (RFC 6761), and any loopback or unspecified
    address (all of 127.0.0.0/8, not only 127.0.0.1)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check_sector_uri(uri: Any) -> None:
    member = "sector_identifier_uri"
    if not isinstance(uri, str) or len(uri) > 2000 or any(
            ord(c) <= 0x20 or ord(c) == 0x7F for c in uri):
        raise ValueError(f"{member} must be an https URL")
    parts = urlsplit(uri)
    if parts.scheme != "https" or not parts.hostname or "#" in uri or parts.username:
        raise ValueError(f"{member} must be an https URL without user info or fragment")


def fetch_redirect_uris(uri: str) -> list[str]:
    """The JSON array of URIs at ``uri``: answered 200 within ``FETCH_SECONDS`` in all
    (name lookup and a server that drips bytes included: the fetch runs in a thread that
    is abandoned at the deadline), at most ``DOCUMENT_LIMIT`` bytes as sent (no content
    coding), no redirect followed, the certificate checked against the system's CA store
    (or ``SSL_CERT_FILE``); ValueError says what went wrong."""
    outcome: list[list[str] | ValueError] = []
    worker = threading.Thread(target=lambda: outcome.append(_fetch(uri)), daemon=True)
    worker.start()
    worker.join(FETCH_SECONDS)
    if not outcome:
        raise ValueError(f"sector_identifier_uri did not answer within {FETCH_SECONDS:g} s")
    if isinstance(outcome[0], ValueError):
        raise outcome[0]
    return outcome[0]


def _fetch(uri: str) -> list[str] | ValueError:
    import httpx

    try:
        with httpx.stream("GET", uri, timeout=FETCH_SECONDS, follow_redirects=False,
                          verify=ssl.create_default_context(), headers={
                              "accept": "application/json", "accept-encoding": "identity"},
                          ) as answer:
            if answer.status_code != 200:
                return ValueError(f"sector_identifier_uri answered HTTP {answer.status_code}")
            if answer.headers.get("content-encoding", "identity").lower() != "identity":
                return ValueError("sector_identifier_uri must answer without content coding")
            body = b""
            for chunk in answer.iter_raw():
                body += chunk
                if len(body) > DOCUMENT_LIMIT:
                    return ValueError("sector_identifier_uri: the document is larger than "
                                      f"{DOCUMENT_LIMIT // 1024} KiB")
    except httpx.HTTPError as exc:
        return ValueError(f"sector_identifier_uri could not be read "
                          f"({exc.__class__.__name__})")
    try:
        listed = json.loads(body)
    except (ValueError, RecursionError):
        listed = None
    if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
        return ValueError("sector_identifier_uri must answer a JSON array of URIs")
    return listed


def check_sector_identifier(data: dict[str, Any],
                            fetch: Callable[[str], list[str]] | None = None) -> None:
    """OIDC Core 8.1: every registered redirect URI must be in the sector identifier's
    document (when the app has one); ``fetch`` reads it (``fetch_redirect_uris``)."""
    uri = data.get("sector_identifier_uri")
    if not uri or data.get("subject_type") != "pairwise":
        return
    listed = set((fetch or fetch_redirect_uris)(uri))
    missing = [u for u in data.get("redirect_uris", []) if u not in listed]
    if missing:
        raise ValueError(f"sector_identifier_uri does not list the redirect URI {missing[0]}")
