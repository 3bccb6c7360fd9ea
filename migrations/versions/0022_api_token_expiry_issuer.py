"""api_token.expires_at and issued_by: tokens issued in the admin console end, and say who
issued them

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012). NULL expiry: the operators' tokens
    # (``idp tokens issue``) last until revoked; NULL issuer: issued before this column
    op.add_column('api_token', sa.Column('expires_at', core.db.UTCDateTime(timezone=True),
                                         nullable=True))
    op.add_column('api_token', sa.Column('issued_by', sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column('api_token', 'issued_by')
    op.drop_column('api_token', 'expires_at')
