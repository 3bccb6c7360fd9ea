"""Fixtures for the protocol tests: registered clients and a demo person."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from core.db import Database
from core.settings import Settings
from directory.apps import register_app

REDIRECT_URI = "https://app.example.edu.cn/callback"


@dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    metadata: dict[str, Any]


@pytest.fixture
def make_client(db: Database, settings: Settings):
    def make(first_party: bool = True, **metadata: Any) -> RegisteredClient:
        values = {
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": "SM2",
            "scope": "openid profile email phone edu offline_access api.read api.write",
            **metadata,
        }
        with db.session() as session:
            app, secret = register_app(session, settings, name="测试应用", metadata=metadata
                                       | {k: v for k, v in values.items() if k not in metadata},
                                       first_party=first_party)
        return RegisteredClient(app.client_id, secret, values)

    return make
