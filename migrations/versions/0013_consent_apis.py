"""consent.apis: the scopes a person allowed an app to use with each API (RFC 8707)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (see 0012); NULL: no API allowed, as every consent before it
    op.add_column('consent', sa.Column('apis', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('consent', 'apis')
