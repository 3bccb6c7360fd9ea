"""IdP layer: the OAuth 2.0 / OpenID Connect provider.

Owns the protocol endpoints (discovery, authorization, token, userinfo,
introspection, revocation), the login flow, SSO sessions, tokens and claims,
the composition root (``idp.app``, the only module allowed to import the
layers above) and the ``idp`` command line (``idp.cli``).
"""
