"""Sign-in locks for administrators (``/api/admin``): see and lift them.

``mfa.guards`` locks an account after too many wrong passwords and an IP after too many
failures or after password spraying. Locks expire by themselves; an administrator may
lift one earlier:

- ``GET /api/admin/people/{uid}/sign-in-lock`` — is this person's account locked, for
  how long, and how many failures are counted;
- ``POST /api/admin/people/{uid}/unlock`` — lift the lock and forget the failures;
- ``POST /api/admin/ip-locks/{ip}/unlock`` — the same for a client IP.

Authentication is a bearer API token with the ``security:unlock`` permission. People are
visible only inside the token's org subtree (404 otherwise, as in the directory API);
(Locks, like the resets of ``admin_ui.security_reset``, reach only people *managed* inside
the subtree: a current affiliation there and none elsewhere.)
IP locks concern the whole city, so only a token scoped to the city (the root of the
org tree) may lift them, and only an operators' one (``idp tokens issue``): a token issued
in the admin console carries the console's powers, which do not include IP locks. Every
unlock is audited with the token's name as the actor.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Context
from core.web.errors import Problem
from directory.api import managed_person
from directory.api_tokens import TokenScope, require
from directory.models import OrgUnit, Person
from directory.scopes import Scope
from mfa import guards

PERMISSION = "security:unlock"
router = APIRouter(prefix="/api/admin", tags=["admin"])


def db_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


def token_scope(permission: str) -> Callable[..., TokenScope]:
    """The dependency that authenticates a bearer API token holding ``permission``."""
    def scope(request: Request, session: Session = Depends(db_session)) -> TokenScope:
        return require(request, session, request.app.state.settings, permission, "admin")
    return scope


_scope = token_scope(PERMISSION)


def account_id_of(session: Session, scope: Scope, uid: str) -> int:
    """The account of person ``uid``, managed inside the token's subtree (404 otherwise:
    ``directory.api.managed_person``)."""
    person = session.scalar(select(Person).where(Person.uid == uid, managed_person(scope)))
    if person is None or person.account is None:
        raise Problem(404, "Not found", "No such person, or the person has no account.")
    return person.account.id


@router.get("/people/{uid}/sign-in-lock")
def sign_in_lock(request: Request, uid: str, session: Session = Depends(db_session),
                 scope: TokenScope = Depends(_scope)) -> dict[str, Any]:
    subject = str(account_id_of(session, scope, uid))
    store = request.app.state.store
    seconds = guards.locked_seconds(store, guards.ACCOUNT, subject)
    return {"locked": seconds > 0, "seconds_left": seconds,
            "failures": guards.failures(store, guards.ACCOUNT, subject)}


@router.post("/people/{uid}/unlock")
def unlock_person(request: Request, uid: str, session: Session = Depends(db_session),
                  scope: TokenScope = Depends(_scope)) -> dict[str, Any]:
    subject = str(account_id_of(session, scope, uid))
    was_locked = guards.lift(session, request.app.state.store, guards.ACCOUNT, subject,
                             actor=scope.actor, context=Context.of(request))
    return {"unlocked": True, "was_locked": was_locked}


@router.post("/ip-locks/{ip}/unlock")
def unlock_ip(request: Request, ip: str, session: Session = Depends(db_session),
              scope: TokenScope = Depends(_scope)) -> dict[str, Any]:
    try:
        address = str(ipaddress.ip_address(ip))
    except ValueError:
        raise Problem(400, "Bad request", "Not an IP address.") from None
    root = session.get(OrgUnit, scope.org_unit_id)
    if root is None or root.parent_id is not None:
        raise Problem(403, "Forbidden", "Only a token scoped to the whole city may lift IP locks.")
    if scope.console:  # not a power of the console: the operators' (idp security unlock --ip)
        raise Problem(403, "Forbidden", "Only the operators' tokens may lift IP locks, not "
                      "one issued in the admin console.")
    was_locked = guards.lift(session, request.app.state.store, guards.IP, address,
                             actor=scope.actor, context=Context.of(request))
    return {"unlocked": True, "was_locked": was_locked}
