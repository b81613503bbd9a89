"""The `tool_calls` table: the call ids of every context's own tool calls and results."""

import uuid

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import metadata  # noqa: F401  (applies the naming convention first)

KINDS = ("call", "result")


class ToolCall(SQLModel, table=True):
    """One row per ToolCallPart ('call') and per ToolResultPart ('result') of the
    messages a context owns, written by the statement that appends them.

    The rules of design.md "Parts (v2)" (a result answers an earlier open call of
    the same history; callIds unique within a history) are index probes here: per
    call id and per segment of a fork chain, one primary-key lookup, instead of a
    scan of the history's parts. The primary key also makes a second call or a
    second result with one id in one context impossible, whatever the code above.
    Messages are never removed, so neither are these rows (a soft-deleted message's
    calls and results still count).
    """

    __tablename__ = "tool_calls"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")", name="kind_valid"
        ),
    )

    context_id: uuid.UUID = Field(
        foreign_key="contexts.id",
        primary_key=True,
        description="The context that owns the message holding the part.",
    )
    call_id: str = Field(sa_type=sa.Text, primary_key=True, description="The part's callId.")
    kind: str = Field(sa_type=sa.Text, primary_key=True, description="'call' or 'result'.")
    version: int = Field(
        sa_type=sa.BigInteger,
        nullable=False,
        description="Version of the message holding the part, in its owning context.",
    )
