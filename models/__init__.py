"""SQLModel tables: the single source of truth for ctxgraph's columns."""

from models.base import EMBEDDING_DIMENSIONS, metadata
from models.context import Context
from models.message import ROLES, STATUSES, Message
from models.tool_call import ToolCall

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "ROLES",
    "STATUSES",
    "Context",
    "Message",
    "ToolCall",
    "metadata",
]
