"""GraphQL input types and their conversion to validated store inputs."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from api.graphql.enums import ContextOrderField, MessageRole, OrderDirection
from api.store.inputs import Limits, NewMessage, check_new_messages, parse_id


@strawberry.input(description="How to order contexts.")
class ContextOrder:
    field: ContextOrderField = strawberry.field(description="What to order by.")
    direction: OrderDirection = strawberry.field(description="Ascending or descending.")


@strawberry.input(description="Which contexts to list.")
class ContextFilter:
    name_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the name."
    )
    roots_only: bool | None = strawberry.field(
        default=None, description="Only roots (contexts that are not forks)."
    )
    parent_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only direct forks of this context."
    )
    metadata_contains: JSON | None = strawberry.field(
        default=None,
        description="Only contexts whose metadata contains this JSON object (JSON containment, "
        'e.g. {user: "u1"}).',
    )
    include_deleted: bool | None = strawberry.field(
        default=False, description="Include soft-deleted contexts."
    )


@strawberry.input(description="A message to append.")
class MessageInput:
    id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Client-chosen UUID. Re-sending an append whose messages already exist in "
        "that context with the same ids and contents returns the stored messages instead of "
        "appending again, so a retry after a lost response is safe. The same id with different "
        "content is BAD_USER_INPUT.",
    )
    role: MessageRole = strawberry.field(description="Who wrote the message.")
    content: str = strawberry.field(description="The message text.")
    tool_call_id: str | None = strawberry.field(
        default=None, description="For tool messages: the call they answer."
    )
    tool_name: str | None = strawberry.field(
        default=None, description="For tool messages: the tool's name."
    )
    token_count: int | None = strawberry.field(
        default=None, description="Tokens in the message (counted by the client)."
    )
    model: str | None = strawberry.field(
        default=None, description="The model that produced the message."
    )
    embedding: list[float] | None = strawberry.field(
        default=None, description="Exactly 1536 finite floats, or omitted."
    )


def to_new_messages(
    messages: list[MessageInput], limits: Limits, *, allow_empty: bool = False
) -> list[NewMessage]:
    """Validate a batch of inputs (ids, texts, sizes, embeddings)."""
    converted = [
        NewMessage(
            id=None if m.id is None else parse_id(m.id, f"messages[{i}].id"),
            role=m.role.value,
            content=m.content,
            tool_call_id=m.tool_call_id,
            tool_name=m.tool_name,
            token_count=m.token_count,
            model=m.model,
            embedding=m.embedding,
        )
        for i, m in enumerate(messages)
    ]
    return check_new_messages(converted, limits, allow_empty=allow_empty)
