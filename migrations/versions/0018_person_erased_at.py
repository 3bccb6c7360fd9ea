"""person.erased_at: when a person's personal data was erased (directory.retention)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012); NULL: nobody erased yet
    op.add_column('person', sa.Column('erased_at', core.db.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    op.drop_column('person', 'erased_at')
