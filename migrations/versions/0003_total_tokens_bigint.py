"""contexts.total_tokens as bigint

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 02:00:00.000000

An append adds its tokens to `contexts.total_tokens` in the statement that decides
whether the context may take them (api/store/messages.py): with an int column, a sum
past 2,147,483,647 failed as "integer out of range" (INTERNAL_SERVER_ERROR) for every
later append with tokens. The column is now a bigint like the other token sums
(`own_tokens`, `messages.prefix_tokens`); the API still caps a context's total at
2,147,483,647 (`Context.totalTokens` is a GraphQL Int), so every value fits the
downgrade's int again.

Changing the type rewrites the contexts table (not messages) under an ACCESS
EXCLUSIVE lock: writes and reads of contexts wait for it (bench/README.md, the
time it took on the benchmark's data set).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        'contexts', 'total_tokens',
        existing_type=sa.Integer(), type_=sa.BigInteger(),
        existing_nullable=False, existing_server_default=sa.text('0'),
    )


def downgrade() -> None:
    op.alter_column(
        'contexts', 'total_tokens',
        existing_type=sa.BigInteger(), type_=sa.Integer(),
        existing_nullable=False, existing_server_default=sa.text('0'),
    )
