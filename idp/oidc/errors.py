"""OAuth 2.0 / OpenID Connect error responses (RFC 6749 section 4.1.2.1 and 5.2).

An :class:`OAuthError` becomes JSON on back-channel endpoints and a redirect to
the client (with ``state`` and ``iss``) on the authorization endpoint; when the
redirect URI itself is not trusted it is shown to the person as a page instead.
"""

from __future__ import annotations

import re

from fastapi.responses import JSONResponse

# RFC 6749 error_description: %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash)
_NOT_ALLOWED = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


def clean_description(text: str) -> str:
    return _NOT_ALLOWED.sub(" ", text)[:300]


class OAuthError(Exception):
    def __init__(self, error: str, description: str = "", *, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = clean_description(description)
        self.status = status
        self.headers = headers or {}

    def params(self) -> dict[str, str]:
        params = {"error": self.error}
        if self.description:
            params["error_description"] = self.description
        return params

    def json_response(self) -> JSONResponse:
        return JSONResponse(self.params(), status_code=self.status,
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache",
                                     **self.headers})


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    """401 with a challenge whatever the method tried (RFC 9110 15.5.2: every 401 carries
    ``WWW-Authenticate``; RFC 6749 5.2: the one a client that sent ``Authorization`` used;
    Basic is the HTTP scheme clients authenticate with here)."""
    return OAuthError("invalid_client", description, status=401,
                      headers={"WWW-Authenticate": 'Basic realm="token"'})


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)
