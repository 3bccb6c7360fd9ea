"""Cookie names: ``__Host-`` over https.

A cookie named ``__Host-...`` is only accepted by browsers when it is ``Secure``, has
``Path=/`` and no ``Domain``: another host of the same site (a school app on a sibling
``*.edu.example.cn``) cannot plant or overwrite it, which a plain name allows even with
``SameSite``. The CSRF and SSO-session cookies use it over https; over plain http
(development, where ``Secure`` cannot be set) they keep their plain names."""

from __future__ import annotations

from fastapi import Request

HOST_PREFIX = "__Host-"


def name(request: Request, base: str) -> str:
    return HOST_PREFIX + base if request.url.scheme == "https" else base
