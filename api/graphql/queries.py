"""Root query fields."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.graphql.context import Info
from api.graphql.enums import ContextOrderField, MessageRole, OrderDirection, SearchScope
from api.graphql.inputs import ContextFilter, ContextOrder
from api.graphql.lookahead import selected_history_page, selected_sibling_forks
from api.graphql.types import (
    Context,
    ContextConnection,
    Message,
    MessageMatch,
    Node,
)
from api.services.contexts import (
    ContextListRequest,
    context_list_request,
    count_contexts,
    list_contexts,
)
from api.store.inputs import Limits, parse_id

DEFAULT_ORDER = ContextOrder(field=ContextOrderField.UPDATED_AT, direction=OrderDirection.DESC)


def list_request(
    limits: Limits,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: ContextFilter | None,
    order_by: ContextOrder | None,
) -> ContextListRequest:
    """`Query.contexts`' arguments as a checked request (the resolver's and the plan's)."""
    f = filter or ContextFilter()
    order = order_by or DEFAULT_ORDER
    return context_list_request(
        limits,
        first=first,
        after=after,
        last=last,
        before=before,
        name_contains=f.name_contains,
        roots_only=f.roots_only,
        parent_id=f.parent_id,
        metadata_contains=f.metadata_contains,
        include_deleted=f.include_deleted,
        order_field=order.field.value,
        descending=order.direction == OrderDirection.DESC,
    )


@strawberry.type(description="Read contexts, messages and search.")
class Query:
    @strawberry.field(description="Any object by its global id (a context or a message UUID).")
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A context or message UUID.")],
    ) -> Node | None:
        key = parse_id(id)
        context = await info.context.loaders.context.load(key)
        if context is not None:
            return context  # type: ignore[no-any-return]
        return await info.context.loaders.message.load(key)  # type: ignore[no-any-return]

    @strawberry.field(description="A context by id (deleted ones too, with deletedAt set).")
    async def context(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The context UUID.")],
    ) -> Context | None:
        key = parse_id(id)
        loaders = info.context.loaders
        # the context with the page its selection will ask for, in one statement
        # (api/graphql/lookahead.py)
        page = selected_history_page(info)
        if page is not None:
            return await loaders.context_with_page.load((key, page))  # type: ignore[no-any-return]
        siblings = selected_sibling_forks(info)
        if siblings is not None:
            return await loaders.context_with_siblings.load((key, siblings))  # type: ignore[no-any-return]
        return await loaders.context.load(key)  # type: ignore[no-any-return]

    @strawberry.field(description="A message by id (deleted ones too, with deletedAt set).")
    async def message(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The message UUID.")],
    ) -> Message | None:
        return await info.context.loaders.message.load(parse_id(id))  # type: ignore[no-any-return]

    @strawberry.field(description="Contexts, newest activity first by default.")
    async def contexts(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size from the start.")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor to page forward from.")
        ] = None,
        last: Annotated[
            int | None, strawberry.argument(description="Page size from the end.")
        ] = None,
        before: Annotated[
            str | None, strawberry.argument(description="Cursor to page backward from.")
        ] = None,
        filter: Annotated[
            ContextFilter | None, strawberry.argument(description="Which contexts.")
        ] = None,
        order_by: Annotated[
            ContextOrder | None,
            strawberry.argument(description="Order (a unique tie-break on id is always added)."),
        ] = DEFAULT_ORDER,
    ) -> ContextConnection:
        ctx = info.context
        request = list_request(ctx.limits, first, after, last, before, filter, order_by)
        page = await list_contexts(ctx.db, request)
        return ContextConnection(
            nodes=page.rows,  # type: ignore[arg-type]
            _has_next=page.has_next,
            _has_previous=page.has_previous,
            _cursor=page.cursor,
            _count=lambda: count_contexts(ctx.db, request),
        )

    @strawberry.field(
        description="Nearest messages by cosine distance, nearest first. Give exactly one of "
        "embedding or text (text needs a configured embedding provider). contextId is required "
        "for scopes CONTEXT and TREE. Deleted messages are never returned; in scopes TREE and "
        "ALL neither are messages owned by deleted contexts."
    )
    async def similar_messages(
        self,
        info: Info,
        embedding: Annotated[
            list[float] | None,
            strawberry.argument(description="The query vector (1536 finite numbers)."),
        ] = None,
        text: Annotated[
            str | None,
            strawberry.argument(description="Text to embed with the configured provider."),
        ] = None,
        first: Annotated[int | None, strawberry.argument(description="How many (1..100).")] = 10,
        scope: Annotated[
            SearchScope | None, strawberry.argument(description="Where to look.")
        ] = SearchScope.ALL,
        context_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="The context for scopes CONTEXT and TREE."),
        ] = None,
        roles: Annotated[
            list[MessageRole] | None, strawberry.argument(description="Only these roles.")
        ] = None,
        max_distance: Annotated[
            float | None, strawberry.argument(description="Only matches at most this far.")
        ] = None,
    ) -> list[MessageMatch]:
        from api.graphql.search import similar_messages

        return await similar_messages(
            info,
            embedding,
            text,
            10 if first is None else first,
            scope or SearchScope.ALL,
            context_id,
            roles,
            max_distance,
        )
