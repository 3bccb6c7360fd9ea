"""Pairwise subject identifiers (OpenID Connect Core 8.1): apps of different sectors
cannot match their users; one app always sees the same id; nothing inside breaks."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import update

from core.gm import jose as gm_jose
from directory.models import Account
from tests.idp import flow

CLASSROOM = "https://classroom.example.cn/callback"
LIBRARY = "https://library.example.cn/callback"


def _tokens(client: TestClient, registered, person, redirect_uri: str, **params: str) -> dict:
    code = flow.code_flow(client, registered.client_id, person, redirect_uri=redirect_uri,
                          scope="openid profile offline_access", **params).params["code"]
    response = client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                           data={"grant_type": "authorization_code", "code": code,
                                 "redirect_uri": redirect_uri})
    assert response.status_code == 200, response.text
    return response.json()


def _sub(client: TestClient, id_token: str) -> str:
    jwks = gm_jose.import_key_set(client.get("/oauth2/jwks/all").json())
    return json.loads(gm_jose.verify_jws(id_token, jwks))["sub"]


def _pairwise_client(make_client, redirect_uri: str, **metadata):
    return make_client(subject_type="pairwise", redirect_uris=[redirect_uri], **metadata)


def test_each_sector_sees_its_own_stable_sub(client: TestClient, make_client,
                                             make_person) -> None:
    person = make_person()
    classroom = _pairwise_client(make_client, CLASSROOM)
    classroom_again = _pairwise_client(make_client, CLASSROOM.replace("callback", "cb2"))
    library = _pairwise_client(make_client, LIBRARY)
    public = make_client()
    first = _sub(client, _tokens(client, classroom, person, CLASSROOM)["id_token"])
    assert first.startswith("pw-") and first != person.sub
    assert _sub(client, _tokens(client, classroom, person, CLASSROOM)["id_token"]) == first
    same_sector = _tokens(client, classroom_again, person, CLASSROOM.replace("callback", "cb2"))
    assert _sub(client, same_sector["id_token"]) == first  # one sector: one id
    other = _sub(client, _tokens(client, library, person, LIBRARY)["id_token"])
    assert other.startswith("pw-") and other not in (first, person.sub)
    code = flow.code_flow(client, public.client_id, person).params["code"]
    public_tokens = client.post("/oauth2/token", auth=(public.client_id, public.secret), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": flow.REDIRECT_URI}).json()
    assert _sub(client, public_tokens["id_token"]) == person.sub


def test_a_sector_identifier_joins_hosts_into_one_sector(client: TestClient, make_client,
                                                          make_person) -> None:
    """An app on two hosts with a ``sector_identifier_uri`` (its document, fetched at
    registration by ``idp apps``, lists both): one id, whichever host the code went to; a
    second app naming the same document shares it; the host alone is another sector."""
    sector = "https://sso.vendor.example.cn/sector.json"
    www, mobile = "https://www.vendor.example.cn/cb", "https://m.vendor.example.cn/cb"
    person = make_person()
    vendor = make_client(subject_type="pairwise", redirect_uris=[www, mobile],
                         sector_identifier_uri=sector)
    sibling = make_client(subject_type="pairwise", redirect_uris=[www],
                          sector_identifier_uri=sector)
    alone = _pairwise_client(make_client, www)
    first = _sub(client, _tokens(client, vendor, person, www)["id_token"])
    assert first.startswith("pw-")
    assert _sub(client, _tokens(client, vendor, person, mobile)["id_token"]) == first
    assert _sub(client, _tokens(client, sibling, person, www)["id_token"]) == first
    assert _sub(client, _tokens(client, alone, person, www)["id_token"]) not in (
        first, person.sub)


def test_userinfo_introspection_and_refresh_speak_the_apps_sub(
        client: TestClient, make_client, make_person, db) -> None:
    person = make_person()
    classroom = _pairwise_client(make_client, CLASSROOM)
    auth = (classroom.client_id, classroom.secret)
    tokens = _tokens(client, classroom, person, CLASSROOM)
    sub = _sub(client, tokens["id_token"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    userinfo = client.get("/oauth2/userinfo", headers=bearer).json()
    assert userinfo["sub"] == sub and userinfo["name"] == "赵同学"
    access = client.post("/oauth2/introspect", auth=auth,
                         data={"token": tokens["access_token"]}).json()
    assert access["active"] is True and access["sub"] == sub
    refresh = client.post("/oauth2/introspect", auth=auth, data={
        "token": tokens["refresh_token"], "token_type_hint": "refresh_token"}).json()
    assert refresh["active"] is True and refresh["sub"] == sub
    rotated = client.post("/oauth2/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    assert _sub(client, rotated["id_token"]) == sub
    # a suspension reaches the pairwise tokens too
    with db.session() as session:
        session.execute(update(Account).where(Account.id == person.account_id).values(
            disabled=True))
    assert client.get("/oauth2/userinfo", headers={
        "Authorization": f"Bearer {rotated['access_token']}"}).status_code == 401


def test_the_apps_own_sub_names_the_person_in_requests(client: TestClient, make_client,
                                                       make_person) -> None:
    """id_token_hint and a claims sub value carry the pairwise id: it names the person
    signed in; another sector's id or the public sub names nobody (no correlation
    oracle for apps that share their ids)."""
    person = make_person()
    classroom = _pairwise_client(make_client, CLASSROOM)
    library = _pairwise_client(make_client, LIBRARY)
    tokens = _tokens(client, classroom, person, CLASSROOM)
    sub = _sub(client, tokens["id_token"])
    library_sub = _sub(client, _tokens(client, library, person, LIBRARY)["id_token"])

    def silent(**params: str) -> dict[str, str]:
        answer = flow.authorize(client, client_id=classroom.client_id, redirect_uri=CLASSROOM,
                                prompt="none", **params)
        return flow.Redirect(answer.headers["location"]).params

    assert "code" in silent(id_token_hint=tokens["id_token"])
    assert "code" in silent(claims=json.dumps({"id_token": {"sub": {"value": sub}}}))
    for stranger in (library_sub, person.sub, "pw-" + "0" * 32):
        asked = silent(claims=json.dumps({"id_token": {"sub": {"value": stranger}}}))
        assert asked["error"] == "login_required", stranger


def test_discovery_offers_pairwise(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["subject_types_supported"] == ["public", "pairwise"]


def test_each_sector_sees_its_own_sid(client: TestClient, make_client, make_person) -> None:
    """The session id would join two sectors' ids (one browser session, two apps)."""
    person = make_person()
    classroom = _pairwise_client(make_client, CLASSROOM)
    library = _pairwise_client(make_client, LIBRARY)
    public, other_public = make_client(), make_client()
    jwks = gm_jose.import_key_set(client.get("/oauth2/jwks/all").json())

    def sid(registered, redirect_uri: str) -> str:
        tokens = _tokens(client, registered, person, redirect_uri)
        return json.loads(gm_jose.verify_jws(tokens["id_token"], jwks))["sid"]

    sids = {sid(classroom, CLASSROOM), sid(library, LIBRARY),
            sid(public, flow.REDIRECT_URI)}
    assert len(sids) == 3
    assert sid(other_public, flow.REDIRECT_URI) in sids  # public apps share the session's
    assert sid(classroom, CLASSROOM) in sids  # stable within the sector


def test_the_apps_own_sid_in_a_hint_signs_out_at_once(client: TestClient, make_client,
                                                      make_person) -> None:
    person = make_person()
    classroom = _pairwise_client(make_client, CLASSROOM,
                                 post_logout_redirect_uris=["https://classroom.example.cn/"])
    tokens = _tokens(client, classroom, person, CLASSROOM)
    out = client.get("/oauth2/logout", params={
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": "https://classroom.example.cn/"}, follow_redirects=False)
    assert out.status_code == 303  # no question: the hint names this session


def test_pairwise_needs_a_host_of_the_apps_own(make_client) -> None:
    import pytest

    for loopback in ("http://127.0.0.1/cb", "http://localhost:8080/cb", "http://[::1]/cb"):
        with pytest.raises(ValueError, match="host of the app's own"):
            _pairwise_client(make_client, loopback)
