"""refresh_token: the access token issued with it, so revoking the family revokes it too

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('refresh_token') as batch:
        batch.add_column(sa.Column('access_jti', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('access_expires_at', core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('refresh_token') as batch:
        batch.drop_column('access_expires_at')
        batch.drop_column('access_jti')
