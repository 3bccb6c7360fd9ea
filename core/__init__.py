"""Core layer: the ground every other layer stands on.

Owns settings, the relational database (SQLAlchemy engine, sessions, naming
conventions), the short-lived key-value store (memory or Redis), national
cryptography (``core.gm``), password hashing, the SM3-chained audit log, and
the web kit (templates, i18n, CSRF, security headers, errors, logging).
It imports no other layer of the service.
"""
