"""A master-key change done as docs/keys.md says keeps people signing in: phone logins are
moved to the new key's index, recovery codes made before work while the old key is listed,
and a value that does not open is a 503, not a 500."""

from __future__ import annotations

from pathlib import Path

from core import field_crypto
from core.db import Database
from core.field_crypto import blind_index, reencrypt, seal
from core.settings import Settings
from directory.importer import Kind
from directory.models import PHONE, PHONE_LOGIN, Account, IdentifierKind, LoginIdentifier
from directory.people import find_login_account, reindex_phone_logins
from mfa import recovery
from tests.conftest import TEST_MASTER_KEY, make_settings
from tests.directory.cityfiles import (
    STUDENT_HEADER,
    TEACHERS,
    national_id,
    run,
    seed_city,
    student,
    write,
)
from tests.directory.test_import_dry_run_counts import HEADER as GUARDIAN_HEADER
from tests.idp import flow
from tests.idp.conftest import REDIRECT_URI

NEW_KEY = "22" * 32
NUMBER = "13912345678"
SECOND = "13912345679"  # a guardian's second phone: only its index is stored
OLD_NUMBER, NEW_NUMBER = "13912345678", "13987654321"


def _change(db: Database, tmp_path, url: str, *, to_key: str, to_id: str, from_key: str,
            from_id: str) -> Settings:
    """The documented change: old key listed, new key current, reencrypt; the settings
    with the old key still listed."""
    during = make_settings(tmp_path, url, master_key=to_key, master_key_id=to_id,
                           old_master_keys=f"{from_id}:{from_key}")
    reencrypt(during, db.sessions)
    reindex_phone_logins(during, db.sessions, batch=1)  # batches resume where they stopped
    return during


def test_phone_logins_move_to_the_new_key(db: Database, settings: Settings, make_person,
                                          tmp_path) -> None:
    person = make_person("s-mk-1", "pw-mk-1")
    with db.session() as session:
        account = session.get(Account, person.account_id)
        for number in (NUMBER, SECOND):
            session.add(LoginIdentifier(account=account, kind=IdentifierKind.phone.value,
                                        value=blind_index(settings, "phone", number)))
        seal(settings, PHONE, account.person, NUMBER)
    url = db.engine.url.render_as_string(hide_password=False)
    try:
        during = _change(db, tmp_path, url, to_key=NEW_KEY, to_id="k2",
                         from_key=TEST_MASTER_KEY, from_id="k1")
        after = make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k2")
        with db.session() as session:
            found = find_login_account(session, after, NUMBER)  # the old key removed
            assert found is not None and found.id == person.account_id
            assert find_login_account(session, after, SECOND) is None  # cannot be moved:
            assert find_login_account(session, during, SECOND) is not None  # keep the key
        again = reindex_phone_logins(during, db.sessions)
        assert (again.moved, again.unknown) == (0, 1)
    finally:
        _change(db, tmp_path, url, to_key=TEST_MASTER_KEY, to_id="k1", from_key=NEW_KEY,
                from_id="k2")


def test_recovery_codes_made_before_the_change_work_while_the_old_key_is_listed(
        db: Database, settings: Settings, store, make_person, tmp_path) -> None:
    person = make_person("s-mk-2", "pw-mk-2")
    with db.session() as session:
        codes = recovery.generate(session, settings, person.account_id)
    url = db.engine.url.render_as_string(hide_password=False)
    during = make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k2",
                           old_master_keys=f"k1:{TEST_MASTER_KEY}")
    after = make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k2")
    with db.session() as session:
        assert not recovery.use(session, after, store, person.account_id, codes[1])
    with db.session() as session:
        assert recovery.use(session, during, store, person.account_id, codes[0])
    with db.session() as session:
        assert not recovery.use(session, during, store, person.account_id, codes[0])  # once
        fresh = recovery.generate(session, during, person.account_id)
    with db.session() as session:
        assert recovery.use(session, after, store, person.account_id, fresh[0])


def test_a_value_that_does_not_open_is_a_503_not_a_500(
        client, db: Database, settings: Settings, make_client, make_person, tmp_path) -> None:
    """A phone sealed under a key id no longer configured (a row reencrypt missed)."""
    person = make_person("s-mk-3", "pw-mk-3")
    url = db.engine.url.render_as_string(hide_password=False)
    gone = make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k0")
    with db.session() as session:
        seal(gone, PHONE, session.get(Account, person.account_id).person, NUMBER)
    registered = make_client()
    code = flow.code_flow(client, registered.client_id, person,
                          scope="openid phone").params["code"]
    tokens = client.post("/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(registered.client_id, registered.secret))
    assert tokens.status_code == 200  # the ID token holds no phone
    answer = client.get("/oauth2/userinfo",
                        headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/")


def test_without_old_keys_nothing_is_unknown(db: Database, settings: Settings,
                                             make_person) -> None:
    """No master-key change at all: every phone login is on the current key, and the
    command must not tell the operator to keep an old key listed."""
    person = make_person("s-mk-4", "pw-mk-4")
    with db.session() as session:
        account = session.get(Account, person.account_id)
        seal(settings, PHONE, account.person, NUMBER)
        for number in (NUMBER, SECOND):
            session.add(LoginIdentifier(account=account, kind=IdentifierKind.phone.value,
                                        value=blind_index(settings, "phone", number)))
    done = reindex_phone_logins(settings, db.sessions)
    assert (done.moved, done.unknown) == (0, 0), done


def _change_leaving_nothing(db: Database, tmp_path, url: str) -> Settings:
    """The change to NEW_KEY, every phone login moved; the settings without the old key."""
    during = _change(db, tmp_path, url, to_key=NEW_KEY, to_id="k2",
                     from_key=TEST_MASTER_KEY, from_id="k1")
    assert reindex_phone_logins(during, db.sessions).unknown == 0
    return make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k2")


def _a_guardian_with_two_phones(db: Database, settings: Settings, tmp_path) -> Path:
    """The city, two pupils, and their guardian imported with two phones (NUMBER, SECOND);
    the guardians' file."""
    seed_city(db, settings, tmp_path, people=False)
    pupils = [student("MK1", "学生甲", seq=1), student("MK2", "学生乙", seq=2)]
    assert run(db, settings, write(tmp_path / "p.csv", (STUDENT_HEADER, pupils)),
               Kind.students).status == "applied"
    guardians = [["王父", NUMBER, "父亲", "MK1", national_id("19800101", 7)],
                 ["王父", SECOND, "父亲", "MK2", national_id("19800101", 7)]]
    path = write(tmp_path / "g.csv", (GUARDIAN_HEADER, guardians))
    assert run(db, settings, path, Kind.guardians).status == "applied"
    return path


def test_imported_phone_logins_all_move_a_second_phone_included(
        db: Database, settings: Settings, tmp_path) -> None:
    """Every phone login the importer writes keeps its number sealed (``PHONE_LOGIN``), so
    the change moves all of them, a guardian's second phone and a teacher's replaced
    number too, and the old key can go."""
    _a_guardian_with_two_phones(db, settings, tmp_path)
    teachers = [["3100000001", "TMK1", "赵老师", "13812340001"]]
    renumbered = [["3100000001", "TMK1", "赵老师", "13812340002"]]
    for name, table, kind in (("t1", (TEACHERS[0], teachers), Kind.teachers),
                              ("t2", (TEACHERS[0], renumbered), Kind.teachers)):
        result = run(db, settings, write(tmp_path / f"{name}.csv", table), kind)
        assert result.status == "applied", name
    url = db.engine.url.render_as_string(hide_password=False)
    with db.session() as session:
        father = find_login_account(session, settings, SECOND)
        teacher = find_login_account(session, settings, "13812340002")
        assert father is not None and teacher is not None
        assert find_login_account(session, settings, "13812340001") is None  # replaced
    try:
        after = _change_leaving_nothing(db, tmp_path, url)
        with db.session() as session:  # the old key removed
            for number, account in ((NUMBER, father), (SECOND, father),
                                    ("13812340002", teacher)):
                found = find_login_account(session, after, number)
                assert found is not None and found.id == account.id, number
            assert find_login_account(session, after, "13812340001") is None
    finally:
        _change(db, tmp_path, url, to_key=TEST_MASTER_KEY, to_id="k1", from_key=NEW_KEY,
                from_id="k2")


def test_a_number_changed_while_reencrypt_runs_is_not_put_back(
        db: Database, settings: Settings, make_person, tmp_path, monkeypatch) -> None:
    """An import gives a phone login another number (apply.write_updates: value and
    number_enc by id) while ``idp keys reencrypt`` has read that row and not yet written
    it (docs/keys.md: everything keeps working while it runs). The re-seal of the number
    it read must not overwrite the import's: the login would go back to the old number
    (and the stolen phone's suspension was lifted for the new one)."""
    person = make_person("s-rv-1", "pw-rv-1")
    with db.session() as session:
        login = LoginIdentifier(account_id=person.account_id, kind=IdentifierKind.phone.value)
        seal(settings, PHONE_LOGIN, login, OLD_NUMBER)
        session.add(login)
        session.flush()
        login_id = login.id
    url = db.engine.url.render_as_string(hide_password=False)
    during = make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k2",
                           old_master_keys=f"k1:{TEST_MASTER_KEY}")
    real_open = field_crypto.open_
    raced: list[bool] = []

    def open_then_import(settings_, column, row):  # the import commits meanwhile
        if column is PHONE_LOGIN and not raced:
            raced.append(True)
            with db.session() as other:
                renumbered = other.get(LoginIdentifier, login_id)
                seal(during, PHONE_LOGIN, renumbered, NEW_NUMBER)
        return real_open(settings_, column, row)

    monkeypatch.setattr(field_crypto, "open_", open_then_import)
    try:
        reencrypt(during, db.sessions)
        monkeypatch.setattr(field_crypto, "open_", real_open)
        with db.session() as session:
            found = find_login_account(session, during, NEW_NUMBER)
            assert raced and found is not None and found.id == person.account_id, \
                "the import's new number was overwritten by the old one"
            assert find_login_account(session, during, OLD_NUMBER) is None
    finally:
        monkeypatch.setattr(field_crypto, "open_", real_open)
        back = make_settings(tmp_path, url, old_master_keys=f"k2:{NEW_KEY}")
        reencrypt(back, db.sessions)


def test_importing_again_seals_the_numbers_of_older_phone_logins(
        db: Database, settings: Settings, tmp_path) -> None:
    """Phone logins written before migration 0017 hold only their index; the guardians'
    file imported again seals their numbers, so the master-key change moves them."""
    from sqlalchemy import select

    path = _a_guardian_with_two_phones(db, settings, tmp_path)
    with db.session() as session:  # as written before 0017
        for login in session.scalars(select(LoginIdentifier).where(
                LoginIdentifier.kind == IdentifierKind.phone.value)):
            login.number_enc = None
    again = run(db, settings, path, Kind.guardians)
    assert again.status == "applied" and again.diff.counts.get("created", 0) == 0
    url = db.engine.url.render_as_string(hide_password=False)
    try:
        after = _change_leaving_nothing(db, tmp_path, url)
        with db.session() as session:  # the old key removed
            first, second = (find_login_account(session, after, n) for n in (NUMBER, SECOND))
            assert first is not None and second is not None and first.id == second.id
    finally:
        _change(db, tmp_path, url, to_key=TEST_MASTER_KEY, to_id="k1", from_key=NEW_KEY,
                from_id="k2")
