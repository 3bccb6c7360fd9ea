"""MFA policy: which authentication level a sign-in needs, and what a session has.

Two levels, advertised in discovery as ``acr_values_supported`` and carried in
ID tokens as ``acr``:

- ``urn:edu:acr:sfa`` — one factor (a password; a passkey without user verification);
- ``urn:edu:acr:mfa`` — two factors (password and a one-time code; a passkey with user
  verification, which is possession plus PIN or biometrics).

``amr`` values follow RFC 8176: ``pwd``, ``otp``, ``sms``, ``hwk``/``swk``, ``user``,
``mfa``. The level a sign-in needs is the highest of:

- the person's roles: an administrator's or the helpdesk's always
  (``directory.models.CONSOLE_ROLES``: an account that opens the admin console must not
  fall to a stolen password, whatever the settings say),
  and those of ``IDP_MFA_REQUIRED_ROLES`` (teachers too by default),
- the app's registered ``default_acr_values`` (OpenID Connect Dynamic Registration),
- the request's ``acr_values`` (treated as required, not as a mere wish),
- an ``acr`` the request's ``claims`` parameter marks essential (OIDC Core 5.5.1.1).

Each list names the values its sender accepts, so a list needs the lowest level among
the values this provider knows (``sfa mfa`` is met by one factor); unknown values are
left out, and a list of none needs nothing.

A session whose level is lower is asked for a second factor (step-up) before the app
gets a code; with ``prompt=none`` that is an ``interaction_required`` error instead.
An essential ``acr`` is also answered with one of its own values (:func:`acr_answer`);
when it names no value this provider knows, the request fails with
``unmet_authentication_requirements`` (OpenID Connect Core Error Code
unmet_authentication_requirements 1.0).
"""

from __future__ import annotations

from collections.abc import Iterable

from directory.models import CONSOLE_ROLES

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
                   *accepted_acr_lists: Iterable[str]) -> int:
    """The level needed: the roles' and, for each list of accepted ``acr`` values (the
    app's defaults, the request's ``acr_values``, its essential ``acr``), the lowest
    known level in it."""
    needed = 2 if set(roles) & (set(required_roles) | CONSOLE_ROLES) else 1
    for accepted in accepted_acr_lists:
        known = [LEVELS[value] for value in accepted if value in LEVELS]
        needed = max(needed, min(known, default=1))
    return needed


def acr_answer(session_acr: str, essential: Iterable[str]) -> str | None:
    """The ``acr`` to put in the ID token (OIDC Core 5.5.1.1).

    With no essential ``acr`` asked for, the session's own. Otherwise one of the values
    asked for, as the authentication must match one of them: the highest that the
    session's level reaches (two factors meet a request for one); None when none does,
    which fails the authentication."""
    essential = list(essential)
    if not essential:
        return session_acr
    asked = [value for value in essential if value in LEVELS]
    met = [value for value in asked if LEVELS[value] <= level(session_acr)]
    return max(met, key=LEVELS.__getitem__) if met else None
