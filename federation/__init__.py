"""Federation layer: the bridges to school applications that do not speak OIDC.

Owns CAS 3.0 and SAML 2.0, brokering to upstream identity providers,
single-logout fan-out and the app portal. Imports ``idp`` and below.
"""
