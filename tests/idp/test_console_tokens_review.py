"""Review of the admin console's API tokens: a token issued there carries the console's
powers and no more (no IP locks), its name is plain text wherever it is shown (the
operators' terminal too), and the command line refuses an end it cannot write."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from core.db import Database
from core.settings import Settings
from core.store import Store
from directory import api_tokens
from directory.api_tokens import ApiToken
from directory.models import OrgUnit, Role
from tests.idp import flow
from tests.idp.test_console_rules import place, sign_in
from tests.idp.test_console_tokens import TOKEN


def _city_administrator(db: Database, make_person):
    city = make_person("c700", "pw-city-700", name="市管理员", role=Role.staff)
    place(db, city.account_id, "T-CITY", Role.city_admin)
    return city


def _issue_as_city(client: TestClient, name: str = "服务台工具", *permissions: str):
    return client.post("/admin/tokens/issue", data={
        "csrf_token": flow.csrf_of(client.get("/").text), "unit": "T-CITY", "name": name,
        "at": "T-CITY", "permission": list(permissions or ("security:unlock",)),
        "days": "30"}, follow_redirects=False)


def _lift_ip_lock(client: TestClient, token: str):
    return client.post("/api/admin/ip-locks/203.0.113.7/unlock",
                       headers={"authorization": f"Bearer {token}"})


def test_a_console_token_of_the_city_lifts_no_ip_lock(
        client: TestClient, db: Database, settings: Settings, store: Store,
        make_person) -> None:
    """Lifting an IP lock is not a power of the console (docs/console.md, "Not here yet"):
    a city administrator's token, whatever its scope, does not get it."""
    city = _city_administrator(db, make_person)
    sign_in(client, store, city.account_id)
    issued = _issue_as_city(client)
    assert issued.status_code == 303, issued.text
    token = TOKEN.search(client.get(issued.headers["location"]).text)[1]
    assert _lift_ip_lock(client, token).status_code == 403
    with db.session() as session:  # the operators' city token still does
        root = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-CITY"))
        _, operators = api_tokens.issue(session, settings, name="运维", scope=root,
                                        permissions={"security:unlock"}, issued_by="cli:root")
    assert _lift_ip_lock(client, operators).status_code == 200


def test_a_token_name_with_control_characters_is_refused(
        client: TestClient, db: Database, store: Store, make_person) -> None:
    city = _city_administrator(db, make_person)
    sign_in(client, store, city.account_id)
    for name in ("sync\x1b]52;c;ZWNobyBwd25lZA==\x07", "a\nb", "x\x1b[2J", "ab\u202ecba"):
        refused = _issue_as_city(client, name)
        assert refused.status_code == 400 and "data-error" in refused.text, repr(name)
    with db.session() as session:
        assert session.scalars(select(ApiToken)).all() == []
    assert _issue_as_city(client, "教务\u3000系统").status_code == 303  # a Chinese space is fine


def _cli_env(db: Database, settings: Settings, monkeypatch, tmp_path) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                        "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(name, value)


def test_the_token_list_shows_names_as_plain_text(
        db: Database, settings: Settings, make_person, monkeypatch, tmp_path) -> None:
    """A console administrator names the token; the operators' ``idp tokens list`` prints
    it: neither rich markup nor a terminal's escape sequence in it may act."""
    from idp.cli import app

    make_person()  # the test city
    with db.session() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-SCHOOL"))
        for name in ("[/bold] 同步", "[link=https://example.invalid]ok[/link]", "t\x1b[2Jx"):
            api_tokens.issue(session, settings, name=name, scope=school,
                             permissions={"directory:read"}, issued_by="account:1", days=30)
    _cli_env(db, settings, monkeypatch, tmp_path)
    listed = CliRunner().invoke(app, ["tokens", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, repr(listed.exception)
    assert "[/bold] 同步" in listed.output and "[link=https://example.invalid]" in listed.output
    assert "\x1b" not in listed.output


def test_the_command_line_refuses_an_end_it_cannot_write(
        db: Database, settings: Settings, make_person, monkeypatch, tmp_path) -> None:
    from idp.cli import app

    make_person()
    _cli_env(db, settings, monkeypatch, tmp_path)
    for days in ("3000000", "99999999999999999999"):
        made = CliRunner().invoke(app, ["tokens", "issue", "--name", "sync", "--org",
                                        "T-SCHOOL", "--permission", "scim", "--days", days])
        assert made.exit_code == 2, (days, made.exit_code, repr(made.exception))
    with db.session() as session:
        assert session.scalars(select(ApiToken)).all() == []
