"""contexts and messages

Revision ID: 0001
Revises:
Create Date: 2026-11-27 12:37:30.565211
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import pgvector.sqlalchemy
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # pgvector must exist before the embedding column. Needs a role allowed to
    # create extensions (superuser, or a trusted extension on managed services).
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table('contexts',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('message_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('total_tokens', sa.Integer(), server_default='0', nullable=False),
    sa.Column('latest_version', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('fork_version', sa.BigInteger(), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('(parent_id IS NULL) = (fork_version IS NULL)', name=op.f('ck_contexts_fork_has_parent_and_version')),
    sa.CheckConstraint('fork_version IS NULL OR fork_version >= 0', name=op.f('ck_contexts_fork_version_nonnegative')),
    sa.ForeignKeyConstraint(['parent_id'], ['contexts.id'], name=op.f('fk_contexts_parent_id_contexts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contexts'))
    )
    op.create_index('ix_contexts_created_at_id', 'contexts', ['created_at', 'id'], unique=False)
    op.create_index('ix_contexts_metadata_gin', 'contexts', ['metadata'], unique=False, postgresql_using='gin', postgresql_ops={'metadata': 'jsonb_path_ops'})
    op.create_index('ix_contexts_parent_id_created_at', 'contexts', ['parent_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_contexts_updated_at_id', 'contexts', ['updated_at', 'id'], unique=False)
    op.create_table('messages',
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('context_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('tool_call_id', sa.Text(), nullable=True),
    sa.Column('tool_name', sa.Text(), nullable=True),
    sa.Column('token_count', sa.Integer(), nullable=True),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('embedding', pgvector.sqlalchemy.Vector(1536), nullable=True),
    sa.CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name=op.f('ck_messages_role_valid')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_messages_version_positive')),
    sa.ForeignKeyConstraint(['context_id'], ['contexts.id'], name=op.f('fk_messages_context_id_contexts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('context_id', 'version', name=op.f('uq_messages_context_id_version'))
    )
    op.create_index(op.f('ix_messages_deleted_at'), 'messages', ['deleted_at'], unique=False)
    op.create_index('ix_messages_embedding_hnsw', 'messages', ['embedding'], unique=False, postgresql_using='hnsw', postgresql_with={'m': 16, 'ef_construction': 128}, postgresql_ops={'embedding': 'vector_cosine_ops'})


def downgrade() -> None:
    # The vector extension stays: other schemas in the database may use it.
    op.drop_index('ix_messages_embedding_hnsw', table_name='messages', postgresql_using='hnsw', postgresql_with={'m': 16, 'ef_construction': 128}, postgresql_ops={'embedding': 'vector_cosine_ops'})
    op.drop_index(op.f('ix_messages_deleted_at'), table_name='messages')
    op.drop_table('messages')
    op.drop_index('ix_contexts_updated_at_id', table_name='contexts')
    op.drop_index('ix_contexts_parent_id_created_at', table_name='contexts')
    op.drop_index('ix_contexts_metadata_gin', table_name='contexts', postgresql_using='gin', postgresql_ops={'metadata': 'jsonb_path_ops'})
    op.drop_index('ix_contexts_created_at_id', table_name='contexts')
    op.drop_table('contexts')
