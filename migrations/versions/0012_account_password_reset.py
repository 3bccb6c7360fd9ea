"""account.must_change_password and account.signed_out_at: password resets, sign out everywhere

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (a batch copy would drop the table that others
    # reference, which SQLite refuses once rows point to it)
    op.add_column('account', sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.add_column('account', sa.Column('signed_out_at', core.db.UTCDateTime(timezone=True),
                                       nullable=True))


def downgrade() -> None:
    op.drop_column('account', 'signed_out_at')
    op.drop_column('account', 'must_change_password')
