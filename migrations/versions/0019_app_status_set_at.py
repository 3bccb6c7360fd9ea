"""app.status_set_at: the path of the unit whose administrator last approved or suspended
the app in the console ("" : the operators, ``idp apps status``; NULL: nobody yet)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('app', sa.Column('status_set_at', sa.String(400), nullable=True))
    # the apps there are: the operators' decision ("", as idp apps sets it from now on),
    # but for those a console administrator registered (and nobody decided on since)
    op.execute("UPDATE app SET status_set_at = '' WHERE NOT EXISTS ("
               "SELECT 1 FROM audit_event e WHERE e.action = 'app.register'"
               " AND e.actor LIKE 'account:%' AND e.target = 'app:' || app.client_id)")


def downgrade() -> None:
    op.drop_column('app', 'status_set_at')
