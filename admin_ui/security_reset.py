"""Second-factor reset for administrators (``/api/admin``): the lost or replaced phone.

- ``POST /api/admin/people/{uid}/second-factors/reset`` with an optional JSON body
  ``{"passkeys": true}`` — removes the person's authenticator apps and recovery codes
  (and passkeys when asked), see ``mfa.reset``. Answers what was removed.

Authentication is a bearer API token with the ``security:mfa-reset`` permission, a
permission of its own: a reset lets the password alone reach the second-factor set-up,
so it is given to fewer people than unlocking. People are visible only inside the token's
org subtree (404 otherwise). Every reset is audited with the token's name as the actor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from admin_ui.security_locks import account_id_of, db_session
from core.audit import Context
from directory.api_tokens import TokenScope, require
from mfa import reset

PERMISSION = "security:mfa-reset"
router = APIRouter(prefix="/api/admin", tags=["admin"])


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passkeys: bool = False  # also remove the passkeys (they may be on the lost phone)


def _scope(request: Request, session: Session = Depends(db_session)) -> TokenScope:
    return require(request, session, request.app.state.settings, PERMISSION, "admin")


@router.post("/people/{uid}/second-factors/reset")
def reset_second_factors(request: Request, uid: str, body: ResetRequest | None = None,
                         session: Session = Depends(db_session),
                         scope: TokenScope = Depends(_scope)) -> dict[str, Any]:
    account_id = account_id_of(session, scope, uid)
    removed = reset.reset(session, request.app.state.store, account_id,
                          passkeys=bool(body and body.passkeys),
                          actor=f"api-token:{scope.name}", context=Context.of(request))
    return {"reset": True, "removed": {"authenticator_apps": removed.authenticator_apps,
                                       "recovery_codes": removed.recovery_codes,
                                       "passkeys": removed.passkeys}}
