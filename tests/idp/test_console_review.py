"""What a security review of the console found (each failed on the code as reviewed): the
approver approves what their page showed; a decision taken on an app (approved, then
suspended) does not hand its redirect URIs back to the registrant or the app's unit; a
redirect URI reads as where it goes; the helpdesk helps no fellow member and learns no
administrator's post outside its unit."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import Database
from core.settings import Settings
from directory.apps import App, AppStatus, register_app
from directory.models import OrgUnit, Role
from tests.conftest import PG_ADMIN_URL
from tests.idp.conftest import REDIRECT_URI
from tests.idp.test_console_apps import CLIENT_ID, _district_with_school, _post, _uris_of
from tests.idp.test_console_rules import place, sign_in, uid

EVIL = "https://evil.example.com/cb"


def _form_fields(page: str, client_id: str, action: str, value: str) -> dict[str, str]:
    """The hidden fields of the app's form ``action`` (its ``status`` = ``value``) as the
    page showed them: what the browser sends when the button is pressed later."""
    for form in re.findall(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', page,
                           re.S):
        path, body = form
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
                                 body))
        if path == f"/admin/apps/{client_id}/{action}" and fields.get("status") == value:
            return {k: html.unescape(v) for k, v in fields.items()}
    raise AssertionError(f"no {action}={value} form for {client_id}")


def _registered_by_one_approved_by_another(client: TestClient, db: Database, store,
                                           make_person, name: str) -> tuple[str, TestClient]:
    """The school's app, registered in ``client`` by who administers school and district;
    and the browser of the district's other administrator, who may approve it."""
    both, other = _district_with_school(db, make_person)
    sign_in(client, store, both.account_id)
    registered = _post(client, "/admin/apps/register", "T-DSCHOOL", name=name,
                       redirect_uris=REDIRECT_URI, kind="public")
    client_id = CLIENT_ID.search(client.get(registered.headers["location"]).text).group(1)
    approver = TestClient(client.app)
    sign_in(approver, store, other.account_id)
    return client_id, approver


def _status(db: Database, client_id: str) -> str:
    with db.session() as session:
        return session.scalar(select(App.status).where(App.client_id == client_id))


def test_the_approver_approves_the_redirect_uris_their_page_showed(
        client: TestClient, db: Database, store, make_person) -> None:
    """The school's administrator registers a pending app with a harmless redirect URI. The
    district's other administrator opens the apps page and sees it; meanwhile the
    registrant (allowed: still pending) changes the URI to their own host; the approver
    presses Approve on the page they loaded. The app is approved for a URI nobody but the
    registrant saw: an authorization code of every pupil who signs in goes to evil.example.
    The approval must be refused (the page changed), not applied."""
    client_id, approver = _registered_by_one_approved_by_another(client, db, store,
                                                                make_person, "作业")
    seen = approver.get("/admin/apps", params={"unit": "T-DIST"}).text
    assert REDIRECT_URI in seen and EVIL not in seen
    form = _form_fields(seen, client_id, "status", "approved")

    swapped = _post(client, f"/admin/apps/{client_id}/redirect-uris", "T-DSCHOOL",
                    redirect_uris=EVIL)
    assert swapped.status_code == 303
    late = approver.post(f"/admin/apps/{client_id}/status", data=form,
                         follow_redirects=False)
    assert late.status_code == 409, late.status_code  # was 303: approved unseen
    assert "重新查看" in late.text
    assert _status(db, client_id) == "pending"
    forged = approver.post(f"/admin/apps/{client_id}/status", data={
        **form, "seen": ""}, follow_redirects=False)
    assert forged.status_code == 409  # the page's fingerprint is not optional

    again = approver.get("/admin/apps", params={"unit": "T-DIST"}).text
    assert EVIL in again  # now they see it, and decide on it
    fresh = _form_fields(again, client_id, "status", "approved")
    assert approver.post(f"/admin/apps/{client_id}/status", data=fresh,
                         follow_redirects=False).status_code == 303


def test_a_suspension_does_not_hand_the_redirect_uris_back_to_the_registrant(
        client: TestClient, db: Database, store, make_person) -> None:
    """docs/console.md: "the registrant cannot change an approved app's redirect URIs". The
    registrant also administers the district, so they may suspend it ("stopping an app is
    never the risky direction"); a suspended app is not "approved", and may_change_uris
    opened its URIs again to the registrant (and to every administrator of the school).
    The app's approver re-approves the app they approved before, which now redirects
    elsewhere."""
    client_id, approver = _registered_by_one_approved_by_another(client, db, store,
                                                                make_person, "停用再改")
    assert _post(approver, f"/admin/apps/{client_id}/status", "T-DIST",
                 status="approved").status_code == 303
    assert _post(client, f"/admin/apps/{client_id}/status", "T-DIST",
                 status="suspended").status_code == 303
    for unit_code in ("T-DSCHOOL", "T-DIST"):
        tried = _post(client, f"/admin/apps/{client_id}/redirect-uris", unit_code,
                      redirect_uris=EVIL)
        assert tried.status_code == 403, (unit_code, tried.status_code)
    assert "data-edit-uris" not in client.get("/admin/apps",
                                              params={"unit": "T-DSCHOOL"}).text
    assert _uris_of(db, client_id) == [REDIRECT_URI]
    # the approver still mends them (as for an approved app), and re-approves
    assert _post(approver, f"/admin/apps/{client_id}/redirect-uris", "T-DIST",
                 redirect_uris="https://new.example.edu.cn/cb").status_code == 303


def test_the_operators_suspension_leaves_the_redirect_uris_to_the_operators(
        client: TestClient, db: Database, store, settings: Settings, make_person) -> None:
    """An app the operators registered for a school (``idp apps register --org``) and
    then suspended (``idp apps status``, status_set_at ""): no console administrator
    decides on it, yet the school's administrator rewrote its redirect URIs, which the
    operators' ``idp apps status approved`` then approves without showing them."""
    admin = make_person("a-ops-sus", "pw-a-ops-sus", role=Role.staff)
    place(db, admin.account_id, "T-SCHOOL", Role.school_admin)
    with db.session() as session:
        school = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "T-SCHOOL"))
        app, _ = register_app(session, settings, name="运维登记", org_unit_id=school,
                              metadata={"redirect_uris": [REDIRECT_URI],
                                        "token_endpoint_auth_method": "none"})
        app.status, app.status_set_at = AppStatus.suspended.value, ""  # idp apps status
        client_id = app.client_id
    sign_in(client, store, admin.account_id)
    tried = _post(client, f"/admin/apps/{client_id}/redirect-uris", "T-SCHOOL",
                  redirect_uris=EVIL)
    assert tried.status_code == 403, tried.status_code
    assert _uris_of(db, client_id) == [REDIRECT_URI]


def test_a_redirect_uri_is_shown_to_the_approver_as_it_goes(
        client: TestClient, db: Database, store, make_person) -> None:
    """Four eyes rest on the approver reading the URIs. A registrant writes one that reads
    as the school's own address on the apps page but sends the code elsewhere: "⁄" (U+2044
    FRACTION SLASH) for "/", then a run of ideographic spaces (U+3000, wider than the
    page) before "@evil.example.com": the host is evil.example.com, the part the approver
    reads is user information. validate_metadata only refuses ASCII spaces and controls;
    the console refuses what is not plain ASCII and any user information."""
    both, _other = _district_with_school(db, make_person)
    sign_in(client, store, both.account_id)
    spoofed = ("https://app.example.edu.cn\u2044callback" + "\u3000" * 300
               + "@evil.example.com/cb")
    for uris in (spoofed, "https://app.example.edu.cn@evil.example.com/cb",
                 "https://app.example.edu.cn/cb\u202e"):
        tried = _post(client, "/admin/apps/register", "T-DSCHOOL", name="看似本校",
                      redirect_uris=uris, kind="public")
        assert tried.status_code == 400, (uris[-30:], tried.status_code)
    with db.session() as session:
        assert session.scalar(select(App).where(App.name == "看似本校")) is None


@pytest.mark.skipif(not PG_ADMIN_URL, reason="needs two concurrent transactions")
def test_an_approval_and_a_change_of_uris_at_once_do_not_both_commit(
        db: Database, settings: Settings, make_person) -> None:
    """The approver's request checks the app as their page showed it and approves it; at the
    same moment the registrant's request, which read the app while still pending, writes
    new URIs. Under READ COMMITTED both committed (each UPDATE touches its own columns):
    an approved app with URIs the approver never saw. ``_app_of`` locks the app's row: the
    second request waits, reads the approval, and is refused."""
    import threading
    import time

    from admin_ui.console import PERMISSIONS, Administrator
    from admin_ui.console_apps import _app_of, may_change_uris
    from directory.scopes import PersonScope

    both, other = _district_with_school(db, make_person)
    with db.session() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "T-DSCHOOL"))
        app, _ = register_app(session, settings, name="同时", org_unit_id=school.id,
                              status=AppStatus.pending,
                              metadata={"redirect_uris": [REDIRECT_URI],
                                        "token_endpoint_auth_method": "none"})
        app.registered_by = f"account:{both.account_id}"
        client_id = app.client_id

    def acting(session, account_id: int, code: str) -> Administrator:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        return Administrator(PersonScope(unit.path, unit.id, PERMISSIONS, account_id), unit,
                             [unit], "sid", True)

    first, second = db.sessions(), db.sessions()
    refused = []

    def change() -> None:
        admin = acting(second, both.account_id, "T-DSCHOOL")
        found, at = _app_of(second, admin, client_id)
        if may_change_uris(admin, at, found):
            found.metadata_json = json.dumps({"redirect_uris": [EVIL],
                                              "token_endpoint_auth_method": "none"})
        else:
            refused.append(True)
        second.commit()

    try:
        approver = acting(first, other.account_id, "T-DIST")
        found, _at = _app_of(first, approver, client_id)
        found.status, found.status_set_at = "approved", approver.unit.path
        other_request = threading.Thread(target=change)
        other_request.start()
        time.sleep(1)
        first.commit()
        other_request.join(30)
        assert not other_request.is_alive()
    finally:
        first.close()
        second.close()
    assert _status(db, client_id) == "approved"
    assert _uris_of(db, client_id) == [REDIRECT_URI] and refused


def test_the_helpdesk_does_not_take_over_a_fellow_helpdesk_member(
        client: TestClient, db: Database, store, make_person) -> None:
    """Two teachers on the school's helpdesk. One gives the other a temporary password and
    removes their second factors, signs in as them (a first factor enrolled on a password
    alone: docs/mfa.md's known risk) and keeps the console under the colleague's name
    after their own helpdesk role ends: every action then audited as the colleague. The
    helpdesk's accounts are the console's: helped by the unit's administrators."""
    from tests.idp.test_console_helpdesk import _post as post_as

    first = make_person("t-hd1", "pw-hd1", name="服务台甲", role=Role.teacher)
    second = make_person("t-hd2", "pw-hd2", name="服务台乙", role=Role.teacher)
    for person in (first, second):
        place(db, person.account_id, "T-SCHOOL", Role.helpdesk)
    sign_in(client, store, first.account_id)
    target = uid(db, "服务台乙")
    page = client.get(f"/admin/people/{target}", params={"unit": "T-SCHOOL"})
    assert page.status_code == 200 and 'data-action="password/reset"' not in page.text
    assert "服务台人员之间" in page.text  # why, in plain words
    for action in ("password/reset", "second-factors/reset"):
        tried = post_as(client, f"/admin/people/{target}/{action}", "T-SCHOOL")
        assert tried.status_code == 404, (action, tried.status_code)

    admin = TestClient(client.app)  # the school's administrator helps them
    boss = make_person("a-hd", "pw-a-hd", name="校管理员", role=Role.staff)
    place(db, boss.account_id, "T-SCHOOL", Role.school_admin)
    sign_in(admin, store, boss.account_id)
    assert post_as(admin, f"/admin/people/{target}/unlock", "T-SCHOOL").status_code == 303


def test_the_helpdesk_learns_no_administrators_post_outside_its_unit(
        client: TestClient, db: Database, store, make_person) -> None:
    """A teacher of the school who administers another school: the school's administrator
    reads "a current place outside", as the directory API would say; the school's
    helpdesk read "this person administers a unit", a post outside the unit that neither
    the directory API nor the school's administrator is shown."""
    from directory.models import OrgKind
    from tests.idp.test_console_rules import ELSEWHERE, unit

    desk = make_person("t-hd3", "pw-hd3", name="服务台丙", role=Role.teacher)
    place(db, desk.account_id, "T-SCHOOL", Role.helpdesk)
    teacher = make_person("t-hd4", "pw-hd4", name="兼任校长", role=Role.teacher)
    unit(db, "T-ELSE", OrgKind.school)
    place(db, teacher.account_id, "T-ELSE", Role.school_admin)
    sign_in(client, store, desk.account_id)
    page = client.get(f"/admin/people/{uid(db, '兼任校长')}", params={"unit": "T-SCHOOL"})
    assert page.status_code == 200 and ELSEWHERE in page.text, page.text[-2000:]
