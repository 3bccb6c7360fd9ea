"""api_token.last_appointment_id: a console token stops with the appointments its issuer
held when they issued it, even when a role is given again the same day

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012); no foreign key (an erased person's
    # affiliations go: an appointment that has ended). NULL: the operators' tokens and
    # those issued before, which keep being checked by the day
    op.add_column('api_token', sa.Column('last_appointment_id', sa.Integer(),
                                         nullable=True))


def downgrade() -> None:
    op.drop_column('api_token', 'last_appointment_id')
