"""app.registered_by: the console administrator who registered the app ("account:<id>", as
the audit log names them; NULL: the operators), who may not approve it themselves

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('app', sa.Column('registered_by', sa.String(64), nullable=True))
    # the apps registered in the console so far: their registration's audit event names who
    op.execute("UPDATE app SET registered_by = (SELECT MIN(e.actor) FROM audit_event e"
               " WHERE e.action = 'app.register' AND e.actor LIKE 'account:%'"
               " AND e.target = 'app:' || app.client_id)")


def downgrade() -> None:
    op.drop_column('app', 'registered_by')
