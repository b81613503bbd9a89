"""Similarity search resolvers (Query.similarMessages, Message.similar)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api.errors import NotImplementedYet

if TYPE_CHECKING:
    from api.graphql.context import Info
    from api.graphql.enums import MessageRole, SearchScope
    from api.graphql.types import MessageMatch


async def similar_to_message(
    info: Info, message: Any, first: int, scope: SearchScope, roles: list[MessageRole] | None
) -> list[MessageMatch]:
    raise NotImplementedYet("Similarity search is not available in this version yet.")


async def similar_messages(
    info: Info,
    embedding: list[float] | None,
    text: str | None,
    first: int,
    scope: SearchScope,
    context_id: str | None,
    roles: list[MessageRole] | None,
    max_distance: float | None,
) -> list[MessageMatch]:
    raise NotImplementedYet("Similarity search is not available in this version yet.")
