"""The SCIM resources this service serves, as scim2-models classes.

Each class declares only what the directory can store and give back, so what
``/Schemas`` publishes is exactly what a client may rely on (RFC 7643 §7: a
service provider publishes the attributes it supports). The core User and Group
schema URNs are kept; the education data lives in our extension schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field
from scim2_models import URN as Urn
from scim2_models import (
    CaseExact,
    ComplexAttribute,
    Extension,
    Mutability,
    Reference,
    Required,
    Resource,
    Returned,
    Uniqueness,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
EDU_USER_SCHEMA = "urn:edu:params:scim:schemas:extension:education:2.0:User"

# Roles a provisioning client may grant. Administrator roles are granted in the
# admin console only; SCIM shows them but refuses to write them.
ASSIGNABLE_ROLES = ["student", "teacher", "head_teacher", "staff"]


class Name(ComplexAttribute):
    formatted: Annotated[str | None, Required.true] = None
    """The whole name as the directory holds it (Chinese names: family name first, no space)."""

    family_name: Annotated[str | None, Mutability.read_only, Returned.request] = None
    """Derived, not stored: the surname of a name in Chinese characters (``directory.names``).
    Returned only when asked for."""

    given_name: Annotated[str | None, Mutability.read_only, Returned.request] = None
    """Derived, not stored: the name without its surname (``directory.names``)."""


class Email(ComplexAttribute):
    value: Annotated[str | None, Required.true, Uniqueness.server] = None
    """An e-mail address; also a login identifier, unique in the directory. The first
    address is the primary one (``primary``/``type`` sent by clients are ignored)."""


class PhoneNumber(ComplexAttribute):
    value: Annotated[str | None, Required.true] = None
    """Stored encrypted (SM4-GCM); a mainland mobile number is normalised to 11 digits.
    The directory holds one number per user."""


class Address(ComplexAttribute):
    formatted: Annotated[str | None, Required.true] = None
    """The full postal address as one text (up to 200 characters), stored encrypted
    (SM4-GCM). The directory holds one address per user; apps read it through the OIDC
    ``address`` scope. A request that sends only the parts (``country``, ``region``,
    ``locality``, ``streetAddress``, ``postalCode``) gets them joined, largest first."""


class GroupMembership(ComplexAttribute):
    value: Annotated[str | None, Mutability.read_only, CaseExact.true] = None
    ref: Annotated[Reference[Any] | None, Mutability.read_only] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display: Annotated[str | None, Mutability.read_only] = None


class User(Resource[Any]):
    __schema__ = Urn(USER_SCHEMA)

    user_name: Annotated[str | None, Required.true, Uniqueness.server] = None
    """The primary login identifier: username, else student number, else teacher number,
    else e-mail address."""

    name: Annotated[Name | None, Required.true] = None
    active: Annotated[bool | None, Required.true] = None
    """Person status active and account not disabled. Defaults to true on creation."""
    emails: list[Email] | None = None
    phone_numbers: list[PhoneNumber] | None = None
    addresses: list[Address] | None = None
    groups: Annotated[list[GroupMembership] | None, Mutability.read_only] = None
    """The org units the person is currently affiliated with, inside the token's scope."""


class EducationUser(Extension):
    __schema__ = Urn(EDU_USER_SCHEMA)

    student_number: Annotated[str | None, Uniqueness.server] = None
    teacher_number: Annotated[str | None, Uniqueness.server] = None
    school_code: Annotated[str | None, Required.true] = None
    """Code of the school (org unit) the person is placed in."""

    grade: str | None = None
    """Code of the grade unit the person is placed in (inside ``schoolCode``); set from
    ``class`` when only that is given."""

    class_: Annotated[str | None, CaseExact.true] = Field(
        None, serialization_alias="class", validation_alias="class"
    )
    """Code of the class unit the person is placed in (inside ``schoolCode``)."""

    roles: Annotated[list[str] | None, Required.true] = Field(
        None, examples=ASSIGNABLE_ROLES
    )
    """Roles held at the placement."""


class GroupMember(ComplexAttribute):
    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    ref: Annotated[Reference[User] | None, Mutability.immutable] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])


class Group(Resource[Any]):
    __schema__ = Urn(GROUP_SCHEMA)

    display_name: Annotated[str | None, Required.true] = None
    members: list[GroupMember] | None = None

    Members: ClassVar[type[ComplexAttribute]] = GroupMember


UserResource = User[EducationUser]
GroupResource = Group
