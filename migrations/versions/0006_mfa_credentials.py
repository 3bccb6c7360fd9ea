"""mfa credentials

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mfa_credential',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('credential_id', sa.String(length=1400), nullable=True),
    sa.Column('secret_enc', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_mfa_credential_account_id_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_credential')),
    sa.UniqueConstraint('uid', name=op.f('uq_mfa_credential_uid'))
    )
    with op.batch_alter_table('mfa_credential', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mfa_credential_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mfa_credential_credential_id'), ['credential_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('mfa_credential', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mfa_credential_credential_id'))
        batch_op.drop_index(batch_op.f('ix_mfa_credential_account_id'))

    op.drop_table('mfa_credential')
