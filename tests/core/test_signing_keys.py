"""Signing keys: storage, rotation life cycle, JWKS, signatures that others verify."""

from __future__ import annotations

import json
from datetime import timedelta

import jwt as pyjwt
import pytest
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet
from sqlalchemy import delete, select, update

from core.db import Database, utcnow
from core.gm import jose as gm_jose
from core.settings import Settings
from core.signing_keys import (
    ALL_ALGS,
    KeyRing,
    NoSigningKey,
    SigningKey,
    create_key,
    ensure_keys,
    prune,
    rotate,
    statuses,
)


@pytest.fixture
def fresh_keys(db: Database, settings: Settings):
    """An empty key table for this test; the suite's keys are restored afterwards."""
    with db.session() as session:
        saved = [
            {c.name: getattr(row, c.name) for c in SigningKey.__table__.columns}
            for row in session.scalars(select(SigningKey))
        ]
        session.execute(delete(SigningKey))
    yield
    with db.session() as session:
        session.execute(delete(SigningKey))
        session.add_all(SigningKey(**values) for values in saved)


def _ring(db: Database, settings: Settings) -> KeyRing:
    return KeyRing(settings, db.sessions, reload_seconds=0)


def test_private_keys_are_sealed_and_kid_is_the_thumbprint(db: Database, settings) -> None:
    with db.session() as session:
        rows = list(session.scalars(select(SigningKey)))
    assert {r.alg for r in rows} >= set(ALL_ALGS)
    for row in rows:
        assert row.private_enc.startswith("sm4gcm.")
        assert '"d"' not in row.private_enc and '"d"' not in row.public_jwk
        public = json.loads(row.public_jwk)
        assert public["kid"] == row.kid and public["use"] == "sig" and public["alg"] == row.alg
        if row.alg == "SM2":
            assert gm_jose.sm2_jwk_thumbprint(public) == row.kid
            assert public["crv"] == "SM2" and public["kty"] == "EC"
        else:
            from joserfc.jwk import JWKRegistry

            assert JWKRegistry.import_key(public).thumbprint() == row.kid


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_standard_tokens_verify_with_pyjwt_and_joserfc(db, settings, alg: str) -> None:
    ring = _ring(db, settings)
    token = ring.sign({"sub": "abc", "aud": "app", "n": "中文"}, alg, typ="JWT")
    standard = json.loads(ring.jwks("standard")[0])
    # PyJWT: pick the key by kid from the standard set
    header = pyjwt.get_unverified_header(token)
    jwk = next(k for k in standard["keys"] if k["kid"] == header["kid"])
    key = pyjwt.PyJWK(jwk).key
    claims = pyjwt.decode(token, key, algorithms=[alg], audience="app")
    assert claims["n"] == "中文"
    # joserfc (authlib's JOSE library): the standard JWKS imports as a whole
    decoded = joserfc_jwt.decode(token, KeySet.import_key_set(standard), algorithms=[alg])
    assert decoded.claims["sub"] == "abc"


def test_sm2_token_verifies_with_the_sm2_jwk_only(db, settings) -> None:
    ring = _ring(db, settings)
    token = ring.sign({"sub": "abc"}, "SM2")
    everything = json.loads(ring.jwks("all")[0])
    standard = json.loads(ring.jwks("standard")[0])
    assert all(k["alg"] != "SM2" for k in standard["keys"])
    assert any(k["alg"] == "SM2" for k in everything["keys"])
    payload = gm_jose.verify_jws(token, gm_jose.import_key_set(everything))
    assert json.loads(payload) == {"sub": "abc"}
    with pytest.raises(Exception):
        KeySet.import_key_set(everything)


def test_pyjwt_skips_the_sm2_key_in_the_full_set(db, settings) -> None:
    ring = _ring(db, settings)
    keys = pyjwt.PyJWKSet.from_dict(json.loads(ring.jwks("all")[0]))
    assert {k.key_id for k in keys.keys} >= {
        k["kid"] for k in json.loads(ring.jwks("standard")[0])["keys"]}


@pytest.mark.interop
@pytest.mark.parametrize(("which", "alg"), [("standard", "RS256"), ("standard", "ES256"),
                                             ("standard", "EdDSA"), ("all", "ES256")])
def test_npm_jose_verifies_with_our_jwks(db, settings, tmp_path, which, alg) -> None:
    from tests.interop import node

    ring = _ring(db, settings)
    token = ring.sign({"sub": "abc", "iss": settings.issuer}, alg, typ="JWT")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_bytes(ring.jwks(which)[0])
    result = node.run_json("jwks_verify.mjs", str(jwks_file), token, alg)
    assert result == {"ok": True, "payload": {"sub": "abc", "iss": settings.issuer}}
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert node.run_json("jwks_verify.mjs", str(jwks_file), tampered, alg)["ok"] is False


def test_rotation_life_cycle(db, settings, fresh_keys) -> None:
    with db.session() as session:
        first = create_key(session, settings, "ES256")
        second = rotate(session, settings, "ES256")
    now = utcnow()
    with db.session() as session:
        rows = list(session.scalars(select(SigningKey)))
    states = {s.kid: s.state for s in statuses(rows, settings, now)}
    assert states == {first.kid: "active", second.kid: "pending"}
    ring = _ring(db, settings)
    published = {k["kid"] for k in json.loads(ring.jwks("standard")[0])["keys"]}
    assert published == {first.kid, second.kid}  # the new key is published before it signs
    assert pyjwt.get_unverified_header(ring.sign({}, "ES256"))["kid"] == first.kid

    later = now + timedelta(seconds=settings.key_publish_seconds + 1)
    states = {s.kid: s.state for s in statuses(rows, settings, later)}
    assert states == {first.kid: "retired", second.kid: "active"}
    much_later = later + timedelta(seconds=settings.key_retire_seconds)
    states = {s.kid: s.state for s in statuses(rows, settings, much_later)}
    assert states == {first.kid: "expired", second.kid: "active"}


def test_pending_key_takes_over_and_old_one_is_pruned_later(db, settings, fresh_keys) -> None:
    with db.session() as session:
        first = create_key(session, settings, "ES256")
        second = rotate(session, settings, "ES256")
        # time passes: the first key has signed for a while, the new key's publish
        # period is over
        session.execute(update(SigningKey).where(SigningKey.kid == first.kid)
                        .values(active_from=utcnow() - timedelta(days=30)))
        session.execute(update(SigningKey).where(SigningKey.kid == second.kid)
                        .values(active_from=utcnow() - timedelta(seconds=5)))
    ring = _ring(db, settings)
    assert pyjwt.get_unverified_header(ring.sign({}, "ES256"))["kid"] == second.kid
    assert ring.verification_key(first.kid) is not None  # retired, still published
    with db.session() as session:
        assert prune(session, settings) == []
        session.execute(update(SigningKey).where(SigningKey.kid == second.kid).values(
            active_from=utcnow() - timedelta(seconds=settings.key_retire_seconds + 10)))
    with db.session() as session:
        assert prune(session, settings) == [first.kid]
    ring.reload()
    assert ring.verification_key(first.kid) is None


def test_ensure_keys_creates_missing_algorithms_only(db, settings, fresh_keys) -> None:
    with db.session() as session:
        assert {k.alg for k in ensure_keys(session, settings)} == set(settings.signing_algs)
        assert ensure_keys(session, settings) == []


def test_signing_without_a_key_is_a_clear_error(db, settings, fresh_keys) -> None:
    with pytest.raises(NoSigningKey, match="idp keys rotate SM2"):
        _ring(db, settings).sign({}, "SM2")


def test_unknown_algorithm_refused(db, settings) -> None:
    with db.session() as session, pytest.raises(ValueError, match="unsupported signing"):
        create_key(session, settings, "HS256")


def test_jwks_endpoint_is_cacheable(client) -> None:
    response = client.get("/oauth2/jwks")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    assert "max-age=" in response.headers["cache-control"]
    etag = response.headers["etag"]
    assert client.get("/oauth2/jwks", headers={"If-None-Match": etag}).status_code == 304
    assert all(k["alg"] != "SM2" for k in response.json()["keys"])
    full = client.get("/oauth2/jwks/all")
    assert full.headers["etag"] != etag
    assert any(k["crv"] == "SM2" for k in full.json()["keys"] if k["kty"] == "EC")
