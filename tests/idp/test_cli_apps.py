"""``idp apps``: an operator registers a school app, rotates its secret, suspends it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from tests.conftest import TEST_MASTER_KEY
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_cli import idp


@pytest.fixture
def env(settings, database_url: str, db) -> dict[str, str]:
    """The CLI on the tests' own database (emptied after each test by ``db``)."""
    return {"IDP_VAR_DIR": str(settings.var_dir), "IDP_DATABASE_URL": database_url,
            "IDP_MASTER_KEY": TEST_MASTER_KEY, "IDP_LOG_LEVEL": "WARNING"}


def _printed(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(client_id|client_secret): (\S+)$", output, re.M))


def _client_credentials(client: TestClient, client_id: str, secret: str):
    return client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(client_id, secret))


def test_register_sign_in_rotate_and_suspend(app, env, db, make_person) -> None:
    registered = idp("apps", "register", "--name", "智慧课堂", "--redirect-uri", REDIRECT_URI,
                     "--post-logout-redirect-uri", "https://app.example.cn/bye",
                     "--grant-type", "authorization_code", "--grant-type", "client_credentials",
                     "--scope", "openid profile edu", "--first-party", env=env)
    assert registered.returncode == 0, registered.stderr
    printed = _printed(registered.stdout)
    client_id, secret = printed["client_id"], printed["client_secret"]
    assert client_id.startswith("app_") and len(secret) >= 43  # 256 bits
    shown = json.loads(idp("apps", "show", client_id, env=env).stdout)
    assert shown["redirect_uris"] == [REDIRECT_URI] and shown["status"] == "approved"
    assert shown["id_token_signed_response_alg"] == "SM2"  # the platform's default
    assert secret not in json.dumps(shown) and "client_secret_mac" not in shown
    listed = idp("apps", "list", env=env)
    assert client_id in listed.stdout and "智慧课堂" in listed.stdout

    # the app works: a person signs in to it, and it authenticates with its secret
    with TestClient(app, base_url="http://127.0.0.1:8000") as browser:
        code = flow.code_flow(browser, client_id, make_person()).params["code"]
        tokens = browser.post("/oauth2/token", auth=(client_id, secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})
        assert tokens.status_code == 200 and "id_token" in tokens.json()

    rotated = _printed(idp("apps", "new-secret", client_id, env=env).stdout)["client_secret"]
    with TestClient(app) as fresh:  # the registry caches an app for 30 s per process
        fresh.app.state.clients.forget(client_id)
        assert _client_credentials(fresh, client_id, secret).status_code == 401
        assert _client_credentials(fresh, client_id, rotated).status_code == 200
        assert idp("apps", "status", client_id, "suspended", env=env).returncode == 0
        fresh.app.state.clients.forget(client_id)
        refused = _client_credentials(fresh, client_id, rotated)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    with db.session() as session:
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.target == f"app:{client_id}").order_by(AuditEvent.seq)).all()
    assert actions == ["app.register", "app.new_secret", "app.status"]


def test_register_from_a_metadata_file_and_update(env, tmp_path: Path) -> None:
    file = tmp_path / "app.json"
    file.write_text(json.dumps({"redirect_uris": ["com.example.app:/cb"],
                                "token_endpoint_auth_method": "none",
                                "grant_types": ["authorization_code", "refresh_token"]}))
    registered = idp("apps", "register", "--name", "Mobile", "--metadata", str(file),
                     "--client-id", "mobile-app", env=env)
    assert registered.returncode == 0, registered.stderr
    assert _printed(registered.stdout) == {"client_id": "mobile-app"}  # public: no secret
    file.write_text(json.dumps({"redirect_uris": ["com.example.app:/cb", "com.example.app:/b"],
                                "token_endpoint_auth_method": "none"}))
    assert idp("apps", "update", "mobile-app", "--metadata", str(file), env=env).returncode == 0
    shown = json.loads(idp("apps", "show", "mobile-app", env=env).stdout)
    assert shown["redirect_uris"] == ["com.example.app:/cb", "com.example.app:/b"]
    assert shown["id_token_signed_response_alg"] == "SM2"  # the default, as at registration
    taken = idp("apps", "register", "--name", "x", "--metadata", str(file),
                "--client-id", "mobile-app", env=env)
    assert taken.returncode == 2 and "is taken" in taken.stderr


@pytest.mark.parametrize(("args", "metadata", "message"), [
    (["register", "--name", "x"], None, "give at least one --redirect-uri"),
    (["register", "--name", "x", "--redirect-uri", "ftp://x/cb"], None, "not an http(s) URL"),
    (["register", "--name", "x", "--metadata", "FILE"], {"redirect_uris": "https://a/cb"},
     "redirect_uris must be a list of strings"),
    (["register", "--name", "x", "--metadata", "FILE"], [1, 2], "must be a JSON object"),
    (["register", "--name", "x", "--metadata", "FILE"], "DEEP", "not a readable JSON file"),
    (["register", "--name", "x", "--metadata", "FILE"],
     {"redirect_uris": ["https://a/cb"], "scope": 5}, "scope must be a string"),
    (["register", "--name", "x", "--redirect-uri", "https://a/cb", "--org", "NOPE"], None,
     "no org unit"),
    (["show", "nobody"], None, "no app with client_id"),
    (["new-secret", "nobody"], None, "no app with client_id"),
    (["status", "nobody", "suspended"], None, "no app with client_id"),
    (["update", "nobody", "--metadata", "FILE"], {"redirect_uris": ["https://a/cb"]},
     "no app with client_id"),
    (["register", "--name", "x", "--redirect-uri", "https://a/cb", "--client-id", "a" * 65],
     None, "--client-id"),
    (["register", "--name", "x", "--redirect-uri", "https://a/cb", "--client-id",
      "https://idp.example.cn"], None, "--client-id"),  # an issuer URL as client_id
    (["register", "--name", "x" * 201, "--redirect-uri", "https://a/cb"], None, "--name"),
    (["register", "--name", "x", "--metadata", "FILE"],
     {"redirect_uris": ["https://a/cb"], "client_secret": "s"}, "set by the registry"),
])
def test_mistakes_are_one_line_errors(env, tmp_path: Path, args: list[str], metadata,
                                      message: str) -> None:
    file = tmp_path / "meta.json"
    if metadata == "DEEP":  # nested deeper than Python's json can read: not a traceback
        file.write_text("[" * 100000)
    elif metadata is not None:
        file.write_text(json.dumps(metadata))
    result = idp("apps", *[str(file) if a == "FILE" else a for a in args], env=env)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip().startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pairwise_apps_sector_cannot_change(env, tmp_path: Path) -> None:
    """OIDC Core 12.2: sub never changes; a new host would give everyone a new one."""
    file = tmp_path / "app.json"
    file.write_text(json.dumps({"redirect_uris": ["https://a.example.cn/cb"],
                                "subject_type": "pairwise"}))
    client_id = _printed(idp("apps", "register", "--name", "A", "--metadata", str(file),
                             env=env).stdout)["client_id"]
    for changed in ({"redirect_uris": ["https://b.example.cn/cb"], "subject_type": "pairwise"},
                    {"redirect_uris": ["https://a.example.cn/cb"]}):
        file.write_text(json.dumps(changed))
        refused = idp("apps", "update", client_id, "--metadata", str(file), env=env)
        assert refused.returncode == 2 and "cannot change" in refused.stderr
    file.write_text(json.dumps({"redirect_uris": ["https://a.example.cn/cb",
                                                  "https://a.example.cn/cb2"],
                                "subject_type": "pairwise"}))
    assert idp("apps", "update", client_id, "--metadata", str(file), env=env).returncode == 0


SECTOR = "https://sso.vendor.example.cn/sector.json"
WWW, MOBILE = "https://www.vendor.example.cn/cb", "https://m.vendor.example.cn/cb"


def test_a_sector_identifier_document_is_read_at_registration(
        env, tmp_path: Path, monkeypatch, capsys) -> None:
    """``idp apps register`` and ``update`` read the ``sector_identifier_uri`` document
    (``directory.sectors.fetch_redirect_uris``, tested against a real HTTPS server in
    tests/directory/test_sectors.py; here in this process, so that it can be stood in for)
    and refuse a redirect URI it does not list, or a new sector."""
    import os

    import typer

    from idp import cli_apps

    for name in [n for n in os.environ if n.startswith("IDP_")]:  # as ``idp()`` does
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    documents = {SECTOR: [WWW, MOBILE], "https://other.example.cn/s.json": [WWW, MOBILE]}
    monkeypatch.setattr("directory.sectors.fetch_redirect_uris", lambda uri: documents[uri])
    file = tmp_path / "app.json"
    metadata = {"redirect_uris": [WWW, MOBILE], "subject_type": "pairwise",
                "sector_identifier_uri": SECTOR}
    file.write_text(json.dumps(metadata))
    cli_apps.apps_register(name="Vendor", metadata=file, redirect_uri=[],
                           post_logout_redirect_uri=[], grant_type=[], auth_method=None,
                           id_token_alg=None, scope=None, org=None, first_party=False,
                           client_id="vendor")
    assert _printed(capsys.readouterr().out)["client_id"] == "vendor"
    cli_apps.apps_show(client_id="vendor")
    assert json.loads(capsys.readouterr().out)["sector_identifier_uri"] == SECTOR
    for changed, message in (
            ({**metadata, "redirect_uris": [WWW, "https://new.vendor.example.cn/cb"]},
             "does not list the redirect URI https://new.vendor.example.cn/cb"),
            ({**metadata, "sector_identifier_uri": "https://other.example.cn/s.json"},
             "cannot change")):
        file.write_text(json.dumps(changed))
        with pytest.raises(typer.Exit):
            cli_apps.apps_update(client_id="vendor", metadata=file)
        assert message in capsys.readouterr().err
    documents[SECTOR].append("https://new.vendor.example.cn/cb")  # the vendor lists it
    file.write_text(json.dumps({**metadata, "redirect_uris": [
        WWW, MOBILE, "https://new.vendor.example.cn/cb"]}))
    cli_apps.apps_update(client_id="vendor", metadata=file)


@pytest.mark.parametrize(("metadata", "message"), [
    ({"redirect_uris": [WWW, MOBILE], "subject_type": "pairwise",
      "sector_identifier_uri": "https://sector.invalid/s.json"},
     "sector_identifier_uri could not be read (ConnectError)"),
    ({"redirect_uris": [WWW, MOBILE], "subject_type": "pairwise",
      "sector_identifier_uri": "http://sso.vendor.example.cn/s.json"}, "must be an https URL"),
])
def test_a_sector_identifier_that_cannot_be_used_is_one_line(env, tmp_path: Path, metadata,
                                                             message: str) -> None:
    file = tmp_path / "app.json"
    file.write_text(json.dumps(metadata))
    direct = {"NO_PROXY": "*", **{name: "" for name in (  # the error is ours, not a proxy's
        "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")}}
    result = idp("apps", "register", "--name", "x", "--metadata", str(file),
                 env={**env, **direct})
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_operators_decision_stays_theirs(env, db) -> None:
    """An app the operators register (approved) or whose status they set is not the
    console's to approve or suspend (directory.apps.App.status_set_at: "")."""
    from directory.apps import App
    from directory.models import OrgKind
    from directory.orgs import ensure_org_unit

    with db.session() as session:
        ensure_org_unit(session, code="CLI-SCHOOL", name="学校", kind=OrgKind.school)
    registered = idp("apps", "register", "--name", "作业", "--redirect-uri", REDIRECT_URI,
                     "--org", "CLI-SCHOOL", env=env)
    client_id = _printed(registered.stdout)["client_id"]
    with db.session() as session:
        assert session.scalar(select(App.status_set_at).where(App.client_id == client_id)) == ""


def test_a_client_id_that_begins_with_a_dash_is_a_client_id(env) -> None:
    shown = idp("apps", "show", "-no-such-app", env=env)
    assert shown.returncode == 2 and "No such option" not in shown.stderr, shown.stderr
    assert "no app with client_id '-no-such-app'" in shown.stderr
