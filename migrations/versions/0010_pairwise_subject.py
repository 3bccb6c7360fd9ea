"""pairwise_subject: the sub an app of one sector knows an account by (OIDC Core 8.1)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'pairwise_subject',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sector', sa.String(length=255), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('sub', sa.String(length=64), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sector', 'account_id'),
        sa.UniqueConstraint('sub'),
    )
    op.create_index(op.f('ix_pairwise_subject_account_id'), 'pairwise_subject', ['account_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_pairwise_subject_account_id'), table_name='pairwise_subject')
    op.drop_table('pairwise_subject')
