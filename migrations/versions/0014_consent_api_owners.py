"""consent.api_owners: the app that held each API identifier when the person consented

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a column of its own, not a new shape of consent.apis: workers of the version before
    # read consent.apis as {identifier: scope} during a rolling deploy. NULL: no owner
    # known, so the consent covers no API (the person is asked again)
    op.add_column('consent', sa.Column('api_owners', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('consent', 'api_owners')
