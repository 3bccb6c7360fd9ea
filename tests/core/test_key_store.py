"""The signing-key store when a key cannot be opened or must be withdrawn, and the strict
reading of our own tokens."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from typer.testing import CliRunner

from core.audit import AuditEvent
from core.db import Database, utcnow
from core.signing_keys import (
    KeyRing,
    SigningKey,
    create_key,
    ensure_keys,
    revoke,
    statuses,
)
from tests.conftest import make_settings

OTHER_KEY = "33" * 32


def test_one_unreadable_key_is_left_out_and_the_others_serve(
        db: Database, settings, client: TestClient, tmp_path, caplog) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    other = make_settings(tmp_path, url, master_key=OTHER_KEY, master_key_id="k1")
    with db.session() as session:  # e.g. written by a worker started with another key
        bad = create_key(session, other, "ES256").kid
    caplog.set_level(logging.ERROR, "idp.keys")
    try:
        ring = KeyRing(settings, db.sessions, reload_seconds=0)
        assert ring.verify(ring.sign({"sub": "x"}, "RS256")) is not None
        assert ring.verification_key(bad) is None
        assert ring.problem() is None  # the other keys open: still ready
        response = client.get("/oauth2/jwks")
        assert response.status_code == 200
        assert bad not in {k["kid"] for k in json.loads(response.content)["keys"]}
        assert any(getattr(r, "kid", None) == bad for r in caplog.records)
        assert OTHER_KEY not in caplog.text
        assert client.get("/readyz").status_code == 200
    finally:
        with db.session() as session:
            session.execute(delete(SigningKey).where(SigningKey.kid == bad))


def test_a_wrong_master_key_is_unready_not_a_500_per_request(
        db: Database, store, tmp_path, caplog) -> None:
    from idp.app import create_app

    url = db.engine.url.render_as_string(hide_password=False)
    wrong = make_settings(tmp_path, url, master_key=OTHER_KEY)  # same id k1, another key
    caplog.set_level(logging.INFO)
    app = create_app(wrong, db=db, store=store)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["signing_keys"] == "unavailable"
        assert c.get("/oauth2/jwks").status_code == 200  # empty: nothing it could sign with
    assert OTHER_KEY not in caplog.text


def test_unready_when_no_active_key_opens(db: Database, settings, tmp_path) -> None:
    """A worker still on the old master key after keys were made under a new one: the
    new active keys do not open, the retired ones do; it can sign nothing."""
    url = db.engine.url.render_as_string(hide_password=False)
    other = make_settings(tmp_path, url, master_key=OTHER_KEY, master_key_id="k9")
    made: list[str] = []
    with db.session() as session:
        for alg in settings.signing_algs:
            made.append(create_key(session, other, alg, active_from=utcnow()).kid)
    try:
        ring = KeyRing(settings, db.sessions, reload_seconds=0)
        assert not any(ring.has_active(alg) for alg in settings.signing_algs)
        assert ring.problem() is not None
    finally:
        with db.session() as session:
            session.execute(delete(SigningKey).where(SigningKey.kid.in_(made)))


def test_revoking_does_not_bring_back_an_expired_key(db: Database, settings) -> None:
    """The active key (rotated in three days ago) leaks; its predecessor expired a day ago
    but was not pruned. Its retirement runs from its successor's start: with the new key
    starting now it would be retired, published and verifying again."""
    alg, now = "EdDSA", utcnow()
    with db.session() as session:
        session.execute(delete(SigningKey).where(SigningKey.alg == alg))
        old = create_key(session, settings, alg, active_from=now - timedelta(days=10)).kid
        leaked = create_key(session, settings, alg, active_from=now - timedelta(days=3)).kid
    try:
        with db.session() as session:
            revoke(session, settings, leaked)
        ring = KeyRing(settings, db.sessions, reload_seconds=0)
        assert ring.verification_key(old) is None and ring.verification_key(leaked) is None
        assert ring.has_active(alg)
    finally:
        with db.session() as session:
            session.execute(delete(SigningKey).where(SigningKey.alg == alg))
            ensure_keys(session, settings)


def test_a_leaked_signing_key_is_withdrawn_at_once(db: Database, settings, monkeypatch,
                                                    tmp_path) -> None:
    from idp.cli import app

    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    with db.session() as session:
        rows = list(session.scalars(select(SigningKey).where(SigningKey.alg == "ES256")))
        active = next(s.kid for s in statuses(rows, settings, utcnow()) if s.state == "active")
    ring = KeyRing(settings, db.sessions, reload_seconds=0)
    signed = ring.sign({"sub": "x"}, "ES256")
    result = CliRunner().invoke(app, ["keys", "revoke", active])
    assert result.exit_code == 0, result.output
    assert ring.verification_key(active) is None and ring.verify(signed) is None
    successor = ring.verify(ring.sign({"sub": "y"}, "ES256"))  # the algorithm still signs
    assert successor is not None and successor[0]["kid"] != active
    with db.session() as session:
        event = session.scalar(select(AuditEvent).where(
            AuditEvent.action == "signing_key.revoke"))
        assert event is not None and event.target == f"signing_key:{active}"
    again = CliRunner().invoke(app, ["keys", "revoke", active])
    assert again.exit_code != 0 and "no signing key" in str(again.exception)  # error: ... (2)


def test_our_token_verifier_reads_one_spelling_of_a_token(db: Database, settings) -> None:
    """Lenient base64 took "=", "+/", and skipped characters outside the alphabet: one
    token had unboundedly many spellings that all verified (joserfc, used for the apps'
    JWTs, refuses them)."""
    ring = KeyRing(settings, db.sessions, reload_seconds=0)
    token = ring.sign({"iss": settings.issuer, "sub": "s", "exp": 4102444800}, "SM2",
                      typ="at+jwt")
    head, body, sig = token.split(".")
    variants = {"padding": f"{head}.{body}.{sig}==",
                "junk in sig": f"{head}.{body}.{sig[:10]}!!!!{sig[10:]}",
                "junk in payload": f"{head}.{body}$$$$.{sig}",
                "newline": f"{head}.{body}.\n{sig}",
                "'+/' alphabet": token.replace("-", "+").replace("_", "/")}
    if variants["'+/' alphabet"] == token:  # no '-' or '_' in this token
        del variants["'+/' alphabet"]
    assert ring.verify(token) is not None
    accepted = [name for name, variant in variants.items() if ring.verify(variant) is not None]
    assert not accepted, f"other spellings of one token accepted: {accepted}"


def test_unready_when_the_default_id_token_alg_cannot_sign(db: Database, settings,
                                                          tmp_path) -> None:
    """A worker on the old master key after `idp keys rotate SM2` under the new one: most
    apps' ID tokens (IDP_ID_TOKEN_ALG_DEFAULT) would be 503s from it."""
    assert settings.id_token_alg_default == "SM2"
    url = db.engine.url.render_as_string(hide_password=False)
    other = make_settings(tmp_path, url, master_key=OTHER_KEY, master_key_id="k9")
    with db.session() as session:
        made = create_key(session, other, "SM2", active_from=utcnow()).kid
    try:
        ring = KeyRing(settings, db.sessions, reload_seconds=0)
        assert not ring.has_active("SM2") and ring.has_active("RS256")
        assert ring.problem() is not None
    finally:
        with db.session() as session:
            session.execute(delete(SigningKey).where(SigningKey.kid == made))


def test_a_kid_that_begins_with_a_dash_is_a_kid(db: Database, settings, monkeypatch,
                                                 tmp_path) -> None:
    """A base64url thumbprint may begin with "-" (one in 64): `idp keys revoke -lX...` took it
    for an option and refused the command."""
    from idp.cli import app

    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["keys", "revoke", "-lNoSuchKey"])
    assert "No such option" not in result.output, result.output
    assert "no signing key -lNoSuchKey" in str(result.exception)  # taken as the kid
