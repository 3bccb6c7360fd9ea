from __future__ import annotations

from sqlalchemy import func, select

from core.db import Database
from core.passwords import Passwords
from core.settings import Settings
from directory.models import Account, Affiliation, IdentifierKind, OrgUnit
from directory.people import find_account
from idp import demo


def test_seed_is_idempotent_and_passwords_verify(db: Database, settings: Settings) -> None:
    with db.session() as session:
        content = demo.seed(session, settings)
    demo.write(settings, content)
    with db.session() as session:
        counts = (session.scalar(select(func.count(OrgUnit.id))),
                  session.scalar(select(func.count(Account.id))),
                  session.scalar(select(func.count(Affiliation.id))))
        again = demo.seed(session, settings)
    with db.session() as session:
        assert counts == (session.scalar(select(func.count(OrgUnit.id))),
                          session.scalar(select(func.count(Account.id))),
                          session.scalar(select(func.count(Affiliation.id))))
    assert again == content
    roles = {r for u in content["users"] for r in u["roles"]}
    assert {"teacher", "student"} <= roles
    assert [(a["scope"], a["unit"]) for a in content["admins"]] == [
        ("city", "DEMO-CITY"), ("school", "3111000001"), ("helpdesk", "3111000001")]
    passwords = Passwords()
    with db.session() as session:
        for user in content["users"]:
            kind = (IdentifierKind.teacher_number if user["login"].startswith("t")
                    else IdentifierKind.student_number)
            account = find_account(session, kind, user["login"].upper())
            assert account is not None
            assert passwords.verify(account.password_hash, user["password"]).ok
    (settings.var_dir / "demo.json").unlink()


def test_demo_teacher_and_admin_have_working_totp(db: Database, settings: Settings) -> None:
    import pyotp

    from core.store import MemoryStore
    from mfa import totp

    with db.session() as session:
        content = demo.seed(session, settings)
    demo.write(settings, content)
    teacher = next(u for u in content["users"] if u["login"] == "t20260001")
    admin = content["admins"][0]
    assert "totp_secret" not in next(u for u in content["users"] if u["login"] == "s20260001")
    with db.session() as session:
        again = demo.seed(session, settings)
        assert again["admins"][0]["totp_secret"] == admin["totp_secret"]  # idempotent
        account = find_account(session, IdentifierKind.teacher_number, "t20260001")
        code = pyotp.TOTP(teacher["totp_secret"]).now()
        assert totp.verify(session, settings, MemoryStore(), account.id, code)
    (settings.var_dir / "demo.json").unlink()


def test_the_demo_apps_are_the_citys_and_the_operators(db: Database, settings: Settings
                                                       ) -> None:
    """The city's administrator sees the demo apps in the console (/admin/apps), as the
    operators' own (first-party: no buttons)."""
    from admin_ui.console_apps import operators_only
    from directory.apps import App

    with db.session() as session:
        content = demo.seed(session, settings)
        city = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "DEMO-CITY"))
        apps = [session.scalar(select(App).where(App.client_id == c["client_id"]))
                for c in content["clients"]]
        assert apps and all(a.org_unit_id == city and a.status_set_at == "" and
                            operators_only(a) for a in apps)
