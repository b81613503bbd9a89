"""The `messages` table: the entries of every history, owned by one context."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.base import EMBEDDING_DIMENSIONS

ROLES = ("user", "assistant", "system", "tool")
"""Stored role values; the API exposes them as the MessageRole enum."""

STATUSES = ("in_progress", "incomplete")
"""Stored status values besides NULL, which is COMPLETED (every row written before
statuses existed, and every message written whole): one representation of the common
case, so old and new rows compare alike."""

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128


class Message(SQLModel, table=True):
    """One immutable entry of a context's history.

    `version` is assigned by the server: 1, 2, 3, ... for a root; a fork's own
    messages continue after its fork version, without gaps. Only `deleted_at`
    (soft delete) and `embedding` ever change after insert.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # The unique constraint's index is the (context_id, version) index every
        # history read range-scans; a second identical index would only cost writes.
        sa.UniqueConstraint("context_id", "version"),
        sa.CheckConstraint(
            "role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="role_valid"
        ),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status_valid"
        ),
        # The deleted messages of a context by version: what a fork's counters at an
        # older version subtract from the prefix sums (api/store/contexts.py). Few
        # rows, so a fork stays O(deleted) instead of O(history).
        sa.Index(
            "ix_messages_deleted_context_id_version",
            "context_id",
            "version",
            postgresql_where=sa.text("deleted_at IS NOT NULL"),
        ),
        sa.Index(
            "ix_messages_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="The message's UUID (also its global node id); the client may choose it "
        "to make retries idempotent.",
        primary_key=True,
        sa_column_kwargs={"server_default": sa.text("gen_random_uuid()")},
    )
    context_id: uuid.UUID = Field(
        foreign_key="contexts.id", nullable=False, description="The context that owns the row."
    )
    version: int = Field(
        sa_type=sa.BigInteger,
        nullable=False,
        description="Position in the history: 1, 2, 3, ... assigned by the server.",
    )
    created_at: datetime = Field(
        default=None,
        description="When the message was appended.",
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )
    role: str = Field(sa_type=sa.Text, nullable=False, description="Who wrote the message.")
    content: str = Field(
        sa_type=sa.Text,
        nullable=False,
        description="The message text: the text of its text parts joined by a blank line "
        "('' when it has none). Kept beside `parts` so that text readers (a chat page, "
        "keyword search) read a column, not JSON.",
    )
    parts: list[dict[str, Any]] | None = Field(
        default=None,
        sa_type=JSONB,
        description="The content as typed parts (api/store/parts.py has the stored form); "
        "NULL when it is one text part, `content` (every row written before parts existed).",
    )
    status: str | None = Field(
        default=None,
        sa_type=sa.Text,
        description="in_progress or incomplete; NULL when completed (see STATUSES).",
    )
    usage: dict[str, Any] | None = Field(
        default=None,
        sa_type=JSONB,
        description="Token usage the provider reported (input_tokens, output_tokens, "
        "cached_input_tokens, reasoning_tokens), if given.",
    )
    tool_call_id: str | None = Field(
        default=None, sa_type=sa.Text, description="For tool messages: the call they answer."
    )
    tool_name: str | None = Field(
        default=None, sa_type=sa.Text, description="For tool messages: the tool's name."
    )
    token_count: int | None = Field(
        default=None, description="Tokens in the message as counted by the client, if given."
    )
    model: str | None = Field(
        default=None, sa_type=sa.Text, description="The model that produced the message, if any."
    )
    prefix_tokens: int = Field(
        default=0,
        sa_type=sa.BigInteger,
        nullable=False,
        description="Sum of tokenCount over the owning context's own messages up to and "
        "including this one, deleted ones included. Versions of a context's own messages "
        "are contiguous and messages are never removed, so with this prefix sum the "
        "counters of any version are O(1) (internal; not in the API).",
    )
    deleted_at: datetime | None = Field(
        default=None,
        description="When the message was soft-deleted; null while it is visible.",
        sa_type=sa.DateTime(timezone=True),
        index=True,
    )
    embedding: list[float] | None = Field(
        default=None,
        sa_type=Vector(EMBEDDING_DIMENSIONS),
        description="A 1536-d embedding for similarity search.",
    )
