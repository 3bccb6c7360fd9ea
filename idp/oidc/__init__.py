"""OpenID Connect / OAuth 2.0 protocol endpoints, one module per spec concept.

Hand-written on purpose, with library pieces where they fit (joserfc for JOSE,
authlib's PKCE and URL helpers): authlib's server classes are built for Flask
and Django request objects, hard-wire SHA-2 half hashes for ``at_hash`` /
``c_hash`` (SM2 tokens need SM3), and cannot express the behaviours this
provider needs (code reuse revoking the tokens of that code, refresh-token
families, the ``claims`` parameter with essential claims, SSO prompts over our
own sessions) without overriding most of each grant. Each endpoint is a short
list of named steps, in the manner of node ``oidc-provider``.
"""
