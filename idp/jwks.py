"""The published JSON Web Key Sets (RFC 7517), cacheable with ETag.

``/oauth2/jwks`` (the discovery ``jwks_uri``) holds the standard keys (RS256,
ES256, EdDSA) only, so that JOSE libraries which reject a whole set containing
an unknown curve keep working; ``/oauth2/jwks/all`` adds the SM2 keys for
clients whose ID tokens are SM2-signed. See docs/sm2-jose.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.oidc import cors

router = APIRouter(tags=["oidc"])

CACHE_CONTROL = "public, max-age=300, must-revalidate"


def _jwks_response(request: Request, which: str) -> Response:
    cors.share_publicly(request)
    body, etag = request.app.state.keys.jwks(which)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/jwk-set+json", headers=headers)


@router.get("/oauth2/jwks", summary="JWKS of the standard algorithms (discovery jwks_uri)")
def standard_jwks(request: Request) -> Response:
    return _jwks_response(request, "standard")


@router.get("/oauth2/jwks/all", summary="JWKS including SM2 keys")
def all_jwks(request: Request) -> Response:
    return _jwks_response(request, "all")
