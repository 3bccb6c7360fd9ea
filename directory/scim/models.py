"""What SCIM adds to the directory: the provisioning client's ``externalId``.

Everything else a SCIM resource shows lives in the directory's own tables
(people, accounts, identifiers, affiliations, org units). ``externalId`` is the
client's identifier for a resource (RFC 7643 §3.1): it belongs to no directory
concept, so it has this table, one row per user that has one. (A group's externalId is its
org unit's code.)
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class ScimExternalId(Base):
    __tablename__ = "scim_external_id"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), unique=True)
    value: Mapped[str] = mapped_column(String(200), index=True)
