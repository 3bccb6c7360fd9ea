"""refresh_token.session_sid: a refresh token without offline_access ends with its SSO session

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('refresh_token', sa.Column('session_sid', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_refresh_token_session_sid'), 'refresh_token', ['session_sid'])


def downgrade() -> None:
    op.drop_index(op.f('ix_refresh_token_session_sid'), table_name='refresh_token')
    op.drop_column('refresh_token', 'session_sid')
