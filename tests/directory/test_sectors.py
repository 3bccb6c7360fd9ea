"""Pairwise sectors (OpenID Connect Core 8.1): the rules at registration, and reading a
``sector_identifier_uri`` document from a real HTTPS server."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from directory.apps import validate_metadata
from directory.sectors import (
    DOCUMENT_LIMIT,
    check_sector_identifier,
    fetch_redirect_uris,
    sector_of,
)

SECTOR = "https://sso.vendor.example.cn/sector.json"
WWW, MOBILE = "https://www.vendor.example.cn/cb", "https://m.vendor.example.cn/cb"


def _pairwise(**metadata) -> dict:
    return {"subject_type": "pairwise", "redirect_uris": [WWW, MOBILE], **metadata}


def test_a_sector_identifier_lets_one_app_use_several_hosts() -> None:
    validate_metadata(_pairwise(sector_identifier_uri=SECTOR))
    assert sector_of("pairwise", [WWW, MOBILE], SECTOR) == "sso.vendor.example.cn"
    assert sector_of("pairwise", [WWW]) == "www.vendor.example.cn"
    assert sector_of("public", [WWW], None) is None


@pytest.mark.parametrize(("metadata", "message"), [
    (_pairwise(), "one host, or a sector_identifier_uri"),
    (_pairwise(sector_identifier_uri="http://sso.vendor.example.cn/s.json"), "https URL"),
    (_pairwise(sector_identifier_uri="https:///s.json"), "https URL"),
    (_pairwise(sector_identifier_uri="https://u:p@sso.vendor.example.cn/s"), "user info"),
    (_pairwise(sector_identifier_uri=SECTOR + "#x"), "fragment"),
    (_pairwise(sector_identifier_uri="https://sso.vendor.example.cn/ s"), "https URL"),
    (_pairwise(sector_identifier_uri=5), "https URL"),
    (_pairwise(sector_identifier_uri="https://localhost/s.json"), "not 127.0.0.1"),
    (_pairwise(sector_identifier_uri="https://127.0.0.2/s.json"), "not 127.0.0.1"),
    (_pairwise(sector_identifier_uri="https://[::1]/s.json"), "not 127.0.0.1"),
    (_pairwise(sector_identifier_uri="https://app.localhost/s.json"), "not 127.0.0.1"),
    (_pairwise(redirect_uris=["https://127.9.9.9/cb"]), "not 127.0.0.1"),
    (_pairwise(redirect_uris=["http://0.0.0.0:8080/cb"]), "not 127.0.0.1"),
    ({"redirect_uris": [WWW], "sector_identifier_uri": SECTOR}, "for subject_type pairwise"),
])
def test_bad_sector_metadata_is_refused(metadata: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_metadata(metadata)


def test_every_redirect_uri_must_be_listed() -> None:
    asked: list[str] = []

    def fetch(uri: str) -> list[str]:
        asked.append(uri)
        return [WWW, MOBILE, "https://other.example.cn/cb"]

    check_sector_identifier(_pairwise(sector_identifier_uri=SECTOR), fetch)
    assert asked == [SECTOR]
    with pytest.raises(ValueError, match="does not list the redirect URI https://new"):
        check_sector_identifier(_pairwise(sector_identifier_uri=SECTOR, redirect_uris=[
            WWW, "https://new.vendor.example.cn/cb"]), fetch)
    check_sector_identifier({"redirect_uris": [WWW]}, fetch)  # no document: nothing fetched
    assert asked == [SECTOR, SECTOR]


# -- the document over HTTPS ------------------------------------------------------------

DOCUMENTS: dict[str, tuple[int, bytes]] = {
    "/ok": (200, json.dumps([WWW, MOBILE]).encode()),
    "/object": (200, b'{"redirect_uris": []}'),
    "/numbers": (200, b"[1, 2]"),
    "/deep": (200, b"[" * 60000),  # deeper than Python's json can read, under the limit
    "/big": (200, json.dumps(["https://a.example.cn/" + "x" * 100] * 1000).encode()),
    "/gone": (404, b"not here"),
    "/moved": (302, b""),
    "/gzip": (200, b"\x1f\x8b"),  # sent with content-encoding: gzip
    "/drip": (200, json.dumps([WWW]).encode()),  # one byte at a time, slowly
}


class _Documents(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = DOCUMENTS.get(self.path, (404, b""))
        self.send_response(status)
        if status == 302:
            self.send_header("location", "/ok")
        if self.path == "/gzip":
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        for at in range(len(body)) if self.path == "/drip" else ():
            self.wfile.write(body[at:at + 1])
            self.wfile.flush()
            time.sleep(0.1)  # each read well within the timeout, the whole far beyond
        if self.path != "/drip":
            self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                  critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_base(tmp_path: Path, monkeypatch) -> Iterator[str]:
    """A local HTTPS server of DOCUMENTS, its certificate trusted through SSL_CERT_FILE
    (as an operator's own CA would be)."""
    cert_path, key_path = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Documents)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_document_is_read_over_https(https_base: str) -> None:
    assert fetch_redirect_uris(https_base + "/ok") == [WWW, MOBILE]


@pytest.mark.parametrize(("path", "message"), [
    ("/object", "JSON array of URIs"), ("/numbers", "JSON array of URIs"),
    ("/deep", "JSON array of URIs"), ("/big", f"larger than {DOCUMENT_LIMIT // 1024} KiB"),
    ("/gone", "answered HTTP 404"), ("/moved", "answered HTTP 302"),
    ("/gzip", "without content coding"),
])
def test_a_bad_document_is_a_clear_error(https_base: str, path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fetch_redirect_uris(https_base + path)


def test_an_untrusted_certificate_is_refused(https_base: str, monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(ValueError, match=r"could not be read \(ConnectError\)"):
        fetch_redirect_uris(https_base + "/ok")


def test_a_server_that_drips_is_given_up_on(https_base: str, monkeypatch) -> None:
    """The limit is for the whole fetch, not for each read (the body takes about 4 s, each
    byte 0.1 s; 1.5 s leaves a loaded host the time to connect and shake hands)."""
    monkeypatch.setattr("directory.sectors.FETCH_SECONDS", 1.5)
    began = time.monotonic()
    with pytest.raises(ValueError, match=r"did not answer within 1\.5 s"):
        fetch_redirect_uris(https_base + "/drip")
    assert time.monotonic() - began < 3


def test_an_empty_sector_identifier_is_none() -> None:
    """``""`` or ``null``, as an app stored before the member existed might hold: as if
    absent, so ``idp apps update`` with what ``apps show`` printed still works."""
    validate_metadata(_pairwise(redirect_uris=[WWW], sector_identifier_uri=""))
    validate_metadata({"redirect_uris": [WWW], "sector_identifier_uri": None})
    assert sector_of("pairwise", [WWW], "") == "www.vendor.example.cn"
