"""account.sms_suspended_at: SMS codes to a stolen phone's number suspended

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012); NULL for every existing account: codes
    # go to its number as before
    op.add_column('account', sa.Column('sms_suspended_at', core.db.UTCDateTime(timezone=True),
                                       nullable=True))


def downgrade() -> None:
    op.drop_column('account', 'sms_suspended_at')
