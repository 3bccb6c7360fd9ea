"""The console's apps (/admin/apps): a school registers an app, which starts pending; the
city above approves it; its secret is shown once; nobody decides on their own unit's app."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import Database
from core.settings import Settings
from directory.apps import App, AppStatus, secret_mac
from directory.models import OrgUnit, Role
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_console import _place, school, sign_in_to_console  # noqa: F401 (fixture)

SECRET = re.compile(r'<pre id="client-secret" data-client-secret>([^<]+)</pre>')
CLIENT_ID = re.compile(r"<code data-client-id>([^<]+)</code>")


def _post(client: TestClient, path: str, unit: str, **fields: str):
    """Post as the apps page would: its CSRF token and, for an approval, what the page
    showed of the app (``seen``: nothing when the page had no approve button)."""
    page = client.get("/admin/apps", params={"unit": unit})
    if path.endswith("/status") and fields.get("status") == "approved":
        form = re.search(re.escape(f'action="{path}"') + r'.*?name="seen" value="([^"]+)"',
                         page.text, re.S)
        fields = {"seen": form.group(1) if form else "", **fields}
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
    forged = _post(city, f"/admin/apps/{client_id}/status", "T-CITY", status="pending")
    assert forged.status_code == 400  # approve or suspend, nothing else
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
    no_secret = _post(client, f"/admin/apps/{client_id}/new-secret", "T-SCHOOL")
    assert no_secret.status_code == 404  # a public app has none to renew
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


def test_a_school_at_the_top_of_the_tree_does_not_approve_its_own_apps(
        client: TestClient, db: Database, store, make_person) -> None:
    """A school imported without a district while the directory has no city yet
    (directory.importer.plan._district: ``units.the_city()`` is None) has no unit above.
    may_decide treats every unit without a parent as the city: the school's administrator
    approves the app they registered themselves."""
    from directory.models import OrgKind
    from directory.orgs import ensure_org_unit
    from tests.idp.test_console_rules import place, sign_in

    admin = make_person("a-root", "pw-a-root", role=Role.staff)
    with db.session() as session:
        ensure_org_unit(session, code="T-ALONE", name="独立学校", kind=OrgKind.school)
    place(db, admin.account_id, "T-ALONE", Role.school_admin)
    sign_in(client, store, admin.account_id)
    registered = _post(client, "/admin/apps/register", "T-ALONE", name="自己批",
                       redirect_uris=REDIRECT_URI, kind="public")
    client_id = CLIENT_ID.search(client.get(registered.headers["location"]).text).group(1)
    assert 'data-app-action="status"' not in client.get(
        "/admin/apps", params={"unit": "T-ALONE"}).text
    own = _post(client, f"/admin/apps/{client_id}/status", "T-ALONE", status="approved")
    assert own.status_code == 403
    with db.session() as session:
        assert session.scalar(select(App.status).where(App.client_id == client_id)) \
            == "pending"


def test_the_operators_apps_stay_the_operators(
        client: TestClient, db: Database, store, settings: Settings, make_person) -> None:
    """docs/console.md: first-party apps and APIs are the operators' (``idp apps``). An
    operator registers the school's first-party portal, and a gateway
    (``protected_resource``: it introspects every app's tokens, pairwise subjects included)
    that the operators then hold pending, with ``--org T-SCHOOL``. The school's administrator
    takes a new secret of either (the real app stops working, the administrator holds its
    credentials), and the city's administrator approves the gateway the operators held back."""
    from directory.apps import register_app
    from tests.idp.test_console_rules import place, sign_in

    admin = make_person("a-op", "pw-a-op", role=Role.staff)
    place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
    with db.session() as session:
        school = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "T-SCHOOL"))
        portal, _ = register_app(session, settings, name="校园门户", org_unit_id=school,
                                 first_party=True, metadata={"redirect_uris": [REDIRECT_URI]})
        gateway, _ = register_app(session, settings, name="网关", org_unit_id=school,
                                  metadata={"protected_resource": True,
                                            "grant_types": ["client_credentials"]},
                                  status=AppStatus.pending)
        ids = {portal.client_id: portal.client_secret_mac,
               gateway.client_id: gateway.client_secret_mac}
    sign_in(client, store, admin.account_id)
    for client_id in ids:
        taken = _post(client, f"/admin/apps/{client_id}/new-secret", "T-SCHOOL")
        assert taken.status_code in (403, 404), client_id
    city = TestClient(client.app)
    city_admin = make_person("c-op", "pw-c-op", role=Role.staff)
    place(db, city_admin.account_id, "T-CITY", Role.city_admin)
    sign_in(city, store, city_admin.account_id)
    approved = _post(city, f"/admin/apps/{gateway.client_id}/status", "T-CITY",
                     status="approved")
    assert approved.status_code in (403, 404)
    with db.session() as session:
        for client_id, mac in ids.items():
            assert session.scalar(select(App.client_secret_mac)
                                  .where(App.client_id == client_id)) == mac
        assert session.scalar(select(App.status).where(
            App.client_id == gateway.client_id)) == "pending"


def test_a_district_does_not_undo_the_citys_suspension(
        client: TestClient, db: Database, store, settings: Settings, make_person) -> None:
    """A school's app may be approved or suspended by its district or by the city. The city
    suspends it (a leak, say); the district's administrator, also "above" the school,
    approves it again at once: the unit below overrides the unit above."""
    from directory.apps import register_app
    from directory.models import OrgKind
    from tests.idp.test_console_rules import place, sign_in, unit

    city_admin = make_person("c-sus", "pw-c-sus", role=Role.staff)  # makes T-CITY
    unit(db, "T-DIST", OrgKind.district)
    unit(db, "T-DSCHOOL", parent="T-DIST")
    place(db, city_admin.account_id, "T-CITY", Role.city_admin)
    district_admin = make_person("d-sus", "pw-d-sus", role=Role.staff)
    place(db, district_admin.account_id, "T-DIST", Role.district_admin)
    with db.session() as session:
        school = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "T-DSCHOOL"))
        app, _secret = register_app(session, settings, name="泄露的应用", org_unit_id=school,
                                    metadata={"redirect_uris": [REDIRECT_URI]})
        client_id = app.client_id
    city = TestClient(client.app)
    sign_in(city, store, city_admin.account_id)
    suspended = _post(city, f"/admin/apps/{client_id}/status", "T-CITY", status="suspended")
    assert suspended.status_code == 303
    sign_in(client, store, district_admin.account_id)
    undone = _post(client, f"/admin/apps/{client_id}/status", "T-DIST", status="approved")
    assert undone.status_code == 403
    with db.session() as session:
        assert session.scalar(select(App.status).where(App.client_id == client_id)) \
            == "suspended"


def _district_with_school(db: Database, make_person):
    """T-DIST above T-DSCHOOL, and one person administering both (a head of the district's
    IT who also runs the school's), plus a second district administrator."""
    from directory.models import OrgKind
    from tests.idp.test_console_rules import place, unit

    both = make_person("d-both", "pw-d-both", role=Role.staff)
    unit(db, "T-DIST", OrgKind.district)
    unit(db, "T-DSCHOOL", parent="T-DIST")
    place(db, both.account_id, "T-DIST", Role.district_admin)
    place(db, both.account_id, "T-DSCHOOL", Role.school_admin)
    other = make_person("d-other", "pw-d-other", role=Role.staff)
    place(db, other.account_id, "T-DIST", Role.district_admin)
    return both, other


def test_nobody_approves_an_app_they_registered(client: TestClient, db: Database, store,
                                               make_person) -> None:
    """The rule is per person, not per unit: who administers a school and its district
    registers as the school and cannot approve as the district; the district's other
    administrator can. Suspending stays open to them (stopping an app is never risky)."""
    from tests.idp.test_console_rules import sign_in

    both, other = _district_with_school(db, make_person)
    sign_in(client, store, both.account_id)
    registered = _post(client, "/admin/apps/register", "T-DSCHOOL", name="四眼",
                       redirect_uris=REDIRECT_URI, kind="web")
    client_id = CLIENT_ID.search(client.get(registered.headers["location"]).text).group(1)
    with db.session() as session:
        assert session.scalar(select(App.registered_by).where(App.client_id == client_id)) \
            == f"account:{both.account_id}"
    listed = client.get("/admin/apps", params={"unit": "T-DIST"}).text
    assert "data-own-app" in listed and 'data-app-action="status"' not in listed
    own = _post(client, f"/admin/apps/{client_id}/status", "T-DIST", status="approved")
    assert own.status_code == 403 and "另一位" in own.text
    with db.session() as session:
        assert session.scalar(select(App.status).where(App.client_id == client_id)) \
            == "pending"

    second = TestClient(client.app)
    sign_in(second, store, other.account_id)
    approved = _post(second, f"/admin/apps/{client_id}/status", "T-DIST", status="approved")
    assert approved.status_code == 303
    stopped = _post(client, f"/admin/apps/{client_id}/status", "T-DIST", status="suspended")
    assert stopped.status_code == 303
    again = _post(client, f"/admin/apps/{client_id}/status", "T-DIST", status="approved")
    assert again.status_code == 403
    with db.session() as session:
        assert session.scalar(select(App.status).where(App.client_id == client_id)) \
            == "suspended"


def _uris_of(db: Database, client_id: str) -> list[str]:
    import json

    with db.session() as session:
        return json.loads(session.scalar(
            select(App.metadata_json).where(App.client_id == client_id)))["redirect_uris"]


def test_redirect_uris_change_until_approval_then_by_the_approver(
        client: TestClient, db: Database, store, make_person) -> None:
    """Pending: the app's unit changes its redirect URIs (the approver sees the final ones).
    Approved: a code could be sent anywhere, so only who may approve it changes them; the
    new URIs work at once in this process, the old ones no longer."""
    from tests.idp.test_console_rules import sign_in

    both, other = _district_with_school(db, make_person)
    sign_in(client, store, both.account_id)
    registered = _post(client, "/admin/apps/register", "T-DSCHOOL", name="换地址",
                       redirect_uris="https://old.example.edu.cn/cb", kind="public")
    client_id = CLIENT_ID.search(client.get(registered.headers["location"]).text).group(1)
    listed = client.get("/admin/apps", params={"unit": "T-DSCHOOL"}).text
    assert "data-edit-uris" in listed
    bad = _post(client, f"/admin/apps/{client_id}/redirect-uris", "T-DSCHOOL",
                redirect_uris="https://x.example.edu.cn/cb#frag")
    assert bad.status_code == 400 and "data-error" in bad.text and "#frag" in bad.text
    empty = _post(client, f"/admin/apps/{client_id}/redirect-uris", "T-DSCHOOL",
                  redirect_uris=" \n ")
    assert empty.status_code == 400
    assert _uris_of(db, client_id) == ["https://old.example.edu.cn/cb"]
    changed = _post(client, f"/admin/apps/{client_id}/redirect-uris", "T-DSCHOOL",
                    redirect_uris=f"{REDIRECT_URI}\nhttps://old.example.edu.cn/cb")
    assert changed.status_code == 303 and "done=updated" in changed.headers["location"]
    assert _uris_of(db, client_id) == [REDIRECT_URI, "https://old.example.edu.cn/cb"]
    with db.session() as session:
        detail = session.scalar(select(AuditEvent.detail).where(
            AuditEvent.action == "app.update", AuditEvent.target == f"app:{client_id}"))
    assert json.loads(detail) == {"redirect_uris": [REDIRECT_URI, "https://old.example.edu.cn/cb"],
                                  "as": "administrator@T-DSCHOOL"}

    approver = TestClient(client.app)
    sign_in(approver, store, other.account_id)
    assert _post(approver, f"/admin/apps/{client_id}/status", "T-DIST",
                 status="approved").status_code == 303
    for unit_code in ("T-DSCHOOL", "T-DIST"):  # the registrant, in either of their units
        late = _post(client, f"/admin/apps/{client_id}/redirect-uris", unit_code,
                     redirect_uris="https://evil.example.com/cb")
        assert late.status_code == 403, unit_code
    assert "data-edit-uris" not in client.get("/admin/apps", params={"unit": "T-DSCHOOL"}).text
    assert _post(approver, f"/admin/apps/{client_id}/redirect-uris", "T-DIST",
                 redirect_uris=REDIRECT_URI).status_code == 303
    assert _uris_of(db, client_id) == [REDIRECT_URI]
    gone = client.get("/oauth2/authorize", params={
        "client_id": client_id, "response_type": "code", "scope": "openid",
        "redirect_uri": "https://old.example.edu.cn/cb", "code_challenge": "x" * 43,
        "code_challenge_method": "S256"}, follow_redirects=False)
    assert gone.status_code == 400 and "location" not in gone.headers


def test_a_pairwise_apps_redirect_uris_are_the_operators(
        client: TestClient, school, db: Database, settings: Settings) -> None:  # noqa: F811
    """A pairwise app's sector is its redirect host: a change would give everyone a new
    sub, so ``idp apps update`` (which refuses a sector change) is the only way."""
    from directory.apps import register_app

    admin, *_ = school
    with db.session() as session:
        at = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "T-SCHOOL"))
        app, _ = register_app(session, settings, name="成对", org_unit_id=at,
                              status=AppStatus.pending,
                              metadata={"redirect_uris": ["https://pw.example.edu.cn/cb"],
                                        "subject_type": "pairwise"})
        client_id = app.client_id
    sign_in_to_console(client, admin.login, admin.password)
    assert "data-edit-uris" not in client.get("/admin/apps", params={"unit": "T-SCHOOL"}).text
    tried = _post(client, f"/admin/apps/{client_id}/redirect-uris", "T-SCHOOL",
                  redirect_uris="https://other.example.edu.cn/cb")
    assert tried.status_code == 403
    assert _uris_of(db, client_id) == ["https://pw.example.edu.cn/cb"]



def test_an_app_name_with_control_characters_is_refused_and_listed_as_text(
        client: TestClient, school, db: Database, settings: Settings,  # noqa: F811
        monkeypatch, tmp_path) -> None:
    """People read an app's name on the consent page and operators in ``idp apps list``: a
    direction mark would disguise it on the one, an escape sequence or rich markup would
    act on the other's terminal."""
    from typer.testing import CliRunner

    from idp.cli import app as cli

    admin, *_ = school
    sign_in_to_console(client, admin.login, admin.password)
    for name in ("成绩\u202e查询", "x\x1b[2Jy", "a\nb"):
        refused = _post(client, "/admin/apps/register", "T-SCHOOL", name=name,
                        redirect_uris=REDIRECT_URI, kind="web")
        assert refused.status_code == 400 and "data-error" in refused.text, repr(name)
    made = _post(client, "/admin/apps/register", "T-SCHOOL", name="[/bold] 成绩[link=x]",
                 redirect_uris=REDIRECT_URI, kind="web")
    assert made.status_code == 303
    url = db.engine.url.render_as_string(hide_password=False)
    for key, value in {"IDP_VAR_DIR": str(tmp_path), "IDP_DATABASE_URL": url,
                       "IDP_MASTER_KEY": settings.master_key}.items():
        monkeypatch.setenv(key, value)
    listed = CliRunner().invoke(cli, ["apps", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, repr(listed.exception)
    assert "[/bold] 成绩[link=x]" in listed.output
