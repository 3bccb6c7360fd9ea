"""An administrator's scope: the org subtree they act in and what they may do there.

Two kinds of administrators act in a scope, and the same rules apply to both
(``directory.api.visible_person``, ``directory.api.managed_person``):

- a bearer API token (``directory.api_tokens.TokenScope``): its unit and its permissions;
- a person in the admin console (``admin_ui.console``): a unit where they hold an
  administrator's role (``directory.models.ADMIN_ROLES``), with the helpdesk's permissions.

Each kind names itself in the audit log (``actor``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    org_path: str  # the subtree root's path; every visible unit's path starts with it
    org_unit_id: int
    permissions: frozenset[str]

    def covers(self, path: str) -> bool:
        return path.startswith(self.org_path)

    @property
    def actor(self) -> str:
        raise NotImplementedError  # each kind of administrator names itself


@dataclass(frozen=True)
class PersonScope(Scope):
    """A person administering a unit in the admin console."""

    account_id: int

    @property
    def actor(self) -> str:
        return f"account:{self.account_id}"
