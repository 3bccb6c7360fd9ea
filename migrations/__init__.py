"""Alembic migrations: the only way the schema changes (never ``create_all``)."""
