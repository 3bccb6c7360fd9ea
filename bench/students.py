"""Sign-in accounts for the login benchmark: one student per scripted browser.

    IDP_DATABASE_URL=... .venv/bin/python bench/students.py COUNT

Prints a JSON list of ``{"login", "password", "roles"}``. A real morning is many people
signing in once each, not a few people signing in at once from several browsers (which
the sign-in guard serializes: one password check at a time per account), so each
browser of ``bench/login_flow.lua`` signs in as a student of its own. The students get
the service's own password hashing (``IDP_PASSWORD_SCHEME``, its argon2id parameters).
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import date

from core.db import Database
from core.settings import Settings
from directory.models import IdentifierKind, OrgKind, Role
from directory.orgs import ensure_org_unit
from directory.people import affiliate, create_person_with_account
from idp.login import passwords


def main(count: int) -> None:
    settings = Settings()
    db = Database(settings)
    made = []
    with db.session() as session:
        school = ensure_org_unit(session, code="BENCH-SCHOOL", name="压测学校",
                                 kind=OrgKind.school)
        hasher = passwords(settings.password_scheme)
        for n in range(count):
            login, password = f"b2026{n:04d}", "Bench-" + secrets.token_urlsafe(12)
            account = create_person_with_account(
                session, name=f"压测学生{n}", identifiers={IdentifierKind.student_number: login},
                password_hash=hasher.hash(password))
            affiliate(session, account.person, school, Role.student, date(2026, 9, 1))
            made.append({"login": login, "password": password, "roles": ["student"]})
    print(json.dumps(made))


if __name__ == "__main__":
    main(int(sys.argv[1]))
