"""OpenID Provider metadata (OpenID Connect Discovery 1.0, RFC 8414).

Everything supported is advertised and nothing else. ``jwks_uri`` holds the
standard keys; ``sm2_jwks_uri`` (an extension member) adds the SM2 keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from directory.apps import ASSERTION_ALGS as ASSERTION_ALGS_OF_CLIENTS
from idp.oidc import cors
from idp.oidc.scopes import SCOPES
from mfa import policy

router = APIRouter(tags=["oidc"])

CLAIMS = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
          "at_hash", "c_hash", "name", "family_name", "given_name", "gender", "birthdate",
          "preferred_username", "locale", "updated_at", "email", "email_verified",
          "phone_number", "phone_number_verified", "address", "edu_roles", "school", "grade",
          "class", "org_path"]
ASSERTION_ALGS = list(ASSERTION_ALGS_OF_CLIENTS)  # what clients may sign assertions with


def metadata(issuer: str, signing_algs: Sequence[str],
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``signing_algs``: the algorithms this deployment keeps keys for (``IDP_SIGNING_ALGS``),
    the only ones ID tokens, UserInfo and logout tokens can be signed with."""
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        "sm2_jwks_uri": f"{issuer}/oauth2/jwks/all",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "pushed_authorization_request_endpoint": f"{issuer}/oauth2/par",
        "require_pushed_authorization_requests": False,
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": list(signing_algs),
        "userinfo_signing_alg_values_supported": list(signing_algs),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": ASSERTION_ALGS,
        "claims_supported": CLAIMS,
        "claims_parameter_supported": True,
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": ASSERTION_ALGS,
        "require_signed_request_object": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "ui_locales_supported": ["zh-CN", "en"],
        # the directory holds every claim in one language (names as registered)
        "claims_locales_supported": ["zh-CN"],
        "display_values_supported": ["page", "touch"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": policy.SUPPORTED,
    }
    document.update(extra or {})
    return document


@router.get("/.well-known/openid-configuration", summary="OpenID Provider metadata")
def openid_configuration(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    cors.share_publicly(request)
    return JSONResponse(metadata(settings.issuer, settings.signing_algs),
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
def oauth_metadata(request: Request) -> JSONResponse:
    return openid_configuration(request)
