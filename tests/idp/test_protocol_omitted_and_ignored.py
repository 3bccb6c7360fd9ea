"""Protocol edges a review against OIDC Core 1.0 and RFC 6749 found: an empty parameter is
omitted wherever it comes, the claims parameter must be text, and prompt=none ignores an
unconsented offline_access (each failed on the code as reviewed)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _token(client: TestClient, registered, code: str):
    return client.post("/oauth2/token", auth=(registered.client_id, registered.secret),
                       data={"grant_type": "authorization_code", "code": code,
                             "redirect_uri": REDIRECT_URI})


# -- RFC 6749 3.1 / 3.2: a parameter sent without a value is omitted -------------------


def test_an_empty_repeat_after_a_value_is_not_a_repeated_parameter(
        client: TestClient, make_client) -> None:
    """RFC 6749 3.1: "Parameters sent without a value MUST be treated as if they were
    omitted from the request." ``scope=&scope=x`` is taken already; ``scope=x&scope=``
    is the same request and must be taken too (the authorization endpoint does so)."""
    registered = make_client()
    auth = (registered.client_id, registered.secret)
    for body in (b"grant_type=client_credentials&scope=&scope=api.read",
                 b"grant_type=client_credentials&scope=api.read&scope="):
        answer = client.post("/oauth2/token", content=body, headers=FORM, auth=auth)
        assert answer.status_code == 200, (body, answer.text)
        assert answer.json()["scope"] == "api.read"


# -- never a 500: the claims parameter ---------------------------------------------------


def test_a_claims_sub_value_that_is_no_text_is_invalid_request_not_a_500(
        client: TestClient, make_client) -> None:
    """OIDC Core 5.5 ``claims`` is JSON from the browser; ``\\ud800`` (a lone surrogate,
    no Unicode text) or ``\\u0000`` (refused by PostgreSQL) in a ``sub`` value reached the
    pairwise-subject query and crashed it (UnicodeEncodeError: a 500)."""
    registered = make_client(subject_type="pairwise")
    for value in ("pw-\\ud800", "pw-\\u0000"):
        claims = '{"id_token":{"sub":{"value":"' + value + '"}}}'
        answer = flow.authorize(client, client_id=registered.client_id, claims=claims)
        assert answer.status_code == 303, (value, answer.status_code)
        params = flow.Redirect(answer.headers["location"]).params
        assert params["error"] == "invalid_request", params
        assert params["state"] == "st-1"


# -- OIDC Core 11: offline_access without consent is ignored, not refused ---------------


def test_prompt_none_ignores_offline_access_a_third_party_app_has_no_consent_for(
        client: TestClient, make_client, make_person) -> None:
    """OIDC Core 11: without consent to offline access the OP "MUST ignore the
    offline_access request". A third-party app the person allowed ``openid profile``
    asking again with ``prompt=none`` and ``offline_access`` gets a code for ``openid
    profile`` (as a first-party app does), not ``consent_required``."""
    registered, person = make_client(first_party=False), make_person()
    first = flow.code_flow(client, registered.client_id, person, scope="openid profile",
                           prompt="consent")
    assert _token(client, registered, first.params["code"]).status_code == 200
    again = flow.authorize(client, client_id=registered.client_id, prompt="none",
                           scope="openid profile offline_access")
    assert again.status_code == 303
    params = flow.Redirect(again.headers["location"]).params
    assert "code" in params, params
    answer = _token(client, registered, params["code"])
    assert set(answer.json()["scope"].split()) == {"openid", "profile"}
