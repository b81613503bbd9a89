"""Similarity search resolvers (Query.similarMessages, Message.similar).

Arguments are checked here; the search itself (scopes, exact vs index paths,
per-transaction index settings) is api/store/search.py.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from api.embeddings import HOW_TO_CONFIGURE, provider_of
from api.errors import BadUserInput
from api.graphql.enums import SearchScope
from api.store import search as store
from api.store.inputs import check_embedding, check_text, parse_id

if TYPE_CHECKING:
    from api.graphql.context import Info
    from api.graphql.enums import MessageRole
    from api.graphql.types import MessageMatch


def _check_first(first: int, info: Info) -> int:
    limit = info.context.limits.max_search_results
    if not 1 <= first <= limit:
        raise BadUserInput(
            f"`first` must be between 1 and {limit} (got {first}; setting "
            "CTXGRAPH_MAX_SEARCH_RESULTS)."
        )
    return first


_SCOPES: dict[SearchScope, store.Scope] = {
    SearchScope.CONTEXT: "context",
    SearchScope.TREE: "tree",
    SearchScope.ALL: "all",
}


def _roles(roles: list[MessageRole] | None) -> tuple[str, ...] | None:
    return None if roles is None else tuple(sorted({r.value for r in roles}))


async def _run(
    info: Info, query: store.QueryVector, req: store.SearchRequest
) -> list[MessageMatch]:
    from api.graphql.types import MessageMatch

    # One transaction: the index path's settings are SET LOCAL.
    async with info.context.db.transaction() as conn:
        result = await store.search(conn, query, req)
    return [MessageMatch(message=row, distance=row.distance) for row in result.rows]  # type: ignore[arg-type]


async def _embed_text(info: Info, text: str) -> list[float]:
    request: Any = getattr(info.context, "request", None)
    provider = provider_of(request.app.state) if request is not None else None
    if provider is None:
        raise BadUserInput(
            "`text` needs an embedding provider and none is configured: " + HOW_TO_CONFIGURE + "."
        )
    check_text(text, "text", info.context.limits.max_content_length, "CTXGRAPH_MAX_CONTENT_LENGTH")
    if not text.strip():
        raise BadUserInput("`text` must not be empty.")
    (vector,) = await provider.embed([text])
    return vector


async def similar_to_message(
    info: Info, message: Any, first: int, scope: SearchScope, roles: list[MessageRole] | None
) -> list[MessageMatch]:
    """Message.similar: neighbours of the message's own embedding, itself excluded.

    Scopes CONTEXT and TREE are those of the context that owns the message (an
    ancestor's, for a message inherited through a fork). Each message runs its
    own search (one transaction, 2-4 statements): selecting `similar` on every
    node of a long page costs one search per node.
    """
    k = _check_first(first, info)
    if not message.has_embedding:
        return []
    req = store.SearchRequest(
        k=k,
        scope=_SCOPES[scope],
        context_id=None if scope == SearchScope.ALL else message.context_id,
        roles=_roles(roles),
        exclude_id=message.id,
    )
    return await _run(info, store.QueryVector(message_id=message.id), req)


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
    """Query.similarMessages."""
    k = _check_first(first, info)
    if (embedding is None) == (text is None):
        raise BadUserInput("Give exactly one of `embedding` (a 1536-d vector) or `text`.")
    cid: uuid.UUID | None = None
    if scope != SearchScope.ALL:
        if context_id is None:
            raise BadUserInput(f"`contextId` is required with scope {scope.name}.")
        cid = parse_id(context_id, "contextId")
    if max_distance is not None and not max_distance >= 0:
        raise BadUserInput(
            f"`maxDistance` must be >= 0 (cosine distance is 0..2; got {max_distance})."
        )
    vector = check_embedding(embedding) if embedding is not None else None
    req = store.SearchRequest(
        k=k, scope=_SCOPES[scope], context_id=cid, roles=_roles(roles), max_distance=max_distance
    )
    if vector is None:
        assert text is not None
        # Embedded before any connection is taken: the provider may be slow.
        vector = await _embed_text(info, text)
    return await _run(info, store.QueryVector(values=vector), req)
