"""Root query fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import strawberry

from api.errors import BadUserInput
from api.graphql.context import Info, RequestContext
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
from api.store import contexts as store
from api.store import pagination
from api.store.inputs import Limits, check_metadata, check_text, parse_id

CONTEXT_LIST_CURSOR = "c"


def _list_cursor(field: store.OrderField) -> Any:
    def cursor(row: Any) -> str:
        return pagination.encode_cursor(
            CONTEXT_LIST_CURSOR, field, store.sort_value(row, field), str(row.id)
        )

    return cursor


_ORDER_FIELDS: frozenset[str] = frozenset(f.value for f in ContextOrderField)


def _decode_list_cursor(
    cursor: str | None, field: store.OrderField, argument: str
) -> tuple[Any, uuid.UUID] | None:
    """The (sort value, id) position of a `contexts` cursor, typed for the keyset query.

    Cursors are opaque but not trusted: anything that does not decode to this
    ordering's value types is BAD_USER_INPUT, never a database error.
    """
    if cursor is None:
        return None
    values = pagination.decode_cursor(cursor, CONTEXT_LIST_CURSOR, argument)
    not_ours = BadUserInput(
        f"`{argument}` is not a cursor of this list; pass a cursor returned by this "
        "field's pageInfo or edges."
    )
    if len(values) != 3 or values[0] not in _ORDER_FIELDS:
        raise not_ours
    if values[0] != field:
        raise BadUserInput(
            f"`{argument}` was made for another ordering; use cursors from a listing with the "
            "same orderBy."
        )
    _, value, cid = values
    if not isinstance(value, str) or not isinstance(cid, str):
        raise not_ours
    try:
        position = uuid.UUID(cid)
        if field == "name":
            check_text(value, argument)
            return value, position
        timestamp = datetime.fromisoformat(value)
    except (ValueError, BadUserInput):
        raise not_ours from None
    if timestamp.tzinfo is None:
        raise not_ours
    return timestamp, position


def _list_filter(f: ContextFilter | None, limits: Limits) -> store.ContextListFilter:
    if f is None:
        return store.ContextListFilter()
    return store.ContextListFilter(
        name_contains=check_text(f.name_contains, "filter.nameContains", limits.max_name_length),
        roots_only=bool(f.roots_only),
        parent_id=None if f.parent_id is None else parse_id(f.parent_id, "filter.parentId"),
        metadata_contains=None
        if f.metadata_contains is None
        else check_metadata(f.metadata_contains, limits, "filter.metadataContains"),
        include_deleted=bool(f.include_deleted),
    )


DEFAULT_ORDER = ContextOrder(field=ContextOrderField.UPDATED_AT, direction=OrderDirection.DESC)


async def context_list(
    ctx: RequestContext,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: ContextFilter | None,
    order_by: ContextOrder | None,
    *,
    meta: bool = True,
) -> ContextConnection:
    """A page of `Query.contexts` (BadUserInput for arguments it refuses); `meta=False`
    for a caller that writes no metadata (the records have None)."""
    window = pagination.page_window(ctx.limits, first=first, after=after, last=last, before=before)
    list_filter = _list_filter(filter, ctx.limits)
    order_by = order_by or DEFAULT_ORDER
    field: store.OrderField = order_by.field.value
    async with ctx.db.direct() as conn:
        rows, has_next, has_previous = await store.list_contexts(
            conn,
            list_filter,
            field,
            order_by.direction == OrderDirection.DESC,
            window.size,
            _decode_list_cursor(after, field, "after"),
            _decode_list_cursor(before, field, "before"),
            window.backward,
            meta=meta,
        )

    async def count() -> int:
        async with ctx.db.read() as conn:
            return await store.count_contexts(conn, list_filter)

    return ContextConnection(
        nodes=rows,  # type: ignore[arg-type]
        _has_next=has_next,
        _has_previous=has_previous,
        _cursor=_list_cursor(field),
        _count=count,
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
        return await context_list(info.context, first, after, last, before, filter, order_by)

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
