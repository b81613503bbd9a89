"""message parts, status and usage; the tool call index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 01:30:00.000000

Three nullable columns without a default on `messages`: PostgreSQL records them in
the catalog only, so no row is rewritten however many there are (a volatile default
or a type change would rewrite the table). Old rows read as they are: `parts` NULL
is one text part, their `content`; `status` NULL is COMPLETED; `usage` NULL is none.

The status CHECK is added NOT VALID (no scan under the ACCESS EXCLUSIVE lock the
ADD COLUMNs hold) and validated after the commit, in its own transaction, under a
lock that lets reads and writes go on; every existing row is NULL, so it passes.

`tool_calls` is new and empty: no existing message has tool parts.

Revision 0003 is another branch's; the lead re-chains this one onto it when merging.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('messages', sa.Column('parts', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('messages', sa.Column('status', sa.Text(), nullable=True))
    op.add_column('messages', sa.Column('usage', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT ck_messages_status_valid"
        " CHECK (status IN ('in_progress', 'incomplete')) NOT VALID"
    )
    op.create_table('tool_calls',
    sa.Column('context_id', sa.Uuid(), nullable=False),
    sa.Column('call_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("kind IN ('call', 'result')", name=op.f('ck_tool_calls_kind_valid')),
    sa.ForeignKeyConstraint(['context_id'], ['contexts.id'], name=op.f('fk_tool_calls_context_id_contexts')),
    sa.PrimaryKeyConstraint('context_id', 'call_id', 'kind', name=op.f('pk_tool_calls'))
    )
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE messages VALIDATE CONSTRAINT ck_messages_status_valid")


def downgrade() -> None:
    op.drop_table('tool_calls')
    op.drop_constraint(op.f('ck_messages_status_valid'), 'messages', type_='check')
    op.drop_column('messages', 'usage')
    op.drop_column('messages', 'status')
    op.drop_column('messages', 'parts')
