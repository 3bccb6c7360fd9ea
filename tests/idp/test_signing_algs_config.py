"""A deployment that keeps keys for some algorithms only (``IDP_SIGNING_ALGS=SM2,RS256``):
discovery advertises those, registration refuses the others, and an app registered before
an algorithm was taken out gets a clear 503, not a 500."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient

from core import migrate
from core.db import Database
from core.store import MemoryStore
from directory.apps import register_app
from tests.conftest import make_settings
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI


@pytest.fixture
def limited(tmp_path):
    from core.signing_keys import ensure_keys
    from directory.models import IdentifierKind, OrgKind, Role
    from directory.orgs import ensure_org_unit
    from directory.people import affiliate, create_person_with_account
    from idp.app import create_app
    from idp.login import passwords

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'limited.sqlite3'}",
                             signing_algs="SM2,RS256")
    db = Database(settings)
    migrate.upgrade(db.engine)
    with db.session() as session:
        ensure_keys(session, settings)
        school = ensure_org_unit(session, code="S", name="学校", kind=OrgKind.school)
        account = create_person_with_account(
            session, name="赵同学", identifiers={IdentifierKind.student_number: "s1"},
            password_hash=passwords(settings.password_scheme).hash("Correct-Horse-9"))
        affiliate(session, account.person, school, Role.student, date(2026, 9, 1))
    app = create_app(settings, db=db, store=MemoryStore())
    with TestClient(app, base_url="http://127.0.0.1:8000",
                    raise_server_exceptions=False) as client:
        yield client, settings, db
    db.dispose()


def _sign_in(client: TestClient, db, settings, **metadata: str):
    """Register an app (past the registration checks, as one from before) and redeem a
    code for it; the token endpoint's answer."""
    import json

    from directory.apps import find_app

    person = type("Person", (), {"login": "s1", "password": "Correct-Horse-9"})()
    with db.session() as session:
        app, secret = register_app(session, settings, name="app", metadata={
            "redirect_uris": [REDIRECT_URI], "scope": "openid profile"}, first_party=True)
        row = find_app(session, app.client_id)
        row.metadata_json = json.dumps({**json.loads(row.metadata_json), **metadata})
    client.app.state.clients.forget(app.client_id)
    client.cookies.clear()
    code = flow.code_flow(client, app.client_id, person).params["code"]
    return client.post("/oauth2/token", auth=(app.client_id, secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})


def test_discovery_advertises_the_algorithms_with_keys(limited) -> None:
    client, _settings, _db = limited
    document = client.get("/.well-known/openid-configuration").json()
    assert document["id_token_signing_alg_values_supported"] == ["SM2", "RS256"]
    assert document["userinfo_signing_alg_values_supported"] == ["SM2", "RS256"]


@pytest.mark.parametrize("member", ["id_token_signed_response_alg",
                                    "userinfo_signed_response_alg",
                                    "access_token_signed_response_alg"])
def test_registration_refuses_an_algorithm_without_keys(limited, member: str) -> None:
    _client, settings, db = limited
    with db.session() as session, pytest.raises(ValueError, match="IDP_SIGNING_ALGS"):
        register_app(session, settings, name="app", metadata={
            "redirect_uris": [REDIRECT_URI], member: "ES256"})


@pytest.mark.parametrize("alg", ["SM2", "RS256"])
def test_every_advertised_algorithm_signs(limited, alg: str) -> None:
    client, settings, db = limited
    answer = _sign_in(client, db, settings, id_token_signed_response_alg=alg)
    assert answer.status_code == 200, answer.text


def test_an_app_registered_before_an_algorithm_was_taken_out_gets_a_503(limited) -> None:
    client, settings, db = limited
    answer = _sign_in(client, db, settings, id_token_signed_response_alg="ES256")
    assert answer.status_code == 503 and answer.headers["retry-after"]


def test_an_update_asking_for_an_algorithm_without_keys_is_refused(
        limited, tmp_path, monkeypatch, capsys) -> None:
    """``idp apps update`` checks as registration does; the app keeps its metadata."""
    import json
    import os

    import typer

    from directory.apps import find_app, metadata_of
    from idp import cli_apps
    from tests.conftest import TEST_MASTER_KEY

    _client, settings, db = limited
    with db.session() as session:
        app, _secret = register_app(session, settings, name="app",
                                    metadata={"redirect_uris": [REDIRECT_URI]})
    for name in [n for n in os.environ if n.startswith("IDP_")]:
        monkeypatch.delenv(name)
    for name, value in {"IDP_VAR_DIR": str(settings.var_dir),
                        "IDP_DATABASE_URL": str(db.engine.url),
                        "IDP_MASTER_KEY": TEST_MASTER_KEY,
                        "IDP_SIGNING_ALGS": "SM2,RS256"}.items():
        monkeypatch.setenv(name, value)
    file = tmp_path / "app.json"
    file.write_text(json.dumps({"redirect_uris": [REDIRECT_URI],
                                "userinfo_signed_response_alg": "EdDSA"}))
    with pytest.raises(typer.Exit):
        cli_apps.apps_update(client_id=app.client_id, metadata=file)
    assert "IDP_SIGNING_ALGS" in capsys.readouterr().err
    with db.sessions() as session:
        assert metadata_of(find_app(session, app.client_id)).userinfo_signed_response_alg is None
