"""guardian_link: drop the index on guardian_id alone

The unique constraint on (guardian_id, student_id) is an index whose leading column
is guardian_id: it serves every lookup by guardian. The second index only cost an
extra entry per link written (a million per city import).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_guardian_link_guardian_id', table_name='guardian_link')


def downgrade() -> None:
    op.create_index('ix_guardian_link_guardian_id', 'guardian_link', ['guardian_id'],
                    unique=False)
