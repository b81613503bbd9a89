"""running token sums for O(1) fork counters at any version

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 19:00:00.000000

`messages.prefix_tokens` is the token sum of the owning context's own messages up
to and including the row; `contexts.own_tokens` the running total the next append
continues. With them (and the partial index of deleted messages) a fork's counters
at an older version no longer scan the history above it (api/store/history.py,
`history_totals_at_sql`). Existing rows are backfilled.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('contexts', sa.Column('own_tokens', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('messages', sa.Column('prefix_tokens', sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE messages m SET prefix_tokens = s.total FROM ("
        " SELECT id, sum(coalesce(token_count, 0))"
        " OVER (PARTITION BY context_id ORDER BY version) AS total FROM messages) s"
        " WHERE m.id = s.id"
    )
    op.execute(
        "UPDATE contexts c SET own_tokens = s.total FROM ("
        " SELECT context_id, sum(coalesce(token_count, 0)) AS total"
        " FROM messages GROUP BY context_id) s"
        " WHERE c.id = s.context_id"
    )
    op.alter_column('messages', 'prefix_tokens', nullable=False)
    op.create_index('ix_messages_deleted_context_id_version', 'messages', ['context_id', 'version'], unique=False, postgresql_where=sa.text('deleted_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_messages_deleted_context_id_version', table_name='messages', postgresql_where=sa.text('deleted_at IS NOT NULL'))
    op.drop_column('messages', 'prefix_tokens')
    op.drop_column('contexts', 'own_tokens')
