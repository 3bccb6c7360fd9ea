"""MFA policy: which authentication level a sign-in needs, and what a session has.

Two levels, advertised in discovery as ``acr_values_supported`` and carried in
ID tokens as ``acr``:

- ``urn:edu:acr:sfa`` — one factor (a password; a passkey without user verification);
- ``urn:edu:acr:mfa`` — two factors (password and a one-time code; a passkey with user
  verification, which is possession plus PIN or biometrics).

``amr`` values follow RFC 8176: ``pwd``, ``otp``, ``sms``, ``hwk``/``swk``, ``user``,
``mfa``. The level a sign-in needs is the highest of:

- the person's roles (``IDP_MFA_REQUIRED_ROLES``; administrators and teachers by default),
- the app's registered ``default_acr_values`` (OpenID Connect Dynamic Registration),
- the request's ``acr_values`` (treated as required, not as a mere wish).

A session whose level is lower is asked for a second factor (step-up) before the app
gets a code; with ``prompt=none`` that is an ``interaction_required`` error instead.
"""

from __future__ import annotations

from collections.abc import Iterable

ACR_SFA = "urn:edu:acr:sfa"
ACR_MFA = "urn:edu:acr:mfa"
LEVELS = {ACR_SFA: 1, ACR_MFA: 2}
SUPPORTED = [ACR_SFA, ACR_MFA]
DEFAULT_REQUIRED_ROLES = ("city_admin", "district_admin", "school_admin", "teacher",
                          "head_teacher")


def acr_for(amr: Iterable[str]) -> str:
    """The level that a set of authentication methods reaches.

    Two factors: a password with a one-time code or a key; a key that verified its user
    (PIN or biometrics); or a passkey together with a one-time code from another device
    (two independent possessions, as a passkey without user verification plus an
    authenticator app gives: counted as two so such a person can always step up)."""
    methods = set(amr)
    knowledge = bool(methods & {"pwd", "pin"})
    codes = bool(methods & {"otp", "sms"})
    keys = bool(methods & {"hwk", "swk"})
    two = (knowledge and (codes or keys)) or (keys and "user" in methods) or (keys and codes)
    return ACR_MFA if two else ACR_SFA


def with_second_factor(amr: Iterable[str], method: str) -> list[str]:
    """``amr`` after a second factor ``method`` succeeded (adds ``mfa``)."""
    methods = [m for m in amr if m != "mfa"]
    if method not in methods:
        methods.append(method)
    return [*methods, "mfa"] if acr_for(methods) == ACR_MFA else methods


def level(acr: str | None) -> int:
    return LEVELS.get(acr or "", 1)


def required_level(roles: Iterable[str], required_roles: Iterable[str],
                   client_acr_values: Iterable[str], requested_acr_values: Iterable[str]) -> int:
    needed = 2 if set(roles) & set(required_roles) else 1
    for value in (*client_acr_values, *requested_acr_values):
        needed = max(needed, LEVELS.get(value, 1))
    return needed
