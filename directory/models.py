"""The identity model: org units, people, accounts, identifiers, affiliations.

Follows "Identity model" in the design: one source of truth for each datum.
Personal data (national ID number, phone) is stored only encrypted with
SM4-GCM, with an HMAC-SM3 blind index for exact lookups (``*_bidx``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Update,
    false,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, new_id, new_sortable_id, utcnow
from core.field_crypto import EncryptedColumn, register


class OrgKind(StrEnum):
    city = "city"
    district = "district"
    school = "school"
    campus = "campus"
    grade = "grade"
    class_ = "class"
    department = "department"


class PersonStatus(StrEnum):
    active = "active"
    suspended = "suspended"
    graduated = "graduated"
    transferred = "transferred"
    left = "left"


class Role(StrEnum):
    student = "student"
    teacher = "teacher"
    head_teacher = "head_teacher"
    school_admin = "school_admin"
    district_admin = "district_admin"
    city_admin = "city_admin"
    helpdesk = "helpdesk"
    staff = "staff"
    guardian = "guardian"


# The roles that administer a unit (and what lies below it)
ADMIN_ROLES = frozenset({Role.city_admin.value, Role.district_admin.value,
                         Role.school_admin.value})
# The roles that open the admin console at a unit: an administrator's, or the helpdesk's
# (helps people sign in; appoints nobody and registers no app). Neither the import nor SCIM
# grants or ends one; their holders need two factors and are helped from the unit above.
CONSOLE_ROLES = ADMIN_ROLES | {Role.helpdesk.value}


def check_roles(names: tuple[str, ...], setting: str) -> None:
    """ValueError naming ``setting`` when a role name is unknown (a typo in
    ``IDP_MFA_REQUIRED_ROLES`` would silently spare that role the second factor)."""
    unknown = sorted(set(names) - {role.value for role in Role})
    if unknown:
        raise ValueError(f"{setting}: unknown role {', '.join(unknown)} "
                         f"(known: {', '.join(role.value for role in Role)})")


class IdentifierKind(StrEnum):
    student_number = "student_number"
    teacher_number = "teacher_number"
    username = "username"
    phone = "phone"  # value is the phone's blind index, never the number
    email = "email"


class OrgUnit(Base):
    __tablename__ = "org_unit"
    __table_args__ = (
        Index("ix_org_unit_path", "path", postgresql_ops={"path": "text_pattern_ops"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Materialised path of ids, "/1/7/42/": a subtree is one prefix query.
    path: Mapped[str] = mapped_column(String(400), default="")
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable opaque id: SCIM resource id and the row key in encrypted fields' context.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_sortable_id)
    name: Mapped[str] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(10))
    birth_date: Mapped[date | None] = mapped_column(Date)
    national_id_enc: Mapped[str | None] = mapped_column(Text)
    national_id_bidx: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    # The postal address as one text (OIDC's address.formatted), SM4-encrypted.
    address_enc: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=PersonStatus.active.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # when the retention period's end erased the personal data (directory.retention): the
    # row is a tombstone of ids from then on
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    account: Mapped[Account | None] = relationship(back_populates="person", uselist=False)
    affiliations: Mapped[list[Affiliation]] = relationship(back_populates="person")

    def __init__(self, **values: object) -> None:
        values.setdefault("uid", new_sortable_id())  # known before flush: encryption binds to it
        super().__init__(**values)


NATIONAL_ID = register(EncryptedColumn(
    Person, "national_id_enc", "person/national_id", row_key="uid",
    index_column="national_id_bidx", index_kind="national_id",
))
PHONE = register(EncryptedColumn(
    Person, "phone_enc", "person/phone", row_key="uid",
    index_column="phone_bidx", index_kind="phone",
))
ADDRESS = register(EncryptedColumn(Person, "address_enc", "person/address", row_key="uid"))


class Account(Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), unique=True)
    # The OIDC subject: stable and opaque, never derived from personal data.
    sub: Mapped[str] = mapped_column(String(64), unique=True, default=new_id)
    password_hash: Mapped[str | None] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(default=False)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # set by an administrator's password reset: the next sign-in first sets a new password
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())
    # every SSO session begun and every token issued before this moment is void (a password
    # change or reset, "sign out everywhere"): see idp.sessions.load_standing
    signed_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # since when no SMS code goes to the account's phone login (a stolen phone and its SIM:
    # mfa.reset with ``phone``); NULL: codes go to it. Cleared when that login gets another
    # number, or by the helpdesk (mfa.reset.restore_phone)
    sms_suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when someone else (the helpdesk, an administrator, an operator) last gave the account a
    # temporary password or removed its second factors: whoever did so knew, for a while,
    # enough to enrol a factor of their own, so no console role is given for
    # ``directory.administrators.HELP_QUARANTINE_DAYS`` after it
    helped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    person: Mapped[Person] = relationship(back_populates="account")
    identifiers: Mapped[list[LoginIdentifier]] = relationship(back_populates="account")


class LoginIdentifier(Base):
    __tablename__ = "login_identifier"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(200))
    # A phone login's number, sealed (PHONE_LOGIN): ``value`` holds only its blind index,
    # which a master-key change must rebuild from the number (a guardian's second phone is
    # nowhere else). NULL for other kinds, and for phone logins written before 0017.
    number_enc: Mapped[str | None] = mapped_column(Text)

    account: Mapped[Account] = relationship(back_populates="identifiers")


# Re-sealing it (``idp keys reencrypt``) also moves ``value`` to the current key's index.
PHONE_LOGIN = register(EncryptedColumn(
    LoginIdentifier, "number_enc", "login_identifier/number", row_key="account_id",
    index_column="value", index_kind="phone",
))


def lift_sms_suspension(account_ids: Collection[int]) -> Update:
    """The statement that ends the suspension of SMS codes (``Account.sms_suspended_at``)
    of these accounts, whose phone login got another number: the stolen phone's number is
    no longer on file. The importer's bulk update of a phone login runs it
    (``directory.importer.apply``), the one writer of a login's number; another one added
    must run it too."""
    table = Account.__table__
    return (update(table).where(table.c.id.in_(list(account_ids)),
                                table.c.sms_suspended_at.is_not(None))
            .values(sms_suspended_at=None))


class Affiliation(Base):
    """Person x org unit x role over a period; ended rows are history, deleted only with the
    person's personal data when their retention period is over (``directory.retention``)."""

    __tablename__ = "affiliation"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)

    person: Mapped[Person] = relationship(back_populates="affiliations")
    org_unit: Mapped[OrgUnit] = relationship()


class GuardianLink(Base):
    __tablename__ = "guardian_link"
    __table_args__ = (UniqueConstraint("guardian_id", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of its own: the unique (guardian_id, student_id) serves lookups by guardian.
    guardian_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    relation: Mapped[str] = mapped_column(String(20), default="guardian")
