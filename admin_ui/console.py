"""The admin console (``/admin``): the helpdesk of a school, a district or the city, in
the browser.

Who: a person signed in, at the level the policy asks of them (an administrator: two
factors) and in this browser (not a session begun by approving a QR code), who holds an
administrator's or the helpdesk's role (``directory.models.CONSOLE_ROLES``) at a unit (the
helpdesk helps people sign in, below: it appoints nobody and has no apps page). They act
for one such
unit at a time (``?unit=<code>``; by default the first in tree order, and a chooser when
they administer several) with the helpdesk's permissions (``directory.scopes.PersonScope``)
under the rules the admin API's tokens obey (``directory.api``):

- **find** (``GET /admin?q=``): one box for a name (a part of it), a login identifier or a
  mobile number (through the blind index); people with an affiliation, current or ended,
  inside the unit's subtree; 50 at most;
- **see** (``GET /admin/people/{uid}``): the person as the directory API shows them
  (masked national id and phone) and, for a person the unit *manages* (a current
  affiliation inside and none elsewhere, and not an administrator of the unit itself:
  ``managed_person``), how they sign in: the lock, their second factors, a pending
  password change, the SMS suspension;
- **act** (``POST /admin/people/{uid}/<action>``, CSRF-protected, with a sign-in in the
  last ten minutes as for the pages that change one's own sign-in, ``sessions.recent``):
  unlock, sign out everywhere, reset the second factors (passkeys and the phone's SMS
  codes when asked), restore the phone, a temporary password (shown once, ``no-store``).
  Each is the admin API's action, audited with the administrator's account as the actor
  (``account:<id>``), and ends the person's sessions everywhere as the API does.

A person outside the unit, or one it does not manage, answers the same "not found" page
for the actions: the console reveals nothing the directory API would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from admin_ui.security_reset import end_sessions
from core.audit import Context, record
from core.field_crypto import field_cipher
from core.web.csrf import require_csrf
from core.web.errors import PageError
from core.web.i18n import N_
from core.web.templates import add_folder, render
from directory import administrators, people
from directory.api import (
    anything_matching,
    current_placements,
    managed_person,
    person_view,
    visible_person,
)
from directory.models import (
    ADMIN_ROLES,
    CONSOLE_ROLES,
    Account,
    Affiliation,
    OrgUnit,
    Person,
    Role,
)
from directory.scopes import PersonScope
from idp import password_change, sessions
from mfa import guards, recovery, reset, totp, webauthn

router = APIRouter(prefix="/admin", include_in_schema=False,
                   dependencies=[Depends(require_csrf)])
add_folder(Path(__file__).parent / "templates")

PERMISSIONS = frozenset({"directory:read", "security:unlock", "security:mfa-reset",
                         "security:password-reset"})
RESULTS = 50  # people listed for one search at most
NOT_AN_ADMINISTRATOR = N_("Your account does not administer any school or district.")
NOT_YOURS = N_("You do not administer this unit.")
NO_SUCH_PERSON = N_("No such person in the unit you administer, or the unit does not "
                    "manage how they sign in.")
NO_SUCH_UNIT = N_("No such unit below the one you administer, for this person.")
HELPED_RECENTLY = N_("Someone else gave this person a temporary password or removed their "
                     "second factors less than %(days)s days ago; whoever did so could have "
                     "enrolled an authenticator of their own. They can be appointed from the "
                     "day this person's page gives.")
NO_ACCOUNT = N_("This person has no account: there is no sign-in to help with.")
NOT_HERE_NOW = N_("This person has no current place in %(unit)s: you see their history here.")
ADMINISTERS_HERE = N_("This person administers %(unit)s: they are helped by the administrator "
                      "of the unit above, or by an operator.")
FOR_ADMINISTRATORS = N_("This person administers a unit: the helpdesk does not help them "
                        "sign in, its administrators do.")
ON_THE_HELPDESK = N_("This person is on a helpdesk: its members do not help each other sign "
                     "in, the unit's administrators do.")
ADMINISTRATORS_ONLY = N_("The helpdesk helps people sign in: appointing people and the "
                         "unit's apps are for its administrators.")
PLACED_ELSEWHERE = N_("This person also has a current place outside %(unit)s: their sign-in is "
                      "helped by the administrator of a unit that covers both.")
DONE = {
    "unlock": N_("The sign-in lock was lifted and the failed attempts forgotten."),
    "sign-out": N_("The person was signed out on every device and app."),
    "second-factors": N_("The second factors were removed. At the next sign-in the person "
                         "sets up a new one (or gets an SMS code to the number on file)."),
    "phone": N_("SMS codes to the number on file work again."),
    "appointed": N_("The person is now an administrator. They need two factors to sign in."),
    "ended": N_("The administrator's role was ended."),
    "helpdesk": N_("The person is now on the helpdesk. They need two factors to sign in."),
    "helpdesk-ended": N_("The helpdesk role was ended."),
}


LABELS = {  # the directory's words as the pages say them
    "student": N_("student"), "teacher": N_("teacher"), "head_teacher": N_("head teacher"),
    "school_admin": N_("school administrator"), "staff": N_("staff"),
    "district_admin": N_("district administrator"), "city_admin": N_("city administrator"),
    "helpdesk": N_("helpdesk"), "guardian": N_("guardian"),
    "active": N_("active"), "suspended": N_("suspended"), "graduated": N_("graduated"),
    "transferred": N_("transferred"), "left": N_("left"),
    "student_number": N_("student number"), "teacher_number": N_("teacher number"),
    "username": N_("username"), "phone": N_("mobile number"), "email": N_("e-mail"),
}


@dataclass(frozen=True)
class Administrator:
    """The signed-in administrator acting for one unit, and the units they may choose."""

    scope: PersonScope
    unit: OrgUnit
    units: list[OrgUnit]
    sid: str  # the administrator's SSO session
    full: bool  # an administrator of the unit, not only its helpdesk

    def context(self, request: Request) -> Context:
        """The audit context of an action: the request's, and the capacity acted in (one
        person may be a school's helpdesk and its district's administrator)."""
        role = "administrator" if self.full else "helpdesk"
        return replace(Context.of(request), capacity=f"{role}@{self.unit.code}")

    def check_full(self) -> None:
        """What only an administrator does (appoint, apps): the helpdesk gets a 403 page."""
        if not self.full:
            raise PageError(403, ADMINISTRATORS_ONLY)


def _page_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def administrator_of(request: Request, db: Session, unit_code: str, *,
                     then: str = "") -> Administrator | Response:
    """The administrator, or where the browser must go first: the sign-in (no session, a
    session below the policy's level or begun elsewhere; for an action, which comes back
    to the page ``then``, none in the last ten minutes), then back to that page, or to the
    page asked for."""
    found = sessions.recent(request) if then else sessions.proven(request)
    if found is None:
        back = then or _page_url(request)
        return RedirectResponse(sessions.reauth_url(back), status_code=303)
    posts = administrators.console_posts(db, found.account_id)
    if not posts:
        raise PageError(403, NOT_AN_ADMINISTRATOR)
    unit, full = next(((u, f) for u, f in posts if u.code == unit_code), (None, False)) \
        if unit_code else posts[0]
    if unit is None:
        raise PageError(403, NOT_YOURS)
    return Administrator(PersonScope(unit.path, unit.id, PERMISSIONS, found.account_id),
                         unit, [u for u, _full in posts], found.sid, full)


def render_console(request: Request, name: str, admin: Administrator, *, status: int = 200,
                   **context: Any) -> Response:
    response = render(request, name, {"unit": admin.unit, "units": admin.units,
                                      "full": admin.full, "labels": LABELS, **context},
                      status=status)
    response.headers["cache-control"] = "no-store"  # personal data
    return response


@router.get("")
def search(request: Request, unit: str = "", q: str = "") -> Response:
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
        found, more = [], False
        text = q.strip()[:100]
        if text:
            rows = list(db.scalars(
                select(Person).where(anything_matching(request.app.state.settings, text),
                                     visible_person(admin.scope))
                .order_by(Person.name, Person.id).limit(RESULTS + 1)))
            found, more = rows[:RESULTS], len(rows) > RESULTS
        placed = current_placements(db, admin.scope, [p.id for p in found])
        names = _place_names(db, admin.scope, [p["unit"] for ps in placed.values() for p in ps])
        results = [{"uid": p.uid, "name": p.name, "status": p.status,
                    "places": [(p_["role"], names.get(p_["unit"], p_["unit_name"]))
                               for p_ in placed[p.id]]} for p in found]
        return render_console(request, "console_search.html", admin, q=text, people=results,
                       more=more)


def _place_names(db: Session, scope: PersonScope, codes: list[str]) -> dict[str, str]:
    """Each unit named with the units between it and the administrator's own
    ("示范区第一实验小学 / 一年级 / 1班": every school has a 1班)."""
    units = list(db.scalars(select(OrgUnit).where(OrgUnit.code.in_(set(codes))))) if codes else []
    chains = {u.code: _path_ids(u.path) for u in units}
    ids = {i for chain in chains.values() for i in chain}
    names = {row.id: row.name for row in db.execute(
        select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ids)))} if ids else {}
    depth = len(_path_ids(scope.org_path))
    return {code: " / ".join(names[i] for i in (chain[depth:] or chain[-1:]))
            for code, chain in chains.items()}


@router.get("/people/{uid}")
def person(request: Request, uid: str, unit: str = "", done: str = "") -> Response:
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
        shown = db.scalar(select(Person).where(Person.uid == uid[:64],
                                               visible_person(admin.scope)))
        if shown is None:
            raise PageError(404, NO_SUCH_PERSON)
        view = person_view(db, request.app.state.settings, admin.scope, shown)
        names = _place_names(db, admin.scope, [a["unit"] for a in view["affiliations"]])
        for placed in view["affiliations"]:
            placed["unit_name"] = names.get(placed["unit"], placed["unit_name"])
        managed = db.scalar(select(Person.id).where(Person.id == shown.id, manages(admin)))
        helped = managed and shown.account is not None
        record(db, actor=admin.scope.actor, action="directory.person.view", outcome="success",
               target=f"person:{shown.uid}", context=admin.context(request))
        return render_console(
            request, "console_person.html", admin, person=view, uid=shown.uid,
            security=_sign_in_state(request, db, shown.account) if helped else None,
            why_not=None if helped else _why_not_helped(db, admin, shown),
            **(_appointments(db, admin.scope, shown) if helped and admin.full else {}),
            done=DONE.get(done, ""))


def manages(admin: Administrator) -> Any:
    """SQL: the console helps this person sign in: the unit manages them (the admin API's
    rule, ``managed_person``) and, for the helpdesk, they hold no role of the console
    anywhere (else the helpdesk of a district would take over a school administrator's
    account by a temporary password, and with it the school's appointments and apps; or a
    helpdesk member a colleague's, and keep the console under their name once their own
    role ends)."""
    if admin.full:
        return managed_person(admin.scope)
    return managed_person(admin.scope) & ~exists().where(
        Affiliation.person_id == Person.id, Affiliation.valid_to.is_(None),
        Affiliation.role.in_(CONSOLE_ROLES))


def _why_not_helped(db: Session, admin: Administrator, person: Person) -> str:
    """Why the unit cannot help this person sign in (the page's line)."""
    scope = admin.scope
    if person.account is None:
        return NO_ACCOUNT
    current = db.execute(select(Affiliation.role, OrgUnit.path)
                         .join(OrgUnit, OrgUnit.id == Affiliation.org_unit_id)
                         .where(Affiliation.person_id == person.id,
                                Affiliation.valid_to.is_(None))).all()
    inside = [(role, path) for role, path in current if scope.covers(path)]
    if not inside:
        return NOT_HERE_NOW
    if any(path == scope.org_path and role in ADMIN_ROLES for role, path in inside):
        return ADMINISTERS_HERE
    if not admin.full and any(role in ADMIN_ROLES for role, _path in inside):
        return FOR_ADMINISTRATORS  # a post outside is only "a place outside", as for all
    if not admin.full and any(role == Role.helpdesk.value for role, _path in inside):
        return ON_THE_HELPDESK
    return PLACED_ELSEWHERE


def _below(scope: PersonScope, unit: OrgUnit) -> bool:
    return scope.covers(unit.path) and unit.path != scope.org_path


def _posts_below(db: Session, scope: PersonScope, person: Person) -> list[OrgUnit]:
    """The units below the administrator's own that the person administers."""
    return [unit for _role, unit in administrators.posts(db, person) if _below(scope, unit)]


def _ending(db: Session, scope: PersonScope, person: Person, *,
            helpdesk: bool = False) -> list[OrgUnit]:
    """The person's roles the administrator may end: an administrator's below their own
    unit (``_posts_below``); the helpdesk's (``helpdesk``) at their own unit too."""
    if not helpdesk:
        return _posts_below(db, scope, person)
    return [unit for _role, unit in administrators.posts(db, person, helpdesk=True)
            if scope.covers(unit.path)]


def _appointments(db: Session, scope: PersonScope, person: Person) -> dict[str, list]:
    """The person page's appointing section: the roles the administrator may end, and the
    units where they may appoint the person."""
    return {"posts": _ending(db, scope, person),
            "appointable": _appointable(db, scope, person),
            "helpdesk_posts": _ending(db, scope, person, helpdesk=True),
            "helpdesk_appointable": _appointable(db, scope, person, helpdesk=True),
            "helped_until": administrators.helped_until(person.account)}


def _path_ids(path: str) -> list[int]:
    """The ids of a unit's materialised path, from the root to the unit itself."""
    return [int(i) for i in path.strip("/").split("/")]


def _appointable(db: Session, scope: PersonScope, person: Person, *,
                 helpdesk: bool = False) -> list[OrgUnit]:
    """Where the administrator may appoint the person: a district or school below their
    own unit that holds one of the person's current places as staff (a teacher, a head
    teacher, staff: never a pupil or a guardian), and that they do not administer yet.
    For the helpdesk (``helpdesk``), the administrator's own unit too (its helpdesk
    is theirs to choose), where the person is not on the helpdesk yet."""
    paths = db.scalars(select(OrgUnit.path).join(Affiliation, Affiliation.org_unit_id
                                                 == OrgUnit.id)
                       .where(Affiliation.person_id == person.id,
                              Affiliation.role.in_(administrators.STAFF_ROLES),
                              Affiliation.valid_to.is_(None))).all()
    ids = {i for path in paths for i in _path_ids(path)}
    held = {unit.id for unit in _ending(db, scope, person, helpdesk=helpdesk)}
    return [unit for unit in db.scalars(select(OrgUnit).where(
                OrgUnit.id.in_(ids), OrgUnit.kind.in_(administrators.ROLE_FOR_KIND),
                OrgUnit.status == "active").order_by(OrgUnit.path))
            if (scope.covers(unit.path) if helpdesk else _below(scope, unit))
            and unit.id not in held] if ids else []


def _sign_in_state(request: Request, db: Session, account: Account) -> dict[str, Any]:
    store, subject = request.app.state.store, str(account.id)
    return {
        "locked_seconds": guards.locked_seconds(store, guards.ACCOUNT, subject),
        "failures": guards.failures(store, guards.ACCOUNT, subject),
        "authenticator_apps": len(totp.factors(db, account.id)),
        "passkeys": len(webauthn.passkeys(db, account.id)),
        "recovery_codes": recovery.remaining(db, account.id),
        "must_change_password": account.must_change_password,
        "sms_suspended": account.sms_suspended_at is not None,
    }


def _managed_account(db: Session, admin: Administrator, uid: str) -> Account:
    account = db.scalar(select(Account).join(Person, Person.id == Account.person_id)
                        .where(Person.uid == uid[:64], manages(admin)))
    if account is None:
        raise PageError(404, NO_SUCH_PERSON)
    return account


def _person_url(uid: str, unit_code: str, page: str = "", **more: str) -> str:
    """The person's page (``page``: one of its own, ``/password``)."""
    return (f"/admin/people/{quote(uid, safe='')}{page}?"
            + urlencode({"unit": unit_code, **more}))


def _back(uid: str, admin: Administrator, done: str) -> Response:
    return RedirectResponse(_person_url(uid, admin.unit.code, done=done), status_code=303)


def _act(request: Request, uid: str, unit: str, done: str,
         action: Callable[[Session, Administrator, Account], Response | None]) -> Response:
    """One action on a person the unit manages: the administrator (signed in in the last
    ten minutes), the person's account (404 otherwise), the action in one transaction;
    then back to the person's page saying ``done``, unless the action answers itself."""
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit, then=_person_url(uid[:64], unit))
        if isinstance(admin, Response):
            return admin
        answer = action(db, admin, _managed_account(db, admin, uid))
    return answer or _back(uid, admin, done)


@router.post("/people/{uid}/unlock")
def unlock(request: Request, uid: str, unit: str = Form("", max_length=64)) -> Response:
    def lift(db: Session, admin: Administrator, account: Account) -> None:
        guards.lift(db, request.app.state.store, guards.ACCOUNT, str(account.id),
                    actor=admin.scope.actor, context=admin.context(request))
    return _act(request, uid, unit, "unlock", lift)


@router.post("/people/{uid}/sign-out")
def sign_out(request: Request, uid: str, unit: str = Form("", max_length=64)) -> Response:
    def sign_out_everywhere(db: Session, admin: Administrator, account: Account) -> None:
        people.sign_out(db, account, actor=admin.scope.actor, context=admin.context(request))
        end_sessions(request, db, account)
    return _act(request, uid, unit, "sign-out", sign_out_everywhere)


@router.post("/people/{uid}/second-factors/reset")
def reset_second_factors(request: Request, uid: str, unit: str = Form("", max_length=64),
                         passkeys: str = Form("", max_length=10),
                         phone: str = Form("", max_length=10)) -> Response:
    def remove(db: Session, admin: Administrator, account: Account) -> None:
        reset.reset(db, request.app.state.store, account.id, passkeys=bool(passkeys),
                    phone=bool(phone), actor=admin.scope.actor, context=admin.context(request))
        end_sessions(request, db, account)
    return _act(request, uid, unit, "second-factors", remove)


@router.post("/people/{uid}/phone/restore")
def restore_phone(request: Request, uid: str, unit: str = Form("", max_length=64)) -> Response:
    def restore(db: Session, admin: Administrator, account: Account) -> None:
        reset.restore_phone(db, account.id, actor=admin.scope.actor,
                            context=admin.context(request))
    return _act(request, uid, unit, "phone", restore)


# A secret just made (a temporary password, a client secret) waits this long for the page
# that shows it, for this administrator's session only
SHOWN_SECONDS = 300


def keep_to_show(request: Request, admin: Administrator, what: str, secret: str) -> None:
    """Keep ``secret`` for the page that shows it once (post, redirect, get): sealed with
    SM4 under the master key (the store may be written to disk), bound to this
    administrator's session and ``what``, for ``SHOWN_SECONDS``."""
    key = f"console:shown:{admin.sid}:{what}"
    token = field_cipher(request.app.state.settings).encrypt(secret, context=key.encode())
    request.app.state.store.set(key, token.encode(), ttl=SHOWN_SECONDS)


def take_to_show(request: Request, admin: Administrator, what: str) -> str | None:
    """The secret kept for ``what``, once; None when shown already or gone."""
    key = f"console:shown:{admin.sid}:{what}"
    token = request.app.state.store.take(key)
    if token is None:
        return None
    return field_cipher(request.app.state.settings).decrypt(
        token.decode(), context=key.encode()).decode()


@router.post("/people/{uid}/password/reset")
def reset_password(request: Request, uid: str, unit: str = Form("", max_length=64)) -> Response:
    """Give a temporary password, then show it on a page of its own (post, redirect, get):
    reloading that page must not give another one and void the first."""
    state = request.app.state

    def temporary_password(db: Session, admin: Administrator, account: Account) -> Response:
        temporary = password_change.reset(db, state.settings, state.store, account,
                                          actor=admin.scope.actor, context=admin.context(request))
        end_sessions(request, db, account)
        keep_to_show(request, admin, f"password:{uid}", temporary)
        return RedirectResponse(_person_url(uid, admin.unit.code, "/password"),
                                status_code=303)
    return _act(request, uid, unit, "", temporary_password)


@router.get("/people/{uid}/password")
def temporary_password_page(request: Request, uid: str, unit: str = "") -> Response:
    """The temporary password just given, once: a reload says it was shown."""
    with request.app.state.db.session() as db:
        admin = administrator_of(request, db, unit)
        if isinstance(admin, Response):
            return admin
    return render_console(request, "console_password.html", admin, uid=uid,
                          temporary=take_to_show(request, admin, f"password:{uid[:64]}"))


ROLES_GIVEN = {"administrator": False, "helpdesk": True}  # the URL's word -> helpdesk?


@router.post("/people/{uid}/{given}/appoint")
def appoint(request: Request, uid: str, given: str, unit: str = Form("", max_length=64),
            at: str = Form(..., max_length=64)) -> Response:
    """Make the person an administrator of ``at`` (a district or school below the
    administrator's own unit), or put them on the helpdesk of ``at`` (their own unit or
    one below), where the person has a current place as staff."""
    helpdesk = _role_given(given)

    def make(db: Session, admin: Administrator, account: Account) -> None:
        admin.check_full()
        chosen = next((u for u in _appointable(db, admin.scope, account.person,
                                               helpdesk=helpdesk) if u.code == at), None)
        if chosen is None:
            raise PageError(404, NO_SUCH_UNIT)
        try:
            administrators.appoint(db, account.person, chosen, actor=admin.scope.actor,
                                   context=admin.context(request), helpdesk=helpdesk)
        except administrators.HelpedRecently:
            raise PageError(409, HELPED_RECENTLY, params={
                "days": administrators.HELP_QUARANTINE_DAYS}) from None
    return _act(request, uid, unit, "helpdesk" if helpdesk else "appointed", make)


@router.post("/people/{uid}/{given}/end")
def end_role(request: Request, uid: str, given: str, unit: str = Form("", max_length=64),
             at: str = Form(..., max_length=64)) -> Response:
    """End the person's administrator's role at ``at``, a unit below the administrator's
    own (a role at one's own unit is the unit above's to end); or their helpdesk role at
    the administrator's own unit or one below."""
    helpdesk = _role_given(given)

    def end(db: Session, admin: Administrator, account: Account) -> None:
        admin.check_full()
        post = next((u for u in _ending(db, admin.scope, account.person, helpdesk=helpdesk)
                     if u.code == at), None)
        if post is None:
            raise PageError(404, NO_SUCH_UNIT)
        administrators.end(db, account.person, post, actor=admin.scope.actor,
                           context=admin.context(request), helpdesk=helpdesk)
    return _act(request, uid, unit, "helpdesk-ended" if helpdesk else "ended", end)


def _role_given(given: str) -> bool:
    if given not in ROLES_GIVEN:
        raise PageError(404, NO_SUCH_UNIT)
    return ROLES_GIVEN[given]
