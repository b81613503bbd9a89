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
