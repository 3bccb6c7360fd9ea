"""mfa.policy: the level a sign-in needs, and the acr it is answered with."""

from __future__ import annotations

import pytest

from mfa import policy
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
    (("school_admin",), [], 2),             # an administrator always, though not listed
    (("student", "district_admin"), [[ACR_SFA]], 2),
])
def test_required_level(roles, lists, level: int) -> None:
    assert required_level(roles, ROLES, *lists) == level


@pytest.mark.parametrize(("session", "essential", "expected"), [
    (policy.ACR_SFA, [], policy.ACR_SFA),
    (policy.ACR_MFA, [], policy.ACR_MFA),
    (policy.ACR_MFA, [policy.ACR_SFA], policy.ACR_SFA),
    (policy.ACR_MFA, [policy.ACR_SFA, policy.ACR_MFA], policy.ACR_MFA),
    (policy.ACR_SFA, [policy.ACR_SFA, policy.ACR_MFA], policy.ACR_SFA),
    (policy.ACR_SFA, [policy.ACR_MFA], None),
    (policy.ACR_MFA, ["urn:example:other"], None),
])
def test_acr_answer_is_one_of_the_values_asked_for(session, essential, expected) -> None:
    assert policy.acr_answer(session, essential) == expected
