"""GraphQL enums. Enum values are the stored strings, so records serialize as they are."""

from enum import Enum

import strawberry


@strawberry.enum(
    description="Who wrote a message: USER (the end user), ASSISTANT (the model), "
    "SYSTEM (instructions to the model) or TOOL (a tool's result)."
)
class MessageRole(Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


@strawberry.enum(
    description="Where similarity search looks: CONTEXT (that context's visible history, "
    "inherited messages included), TREE (every context in its fork tree), ALL (all contexts)."
)
class SearchScope(Enum):
    CONTEXT = "context"
    TREE = "tree"
    ALL = "all"


@strawberry.enum(
    description="What to order contexts by: CREATED_AT, UPDATED_AT (last activity) or NAME "
    "(unnamed contexts sort as the empty string)."
)
class ContextOrderField(Enum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    NAME = "name"


@strawberry.enum(description="Sort direction.")
class OrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.enum(
    description="Where a message stands: COMPLETED (written whole), IN_PROGRESS (being "
    "streamed) or INCOMPLETE (streaming stopped before the end)."
)
class MessageStatus(Enum):
    COMPLETED = strawberry.enum_value("completed", description="Written whole.")
    IN_PROGRESS = strawberry.enum_value(
        "in_progress",
        description="Being streamed (startMessage .. finishMessage): its parts may still grow.",
    )
    INCOMPLETE = strawberry.enum_value(
        "incomplete", description="Streaming stopped before the end; its parts are what arrived."
    )


@strawberry.enum(
    description="Request formats of the major LLM APIs, for appendFormatted (and, read back, "
    "the converters of api/formats; see docs/formats.md for what maps to what)."
)
class MessageFormat(Enum):
    OPENAI_CHAT = strawberry.enum_value(
        "openai_chat", description="OpenAI Chat Completions: the value of messages."
    )
    OPENAI_RESPONSES = strawberry.enum_value(
        "openai_responses", description="OpenAI Responses: the value of input (items)."
    )
    ANTHROPIC = strawberry.enum_value(
        "anthropic", description="Anthropic Messages: an object {system, messages}."
    )
    AI_SDK_UI = strawberry.enum_value("ai_sdk_ui", description="Vercel AI SDK: UIMessage[].")
