"""audit_head.first_seq, first_prev_hash: where the kept chain begins after a pruning

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN, also on SQLite (see 0012): nothing pruned yet, the chain begins at
    # row 1 from the zero hash (NULL)
    op.add_column('audit_head', sa.Column('first_seq', sa.BigInteger(), nullable=False,
                                          server_default='1'))
    op.add_column('audit_head', sa.Column('first_prev_hash', sa.LargeBinary(length=32),
                                          nullable=True))
    # After a pruning, a downgrade and this upgrade again: the kept chain begins at the
    # oldest row left, chaining from its prev_hash (its audit.prune event still says so)
    op.execute("UPDATE audit_head SET "
               "first_seq = (SELECT MIN(seq) FROM audit_event), "
               "first_prev_hash = (SELECT prev_hash FROM audit_event WHERE seq = "
               "(SELECT MIN(seq) FROM audit_event)) "
               "WHERE (SELECT MIN(seq) FROM audit_event) > 1")


def downgrade() -> None:
    # the pruned rows cannot come back: after a pruning, `idp audit verify` on the older
    # version reports row 1 missing; upgrading again rebuilds the anchor from the rows
    op.drop_column('audit_head', 'first_prev_hash')
    op.drop_column('audit_head', 'first_seq')
