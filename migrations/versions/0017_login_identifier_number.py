"""login_identifier.number_enc: a phone login's number, sealed beside its blind index

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012); NULL for existing rows: a phone login
    # that is its person's number on file gets it from `idp keys reencrypt`
    # (directory.people.reindex_phone_logins); another one cannot (only its index is kept)
    op.add_column('login_identifier', sa.Column('number_enc', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('login_identifier', 'number_enc')
