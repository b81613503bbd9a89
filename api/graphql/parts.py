"""Message parts in GraphQL: the MessagePart union and its members, token usage, and
their inputs, with the conversions to and from the stored form (api/store/parts.py).

Parts are read from the message's own row (`messages.parts`): selecting them costs
no statement of its own, whatever the page size.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import strawberry
from graphql import GraphQLInputObjectType, GraphQLSchema
from strawberry.scalars import JSON

from api.errors import BadUserInput
from api.store import parts as stored_parts
from api.store.parts import Part

# --- output ------------------------------------------------------------------------------


@strawberry.type(description="Plain text.")
class TextPart:
    text: str = strawberry.field(description="The text.")


@strawberry.type(
    description="An image by URL (https:, or a data: URL counted against the content limit)."
)
class ImagePart:
    url: str = strawberry.field(description="Where the image is (stored as given, never fetched).")
    media_type: str | None = strawberry.field(description="Its media type, e.g. image/png.")
    detail: str | None = strawberry.field(description="Provider hint such as low, high or auto.")


@strawberry.type(
    description="A file by URL (https:, or a data: URL counted against the content limit)."
)
class FilePart:
    url: str = strawberry.field(description="Where the file is (stored as given, never fetched).")
    media_type: str | None = strawberry.field(
        description="Its media type, e.g. application/pdf. Nullable like ImagePart.mediaType, "
        "so one selection can ask both."
    )
    filename: str | None = strawberry.field(description="Its file name, if known.")


@strawberry.type(description="A tool call the model asked for (ASSISTANT messages only).")
class ToolCallPart:
    call_id: str = strawberry.field(
        description="Unique within the history; the ToolResultPart that answers it carries "
        "the same id."
    )
    name: str = strawberry.field(description="The tool's name.")
    arguments: JSON = strawberry.field(
        description="The arguments as a JSON value (an object for every current provider)."
    )


@strawberry.type(description="A tool's answer to a call (TOOL messages only).")
class ToolResultPart:
    call_id: str = strawberry.field(description="The callId of the ToolCallPart it answers.")
    output: JSON = strawberry.field(description="A string or any JSON value.")
    is_error: bool = strawberry.field(description="Whether the tool failed (output says how).")


@strawberry.type(
    description="The model's reasoning: readable text and/or an opaque blob that only its "
    "provider can read back (ASSISTANT messages only)."
)
class ReasoningPart:
    text: str = strawberry.field(
        description="Readable reasoning; '' when the provider gave only an opaque blob. "
        "(Non-null like TextPart.text, so one selection can ask both.)"
    )
    encrypted: str | None = strawberry.field(
        description="The provider's opaque reasoning (an encrypted blob or a signature)."
    )
    provider: str | None = strawberry.field(
        description="Who can read encrypted, e.g. openai or anthropic; provider formats drop "
        "foreign blobs."
    )


@strawberry.type(
    description="Application data (citations, UI state, anything): name says what it is."
)
class DataPart:
    name: str = strawberry.field(description="What the data is, e.g. citation or weather-card.")
    data: JSON = strawberry.field(description="The data: any JSON value.")


MessagePart = Annotated[
    TextPart | ImagePart | FilePart | ToolCallPart | ToolResultPart | ReasoningPart | DataPart,
    strawberry.union("MessagePart", description="One piece of a message's content, in order."),
]


@strawberry.type(
    description="Token usage the provider reported for the call that produced a message."
)
class TokenUsage:
    input_tokens: int | None = strawberry.field(description="Tokens of the prompt.")
    output_tokens: int | None = strawberry.field(description="Tokens generated.")
    cached_input_tokens: int | None = strawberry.field(
        description="Tokens of the prompt read from the provider's cache."
    )
    reasoning_tokens: int | None = strawberry.field(
        description="Tokens of reasoning (counted in outputTokens by most providers)."
    )


def part_object(part: Part) -> Any:
    """The GraphQL object of a stored part."""
    kind = part["type"]
    if kind == stored_parts.TEXT:
        return TextPart(text=part["text"])
    if kind == stored_parts.IMAGE:
        return ImagePart(
            url=part["url"], media_type=part.get("media_type"), detail=part.get("detail")
        )
    if kind == stored_parts.FILE:
        return FilePart(
            url=part["url"], media_type=part.get("media_type"), filename=part.get("filename")
        )
    if kind == stored_parts.TOOL_CALL:
        return ToolCallPart(call_id=part["call_id"], name=part["name"], arguments=part["arguments"])
    if kind == stored_parts.TOOL_RESULT:
        return ToolResultPart(
            call_id=part["call_id"], output=part["output"], is_error=part["is_error"]
        )
    if kind == stored_parts.REASONING:
        return ReasoningPart(
            text=part["text"], encrypted=part.get("encrypted"), provider=part.get("provider")
        )
    return DataPart(name=part["name"], data=part["data"])


def message_parts(parts: list[Part] | None, content: str) -> list[Any]:
    """Message.parts of a row: its stored parts, or one TextPart of its content."""
    if parts is None:
        return [TextPart(text=content)]
    return [part_object(p) for p in parts]


def token_usage(usage: dict[str, Any] | None) -> TokenUsage | None:
    if usage is None:
        return None
    return TokenUsage(
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        cached_input_tokens=usage.get("cached_input_tokens"),
        reasoning_tokens=usage.get("reasoning_tokens"),
    )


# --- input -------------------------------------------------------------------------------


@strawberry.input(description="Token usage the provider reported; every count optional.")
class TokenUsageInput:
    input_tokens: int | None = strawberry.field(default=None, description="Tokens of the prompt.")
    output_tokens: int | None = strawberry.field(default=None, description="Tokens generated.")
    cached_input_tokens: int | None = strawberry.field(
        default=None, description="Tokens of the prompt read from the provider's cache."
    )
    reasoning_tokens: int | None = strawberry.field(
        default=None, description="Tokens of reasoning."
    )


@strawberry.input(description="An image by URL: https: (stored as given, never fetched) or data:.")
class ImagePartInput:
    url: str = strawberry.field(
        description="An absolute URL; a data: URL counts in full against the content limit."
    )
    media_type: str | None = strawberry.field(
        default=None, description="Its media type, e.g. image/png."
    )
    detail: str | None = strawberry.field(
        default=None, description="Provider hint such as low, high or auto."
    )


@strawberry.input(description="A file by URL: https: (stored as given, never fetched) or data:.")
class FilePartInput:
    url: str = strawberry.field(
        description="An absolute URL; a data: URL counts in full against the content limit."
    )
    media_type: str | None = strawberry.field(
        default=None, description="Its media type, e.g. application/pdf."
    )
    filename: str | None = strawberry.field(default=None, description="Its file name.")


@strawberry.input(description="A tool call the model asked for (ASSISTANT messages only).")
class ToolCallPartInput:
    call_id: str = strawberry.field(
        description="The provider's id of the call; unique within the history."
    )
    name: str = strawberry.field(description="The tool's name.")
    arguments: JSON = strawberry.field(
        description="The arguments: a JSON value, or a string of JSON text as OpenAI sends "
        "them, which is parsed (a string that is not JSON is BAD_USER_INPUT; to store a "
        "JSON string, send it JSON-encoded)."
    )


@strawberry.input(description="A tool's answer to a call (TOOL messages only).")
class ToolResultPartInput:
    call_id: str = strawberry.field(
        description="The callId of an earlier ToolCallPart of the history (or of this batch) "
        "that has no result yet."
    )
    output: JSON = strawberry.field(description="A string or any JSON value.")
    is_error: bool | None = strawberry.field(
        default=False, description="Whether the tool failed (output says how)."
    )


@strawberry.input(description="The model's reasoning (ASSISTANT messages only).")
class ReasoningPartInput:
    text: str | None = strawberry.field(
        default=None, description="Readable reasoning ('' when omitted)."
    )
    encrypted: str | None = strawberry.field(
        default=None, description="The provider's opaque reasoning blob or signature."
    )
    provider: str | None = strawberry.field(
        default=None, description="Who can read encrypted, e.g. openai or anthropic."
    )


@strawberry.input(description="Application data: name says what it is.")
class DataPartInput:
    name: str = strawberry.field(description="What the data is.")
    data: JSON = strawberry.field(description="Any JSON value.")


@strawberry.input(
    one_of=True,
    description="One part of a message's content. Exactly one field set. Where parts may go: "
    "toolCall and reasoning in ASSISTANT messages, toolResult in TOOL messages, SYSTEM "
    "messages hold text and data only.",
)
class MessagePartInput:
    text: str | None = strawberry.field(default=strawberry.UNSET, description="Plain text.")
    image: ImagePartInput | None = strawberry.field(
        default=strawberry.UNSET, description="An image."
    )
    file: FilePartInput | None = strawberry.field(default=strawberry.UNSET, description="A file.")
    tool_call: ToolCallPartInput | None = strawberry.field(
        default=strawberry.UNSET, description="A tool call (ASSISTANT)."
    )
    tool_result: ToolResultPartInput | None = strawberry.field(
        default=strawberry.UNSET, description="A tool result (TOOL)."
    )
    reasoning: ReasoningPartInput | None = strawberry.field(
        default=strawberry.UNSET, description="Reasoning (ASSISTANT)."
    )
    data: DataPartInput | None = strawberry.field(
        default=strawberry.UNSET, description="Application data."
    )


_KINDS = ("text", "image", "file", "tool_call", "tool_result", "reasoning", "data")


def _given(value: Any) -> bool:
    return value is not None and value is not strawberry.UNSET


def _without_nulls(part: Part) -> Part:
    return {k: v for k, v in part.items() if v is not None}


def tool_arguments(value: Any, where: str) -> Any:
    """Arguments as stored: a string is JSON text (OpenAI's form) and is parsed."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise BadUserInput(
            f"`{where}` is a string that is not JSON ({exc.msg} at character {exc.pos}); send "
            "the arguments as a JSON value, or as JSON text."
        ) from None
    except RecursionError:
        raise BadUserInput(f"`{where}` nests JSON too deeply; flatten it.") from None


_INPUT_NAMES = dict(zip(_KINDS, stored_parts.INPUT_NAMES.values(), strict=True))


def stored_part(part: MessagePartInput, where: str) -> Part:
    """The stored form of one MessagePartInput (its fields are checked with the message).

    Exactly one field, not null (@oneOf): checked here, where the part's place in the
    arguments is known (`messages[i].parts[j]`), for documents and variables alike
    (`one_of_checked_by_resolvers`)."""
    present = [k for k in _KINDS if getattr(part, k) is not strawberry.UNSET]
    if len(present) != 1 or not _given(getattr(part, present[0])):
        names = ", ".join(_INPUT_NAMES[k] for k in present) or "none"
        raise BadUserInput(
            f"`{where}` must set exactly one field of MessagePartInput, not null (got "
            f'{names}): one part per item, e.g. {{text: "..."}} or {{toolCall: {{...}}}}.'
        )
    kind = present[0]
    if kind == "text":
        return stored_parts.text_part(part.text)  # type: ignore[arg-type]
    if kind == "image":
        i = part.image
        assert i is not None
        return _without_nulls(
            {"type": kind, "url": i.url, "media_type": i.media_type, "detail": i.detail}
        )
    if kind == "file":
        f = part.file
        assert f is not None
        return _without_nulls(
            {"type": kind, "url": f.url, "media_type": f.media_type, "filename": f.filename}
        )
    if kind == "tool_call":
        c = part.tool_call
        assert c is not None
        return {
            "type": kind,
            "call_id": c.call_id,
            "name": c.name,
            "arguments": tool_arguments(c.arguments, f"{where}.toolCall.arguments"),
        }
    if kind == "tool_result":
        r = part.tool_result
        assert r is not None
        return {
            "type": kind,
            "call_id": r.call_id,
            "output": r.output,
            "is_error": bool(r.is_error),
        }
    if kind == "reasoning":
        z = part.reasoning
        assert z is not None
        return _without_nulls(
            {"type": kind, "text": z.text or "", "encrypted": z.encrypted, "provider": z.provider}
        )
    d = part.data
    assert d is not None
    return {"type": kind, "name": d.name, "data": d.data}


def stored_usage(usage: TokenUsageInput | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }


def one_of_checked_by_resolvers(schema: GraphQLSchema) -> None:
    """Let a MessagePartInput variable that sets no field or several through to
    `stored_part`, which refuses it naming the part (`messages[1].parts[0]`).

    Strawberry checks @oneOf while graphql-core coerces a variable, by raising from the
    type's out_type, so the error has no path and no location: "OneOf Input Object
    'MessagePartInput' must specify exactly one key.", whichever of the thousand parts
    it was. A value in the document itself is still checked by Strawberry's validation
    rule, with its location.
    """
    type_ = schema.type_map["MessagePartInput"]
    assert isinstance(type_, GraphQLInputObjectType)
    # graphql-core's documented hook (out_type), replacing Strawberry's check only
    type_.out_type = _as_coerced  # type: ignore[method-assign]


def _as_coerced(value: dict[str, Any]) -> dict[str, Any]:
    return value
