"""SQLModel tables: the single source of truth for ctxgraph's columns."""

from models.base import EMBEDDING_DIMENSIONS, metadata
from models.context import Context
from models.message import ROLES, Message

__all__ = ["EMBEDDING_DIMENSIONS", "ROLES", "Context", "Message", "metadata"]
