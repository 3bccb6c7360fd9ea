from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from core.db import Database
from core.field_crypto import (
    blind_index,
    blind_index_candidates,
    field_cipher,
    open_,
    reencrypt,
    seal,
)
from core.gm.errors import DecryptionError
from directory.models import NATIONAL_ID, PHONE, Person
from tests.conftest import TEST_MASTER_KEY, make_settings

OLD_KEY = "11" * 32
NEW_KEY = "22" * 32


def test_seal_and_open_bind_to_the_row(settings) -> None:
    alice, bob = Person(name="A"), Person(name="B")
    seal(settings, PHONE, alice, "13800138000")
    assert alice.phone_enc.startswith("sm4gcm.k1.")
    assert "13800138000" not in alice.phone_enc
    assert alice.phone_bidx == blind_index(settings, "phone", "13800138000")
    assert open_(settings, PHONE, alice) == "13800138000"
    bob.phone_enc = alice.phone_enc  # copied to another row
    with pytest.raises(DecryptionError):
        open_(settings, PHONE, bob)
    bob.national_id_enc = alice.phone_enc  # copied to another column of the same row
    bob.uid = alice.uid
    with pytest.raises(DecryptionError):
        open_(settings, NATIONAL_ID, bob)


def test_blind_index_depends_on_kind_and_key(settings, tmp_path: Path) -> None:
    assert blind_index(settings, "phone", "1") != blind_index(settings, "national_id", "1")
    other = make_settings(tmp_path, "sqlite://", master_key=OLD_KEY)
    assert blind_index(settings, "phone", "1") != blind_index(other, "phone", "1")


@hsettings(max_examples=40, deadline=None)
@given(value=st.text(min_size=0, max_size=200))
def test_round_trip_any_text(value: str) -> None:
    from core.settings import load_settings

    s = load_settings({"IDP_VAR_DIR": "/tmp", "IDP_MASTER_KEY": TEST_MASTER_KEY})
    person = Person(name="x")
    seal(s, NATIONAL_ID, person, value)
    assert open_(s, NATIONAL_ID, person) == value


def test_master_key_change_then_reencrypt(db: Database, settings, tmp_path: Path) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    before = make_settings(tmp_path, url, master_key=OLD_KEY, master_key_id="k0")
    with db.session() as session:
        for i in range(7):
            person = Person(name=f"p{i}")
            seal(before, PHONE, person, f"1380013800{i}")
            session.add(person)
    # The signing keys of this test run are sealed under the suite's key "k1".
    after = make_settings(tmp_path, url, master_key=NEW_KEY, master_key_id="k2",
                          old_master_keys=f"k0:{OLD_KEY},k1:{TEST_MASTER_KEY}")
    # During the change: old rows open, and lookups find them by the old index.
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.name == "p3"))
        assert open_(after, PHONE, person) == "13800138003"
        candidates = blind_index_candidates(after, "phone", "13800138003")
        assert person.phone_bidx in candidates and candidates[0] != person.phone_bidx
    batches: list[tuple[str, int]] = []
    counts = reencrypt(after, db.sessions, batch=3,
                       progress=lambda column, n: batches.append((column.context, n)))
    phone_batches = [n for context, n in batches if context == "person/phone"]
    assert counts["person/phone"] == 7 and phone_batches == [3, 3, 1], batches
    assert counts["signing_key/private"] >= 4
    assert counts["person/national_id"] == 0
    with db.session() as session:
        for person in session.scalars(select(Person)):
            assert field_cipher(after).key_id_of(person.phone_enc) == "k2"
            assert person.phone_bidx == blind_index(after, "phone", open_(after, PHONE, person))
    # Resumable and idempotent: nothing left to do.
    assert reencrypt(after, db.sessions)["person/phone"] == 0
    # Without the old key, data under it is unreadable, with a clear error.
    with db.session() as session:
        person = session.scalars(select(Person)).first()
        with pytest.raises(DecryptionError, match="key id that is not configured"):
            open_(settings, PHONE, person)
    # Back to the suite's key for the tests that follow (signing keys are kept).
    back = make_settings(tmp_path, url, master_key=TEST_MASTER_KEY, master_key_id="k1",
                         old_master_keys=f"k2:{NEW_KEY}")
    assert reencrypt(back, db.sessions)["signing_key/private"] >= 4
