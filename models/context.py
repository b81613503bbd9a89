"""The `contexts` table: one row per conversation (a root or a fork)."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.base import metadata  # noqa: F401  (applies the naming convention first)


class Context(SQLModel, table=True):
    """A conversation: an ordered, versioned, append-only log of messages.

    The counters (`message_count`, `total_tokens`, `latest_version`) describe
    the visible history, inherited messages included; the data layer keeps
    them exact in the same transaction as every write.
    """

    __tablename__ = "contexts"
    __table_args__ = (
        # "My conversations": containment filters on metadata.
        sa.Index(
            "ix_contexts_metadata_gin",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
        # Keyset pagination of `contexts` by each order field, id as tie-break.
        sa.Index("ix_contexts_updated_at_id", "updated_at", "id"),
        sa.Index("ix_contexts_created_at_id", "created_at", "id"),
        # Direct forks, oldest first (Context.forks, Message.forks, descendants).
        sa.Index("ix_contexts_parent_id_created_at", "parent_id", "created_at", "id"),
        sa.CheckConstraint(
            "fork_version IS NULL OR fork_version >= 0", name="fork_version_nonnegative"
        ),
        sa.CheckConstraint(
            "(parent_id IS NULL) = (fork_version IS NULL)", name="fork_has_parent_and_version"
        ),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="The context's UUID (also its global node id).",
        primary_key=True,
        sa_column_kwargs={"server_default": sa.text("gen_random_uuid()")},
    )
    name: str | None = Field(
        default=None, sa_type=sa.Text, description="A display name chosen by the client."
    )
    # `metadata` is reserved on declarative classes, so the attribute is `meta`.
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="A JSON object owned by the client (owner, tags, app settings); {} when unset.",
        sa_type=JSONB,
        sa_column_kwargs={
            "name": "metadata",
            "nullable": False,
            "server_default": sa.text("'{}'::jsonb"),
        },
    )
    created_at: datetime = Field(
        default=None,
        description="When the context was created (for a fork: when it was forked).",
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )
    updated_at: datetime = Field(
        default=None,
        description="Last change: append, rename, metadata, message deletion, delete "
        "or restore. Forking does not touch the parent.",
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )
    message_count: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="Visible messages in this context's history, inherited ones included.",
    )
    # A bigint although appends keep it within GraphQL's Int (api/store/messages.py):
    # the sum a statement computes before it checks cannot overflow the column.
    total_tokens: int = Field(
        default=0,
        sa_type=sa.BigInteger,
        sa_column_kwargs={"server_default": "0"},
        description="Sum of tokenCount over the visible messages (null counts as 0); at most "
        "2,147,483,647: an append that would take it further is refused.",
    )
    own_tokens: int = Field(
        default=0,
        sa_type=sa.BigInteger,
        sa_column_kwargs={"server_default": "0"},
        description="Sum of tokenCount over the messages appended to this context itself, "
        "deleted ones included: the running total that each appended message's "
        "prefix_tokens continues (internal; not in the API). It equals the newest own "
        "message's prefix_tokens, but an append must not read that row: the append's "
        "statement waits for the context's row lock, and its snapshot, taken before the "
        "wait, would miss a message the lock holder just committed. This column is "
        "updated under that lock, so its value is the current one.",
    )
    latest_version: int = Field(
        default=0,
        sa_type=sa.BigInteger,
        sa_column_kwargs={"server_default": "0"},
        description="Version of the newest message in the history; 0 when empty. "
        "A fresh fork starts at its forkVersion.",
    )
    parent_id: uuid.UUID | None = Field(
        default=None, foreign_key="contexts.id", description="The context this one was forked from."
    )
    fork_version: int | None = Field(
        default=None,
        sa_type=sa.BigInteger,
        description="The version of the parent at which this context was forked; null for a root.",
    )
    deleted_at: datetime | None = Field(
        default=None,
        description="When the context was soft-deleted; null while it is live.",
        sa_type=sa.DateTime(timezone=True),
    )
