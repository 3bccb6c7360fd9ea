"""scim: the provisioning client's externalId of users

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scim_external_id',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_scim_external_id_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scim_external_id')),
    sa.UniqueConstraint('person_id', name=op.f('uq_scim_external_id_person_id'))
    )
    with op.batch_alter_table('scim_external_id', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scim_external_id_value'), ['value'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('scim_external_id', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scim_external_id_value'))

    op.drop_table('scim_external_id')
