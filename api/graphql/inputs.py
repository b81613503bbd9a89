"""GraphQL input types and their conversion to validated store inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryOptional,
    get_object_definition,
    has_object_definition,
)

from api.errors import BadUserInput
from api.graphql.enums import ContextOrderField, MessageRole, MessageStatus, OrderDirection
from api.graphql.parts import (
    DataPartInput,
    FilePartInput,
    ImagePartInput,
    MessagePartInput,
    ReasoningPartInput,
    TokenUsageInput,
    ToolCallPartInput,
    ToolResultPartInput,
    stored_part,
    stored_usage,
)
from api.store.inputs import NewMessage, parse_id


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
    content: str | None = strawberry.field(
        default=None,
        description="Plain text; give content or parts, not both (content alone is one "
        'TextPart; content: "" is an empty message).',
    )
    parts: list[MessagePartInput] | None = strawberry.field(
        default=None,
        description="Typed content; give parts or content, not both. The message's content "
        "becomes the text of its text parts joined by a blank line. Serialized as JSON, the "
        "parts count against the content limit.",
    )
    status: MessageStatus | None = strawberry.field(
        default=None,
        description="COMPLETED (default) or INCOMPLETE (e.g. importing an interrupted "
        "answer); IN_PROGRESS only through startMessage.",
    )
    usage: TokenUsageInput | None = strawberry.field(
        default=None, description="Token usage the provider reported for this message."
    )
    tool_call_id: str | None = strawberry.field(
        default=None, description="For tool messages: the call they answer."
    )
    tool_name: str | None = strawberry.field(
        default=None, description="For tool messages: the tool's name."
    )
    token_count: int | None = strawberry.field(
        default=None,
        description="Tokens in the message (counted by the client); at most "
        "CTXGRAPH_MAX_TOKEN_COUNT (10,000,000 unless configured).",
    )
    model: str | None = strawberry.field(
        default=None, description="The model that produced the message."
    )
    embedding: list[float] | None = strawberry.field(
        default=None, description="Exactly 1536 finite floats, or omitted."
    )


def _leaf_input(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
    """An input object whose fields are all leaves (or lists of leaves), for Strawberry
    (`from_input`).

    graphql-core has already coerced every field (enums to their Python members,
    omitted optional fields to their published default), so only the names change:
    Strawberry's generic conversion resolves each field's annotation again for every
    object, ~95 us a MessageInput (an append of 10: ~1 ms). The result equals that
    conversion's (tests/test_execution.py); lists are copied as it copies them.
    """
    return from_coerced(cls, value, context.config)


_DEFAULT_CONFIG = StrawberryConfig()


def from_coerced(
    cls: type, value: Mapping[str, Any], config: StrawberryConfig = _DEFAULT_CONFIG
) -> Any:
    """The input object of type `cls` from a value graphql-core coerced (`_leaf_input`);
    also for the planned append (api/graphql/plans.py), which coerces the arguments
    itself. Fields of an input type (a message's parts, its usage) are converted the
    same way, as Strawberry would."""
    kwargs: dict[str, Any] = {}
    for graphql, python, is_list, nested in _input_fields(cls, config):
        if graphql in value:
            item = value[graphql]
            if item is None:
                kwargs[python] = None
            elif nested is not None:
                kwargs[python] = (
                    [from_coerced(nested, x, config) for x in item]
                    if is_list
                    else from_coerced(nested, item, config)
                )
            else:
                kwargs[python] = list(item) if is_list else item
    return cls(**kwargs)


_FIELDS: dict[tuple[type, type, bool], list[tuple[str, str, bool, type | None]]] = {}


def _input_fields(cls: type, config: StrawberryConfig) -> list[tuple[str, str, bool, type | None]]:
    """(GraphQL name, Python name, is a list, the input type of its values if they are
    input objects) of the input type's fields under `config`."""
    converter = config.name_converter
    key = (cls, type(converter), converter.auto_camel_case)
    fields = _FIELDS.get(key)
    if fields is None:
        definition = get_object_definition(cls, strict=True)
        fields = _FIELDS[key] = [
            (converter.from_field(f), f.python_name, _is_list(f.type), _input_type(f.type))
            for f in definition.fields
        ]
    return fields


def _unwrap(type_: Any) -> Any:
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    if isinstance(type_, StrawberryList):
        type_ = type_.of_type
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    return type_


def _input_type(type_: Any) -> type | None:
    inner = _unwrap(type_)
    if has_object_definition(inner) and get_object_definition(inner, strict=True).is_input:
        return inner
    return None


def _is_list(type_: Any) -> bool:
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    return isinstance(type_, StrawberryList)


for _input in (
    ContextOrder,
    ContextFilter,
    MessageInput,
    MessagePartInput,
    TokenUsageInput,
    ImagePartInput,
    FilePartInput,
    ToolCallPartInput,
    ToolResultPartInput,
    ReasoningPartInput,
    DataPartInput,
):
    get_object_definition(_input, strict=True).from_input = _leaf_input


def _new_message(m: MessageInput, i: int) -> NewMessage:
    where = f"messages[{i}]"
    if m.parts is not None and m.content is not None:
        raise BadUserInput(
            f"`{where}` has both content and parts; give one of them (content alone is one "
            "text part)."
        )
    if m.parts is None and m.content is None:
        raise BadUserInput(f'`{where}` needs content or parts (content: "" for an empty message).')
    return NewMessage(
        id=None if m.id is None else parse_id(m.id, f"{where}.id"),
        role=m.role.value,
        content=m.content or "",
        tool_call_id=m.tool_call_id,
        tool_name=m.tool_name,
        token_count=m.token_count,
        model=m.model,
        embedding=m.embedding,
        parts=None
        if m.parts is None
        else [stored_part(p, f"{where}.parts[{j}]") for j, p in enumerate(m.parts)],
        status=None if m.status is None or m.status is MessageStatus.COMPLETED else m.status.value,
        usage=stored_usage(m.usage),
    )


def new_messages(messages: list[MessageInput]) -> list[NewMessage]:
    """The inputs as the store's messages (ids parsed, content or parts); the checks of a
    batch are the caller's (api/services/append.py, createContext)."""
    return [_new_message(m, i) for i, m in enumerate(messages)]
