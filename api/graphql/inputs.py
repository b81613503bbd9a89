"""GraphQL input types and their conversion to validated store inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import InputContext
from strawberry.types.base import get_object_definition

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


def _message_input(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
    """MessageInput from its input value, for Strawberry (`from_input`).

    Every field is a leaf or a list of leaves that graphql-core has already coerced
    (roles to MessageRole, omitted optional fields to their published null), so only
    the names change: Strawberry's generic conversion resolves each field's
    annotation again for every message, ~95 us a message (an append of 10: ~1 ms).
    The same value as that conversion (tests/test_execution.py), the float list
    copied as it copies it.
    """
    names = _input_names(cls, context.config)
    kwargs = {python: value[graphql] for graphql, python in names if graphql in value}
    if kwargs.get("embedding") is not None:
        kwargs["embedding"] = list(kwargs["embedding"])
    return cls(**kwargs)


_NAMES: dict[tuple[type, type, bool], list[tuple[str, str]]] = {}


def _input_names(cls: type, config: StrawberryConfig) -> list[tuple[str, str]]:
    """(GraphQL name, Python name) of the input type's fields under `config`."""
    converter = config.name_converter
    key = (cls, type(converter), converter.auto_camel_case)
    names = _NAMES.get(key)
    if names is None:
        definition = get_object_definition(cls, strict=True)
        names = _NAMES[key] = [
            (config.name_converter.from_field(f), f.python_name) for f in definition.fields
        ]
    return names


get_object_definition(MessageInput, strict=True).from_input = _message_input


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
