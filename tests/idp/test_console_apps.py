"""The console's apps (/admin/apps): a school registers an app, which starts pending; the
city above approves it; its secret is shown once; nobody decides on their own unit's app."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from directory.apps import App, secret_mac
from directory.models import OrgUnit, Role
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_console import _place, school, sign_in_to_console  # noqa: F401 (fixture)

SECRET = re.compile(r'<pre id="client-secret" data-client-secret>([^<]+)</pre>')
CLIENT_ID = re.compile(r"<code data-client-id>([^<]+)</code>")


def _post(client: TestClient, path: str, unit: str, **fields: str):
    page = client.get("/admin/apps", params={"unit": unit})
    return client.post(path, data={"csrf_token": flow.csrf_of(page.text), "unit": unit,
                                   **fields}, follow_redirects=False)


def _city_admin(client: TestClient, db: Database, make_person) -> None:
    admin = make_person("c100", "pw-city-100", name="市管理员", role=Role.staff)
    _place(db, admin.account_id, "T-CITY", Role.city_admin)  # the city itself
    sign_in_to_console(client, admin.login, admin.password)


def test_a_school_registers_the_city_approves_and_people_sign_in(
        client: TestClient, school, db: Database, settings: Settings,  # noqa: F811
        make_person) -> None:
    admin, _teacher, _both, pupil, _moved = school
    sign_in_to_console(client, admin.login, admin.password)
    assert "data-no-apps" in client.get("/admin/apps", params={"unit": "T-SCHOOL"}).text

    bad = _post(client, "/admin/apps/register", "T-SCHOOL", name="作业",
                redirect_uris="javascript:alert(1)", kind="web")
    assert bad.status_code == 400 and "data-error" in bad.text
    assert "javascript:alert(1)" in bad.text  # what was typed stays in the form
    store, written = client.app.state.store, []
    keep = store.set
    store.set = lambda key, value, ttl=None: (written.append(value), keep(key, value, ttl))[1]
    try:
        registered = _post(client, "/admin/apps/register", "T-SCHOOL", name="作业本",
                           redirect_uris=f" {REDIRECT_URI} \n\n", kind="web")
    finally:
        store.set = keep
    assert registered.status_code == 303
    shown = client.get(registered.headers["location"])
    assert shown.headers["cache-control"] == "no-store"
    client_id, secret = CLIENT_ID.search(shown.text).group(1), SECRET.search(shown.text).group(1)
    assert written and not any(secret.encode() in value for value in written)  # sealed
    again = client.get(registered.headers["location"])
    assert SECRET.search(again.text) is None and "data-secret-gone" in again.text
    with db.session() as session:
        app = session.scalar(select(App).where(App.client_id == client_id))
        assert (app.status, app.first_party) == ("pending", False)
        assert app.client_secret_mac == secret_mac(settings, secret)
        assert session.scalar(select(OrgUnit.code).where(OrgUnit.id == app.org_unit_id)) \
            == "T-SCHOOL"
        actor = session.scalar(select(AuditEvent.actor).where(
            AuditEvent.action == "app.register", AuditEvent.target == f"app:{client_id}"))
    assert actor == f"account:{admin.account_id}"

    listed = client.get("/admin/apps", params={"unit": "T-SCHOOL"}).text
    assert f'data-app="{client_id}"' in listed and 'data-app-action="status"' not in listed
    own = _post(client, f"/admin/apps/{client_id}/status", "T-SCHOOL", status="approved")
    assert own.status_code == 403  # the unit that registers an app does not approve it

    city = TestClient(client.app)
    _city_admin(city, db, make_person)
    approved = _post(city, f"/admin/apps/{client_id}/status", "T-CITY", status="approved")
    assert approved.status_code == 303 and "done=approved" in approved.headers["location"]
    with db.session() as session:
        assert session.scalar(select(App.status).where(App.client_id == client_id)) \
            == "approved"

    browser = TestClient(client.app)  # a pupil's (a teacher would need a second factor)
    done = flow.code_flow(browser, client_id, pupil, prompt="consent")
    assert "code" in done.params, done.params
    code = done.params["code"]
    tokens = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(client_id, secret))
    assert tokens.status_code == 200, tokens.text

    renewed = _post(client, f"/admin/apps/{client_id}/new-secret", "T-SCHOOL")
    fresh = SECRET.search(client.get(renewed.headers["location"]).text).group(1)
    assert fresh != secret
    code = flow.code_flow(browser, client_id, pupil).params["code"]  # consent remembered
    old = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(client_id, secret))
    assert old.status_code == 401  # at once in this process: its cache forgot the app

    suspended = _post(city, f"/admin/apps/{client_id}/status", "T-CITY", status="suspended")
    assert suspended.status_code == 303
    refused = client.post("/oauth2/token", data={"grant_type": "authorization_code",
                                                 "code": "x", "redirect_uri": REDIRECT_URI},
                          auth=(client_id, fresh))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_a_public_app_has_no_secret(client: TestClient, school, db: Database) -> None:  # noqa: F811
    admin, *_ = school
    sign_in_to_console(client, admin.login, admin.password)
    registered = _post(client, "/admin/apps/register", "T-SCHOOL", name="掌上校园",
                       redirect_uris="com.example.app:/callback", kind="public")
    shown = client.get(registered.headers["location"]).text
    assert SECRET.search(shown) is None and "data-secret-gone" not in shown
    client_id = CLIENT_ID.search(shown).group(1)
    listed = client.get("/admin/apps", params={"unit": "T-SCHOOL"}).text
    assert 'data-app-action="new-secret"' not in listed
    with db.session() as session:
        app = session.scalar(select(App).where(App.client_id == client_id))
        assert app.client_secret_mac is None and '"none"' in app.metadata_json


def test_another_units_app_is_out_of_reach(client: TestClient, school, db: Database,  # noqa: F811
                                           settings: Settings) -> None:
    from directory.apps import register_app

    admin, *_ = school
    with db.session() as session:
        other = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "T-OTHER"))
        app, _secret = register_app(session, settings, name="别校应用", org_unit_id=other,
                                    metadata={"redirect_uris": [REDIRECT_URI]})
        client_id = app.client_id
    sign_in_to_console(client, admin.login, admin.password)
    assert client_id not in client.get("/admin/apps", params={"unit": "T-SCHOOL"}).text
    for path, fields in (("status", {"status": "suspended"}), ("new-secret", {})):
        tried = _post(client, f"/admin/apps/{client_id}/{path}", "T-SCHOOL", **fields)
        assert tried.status_code == 404, path
    with db.session() as session:
        assert session.scalar(select(App.status).where(App.client_id == client_id)) \
            == "approved"


def test_changes_need_a_recent_sign_in(client: TestClient, school, db: Database,  # noqa: F811
                                       store) -> None:
    from idp import sessions
    from tests.idp.test_console_rules import sign_in

    admin, *_ = school
    sign_in(client, store, admin.account_id, age=sessions.REAUTH_SECONDS + 60)
    assert client.get("/admin/apps", params={"unit": "T-SCHOOL"}).status_code == 200
    tried = _post(client, "/admin/apps/register", "T-SCHOOL", name="晚了",
                  redirect_uris=REDIRECT_URI, kind="public")
    assert tried.status_code == 303 and tried.headers["location"].startswith("/login?next=")
    with db.session() as session:
        assert session.scalar(select(App).where(App.name == "晚了")) is None
