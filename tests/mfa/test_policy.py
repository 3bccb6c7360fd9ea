"""mfa.policy.required_level: roles, then each list of accepted acr values."""

from __future__ import annotations

import pytest

from mfa.policy import ACR_MFA, ACR_SFA, required_level

ROLES = ("teacher",)


@pytest.mark.parametrize(("roles", "lists", "level"), [
    ((), [], 1),
    (("teacher",), [], 2),
    ((), [[ACR_MFA]], 2),
    ((), [[ACR_SFA, ACR_MFA]], 1),          # either is accepted: one factor meets it
    ((), [[ACR_SFA], [ACR_MFA]], 2),        # two senders, each must be met
    ((), [["urn:unknown"]], 1),             # unknown values are left out
    ((), [["urn:unknown", ACR_MFA]], 2),
    (("teacher",), [[ACR_SFA]], 2),         # the roles' level stays
])
def test_required_level(roles, lists, level: int) -> None:
    assert required_level(roles, ROLES, *lists) == level
