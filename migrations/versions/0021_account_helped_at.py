"""account.helped_at: when someone else last reset the account's password or second factors

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012); NULL: never helped, or before this column
    op.add_column('account', sa.Column('helped_at', core.db.UTCDateTime(timezone=True),
                                       nullable=True))


def downgrade() -> None:
    op.drop_column('account', 'helped_at')
