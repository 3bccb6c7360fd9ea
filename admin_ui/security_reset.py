"""Resets for administrators (``/api/admin``): a lost phone, a forgotten password, a
stolen session.

- ``POST /api/admin/people/{uid}/second-factors/reset`` with an optional JSON body
  ``{"passkeys": true, "phone": true}`` — removes the person's authenticator apps and
  recovery codes (and passkeys when asked), and with ``phone`` suspends the SMS codes to
  the number on file (a stolen phone keeps its SIM), see ``mfa.reset``; permission
  ``security:mfa-reset``, a permission of its own: a reset lets the password alone reach
  the second-factor set-up, so it is given to fewer people than unlocking.
- ``POST /api/admin/people/{uid}/phone/restore`` — lifts that suspension (the phone is
  back); answers ``{"restored": true}``, or ``false`` when there was none. Same permission.
- ``POST /api/admin/people/{uid}/password/reset`` — a temporary password (answered once,
  ``no-store``, never logged) that must be replaced at the next sign-in; the account is
  signed out everywhere and its sign-in lock lifted; permission ``security:password-reset``.
- ``POST /api/admin/people/{uid}/sign-out`` — signs the account out everywhere (its SSO
  sessions and every token issued so far); permission ``security:unlock``, the helpdesk's.
  Answers ``{"signed_out": true, "sessions_ended": n}``.

Each of them ends the account's SSO sessions in every browser at once, and the apps signed
in to in them are told (back-channel logout), as a sign-out would.

People are visible only inside the token's org subtree (404 otherwise). Each action is
audited with the token's name as the actor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from admin_ui.security_locks import PERMISSION as UNLOCK_PERMISSION
from admin_ui.security_locks import account_id_of, db_session, token_scope
from core.audit import Context
from directory import people
from directory.api_tokens import TokenScope
from directory.models import Account
from idp import password_change, sessions
from mfa import reset

PERMISSION = "security:mfa-reset"
PASSWORD_PERMISSION = "security:password-reset"
router = APIRouter(prefix="/api/admin", tags=["admin"])


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # true or false, not "yes"
    passkeys: bool = False  # also remove the passkeys (they may be on the lost phone)
    phone: bool = False  # also suspend the SMS codes to the number on file (its SIM)


_scope, _password_scope, _unlock_scope = (
    token_scope(PERMISSION), token_scope(PASSWORD_PERMISSION), token_scope(UNLOCK_PERMISSION))


@router.post("/people/{uid}/second-factors/reset")
def reset_second_factors(request: Request, uid: str, body: ResetRequest | None = None,
                         session: Session = Depends(db_session),
                         scope: TokenScope = Depends(_scope)) -> dict[str, Any]:
    account_id = account_id_of(session, scope, uid)
    removed = reset.reset(session, request.app.state.store, account_id,
                          passkeys=bool(body and body.passkeys),
                          phone=bool(body and body.phone),
                          actor=scope.actor, context=Context.of(request))
    end_sessions(request, session, session.get(Account, account_id))
    return {"reset": True, "removed": {"authenticator_apps": removed.authenticator_apps,
                                       "recovery_codes": removed.recovery_codes,
                                       "passkeys": removed.passkeys}}


@router.post("/people/{uid}/phone/restore")
def restore_phone(request: Request, uid: str, session: Session = Depends(db_session),
                  scope: TokenScope = Depends(_scope)) -> dict[str, Any]:
    """Lift the suspension of the SMS codes to the person's number (``mfa.reset``)."""
    account_id = account_id_of(session, scope, uid)
    return {"restored": reset.restore_phone(session, account_id,
                                            actor=scope.actor,
                                            context=Context.of(request))}


@router.post("/people/{uid}/password/reset")
def reset_password(request: Request, uid: str, session: Session = Depends(db_session),
                   scope: TokenScope = Depends(_password_scope)) -> JSONResponse:
    account = session.get(Account, account_id_of(session, scope, uid))
    assert account is not None  # account_id_of found it
    state = request.app.state
    temporary = password_change.reset(session, state.settings, state.store, account,
                                      actor=scope.actor,
                                      context=Context.of(request))
    end_sessions(request, session, account)
    return JSONResponse({"temporary_password": temporary, "must_change": True},
                        headers={"cache-control": "no-store"})


@router.post("/people/{uid}/sign-out")
def sign_out(request: Request, uid: str, session: Session = Depends(db_session),
             scope: TokenScope = Depends(_unlock_scope)) -> dict[str, Any]:
    account = session.get(Account, account_id_of(session, scope, uid))
    assert account is not None
    people.sign_out(session, account, actor=scope.actor,
                    context=Context.of(request))
    return {"signed_out": True, "sessions_ended": end_sessions(request, session, account)}


def end_sessions(request: Request, session: Session, account: Account | None) -> int:
    """Commit the account's sign-out everywhere, then end its sessions in every browser
    at once and tell their apps (``idp.sessions.end_everywhere``); how many ended."""
    assert account is not None and account.signed_out_at is not None
    account_id, begun_before = account.id, account.signed_out_at.timestamp()
    session.commit()
    return sessions.end_everywhere(request.app.state, account_id, begun_before=begun_before)
