"""person: the postal address (OIDC address scope), SM4-encrypted

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('person') as batch:
        batch.add_column(sa.Column('address_enc', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('person') as batch:
        batch.drop_column('address_enc')
