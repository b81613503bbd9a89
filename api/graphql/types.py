"""GraphQL object types.

Column fields come straight from the SQLModel tables
(`strawberry.experimental.pydantic.type`): a column added to a model reaches
the API by naming it here with `strawberry.auto`, and its description comes
from the model. Resolvers receive the store's records (SQLAlchemy Rows with
the model's attribute names) as their parent and return records, so no row is
converted on the way out.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy.engine import Row
from strawberry.scalars import JSON
from strawberry.types.base import StrawberryObjectDefinition

import models
from api.errors import BadUserInput
from api.graphql.context import Info
from api.graphql.enums import MessageRole, MessageStatus, SearchScope
from api.graphql.parts import MessagePart, TokenUsage, message_parts, token_usage
from api.store import pagination
from api.store.history import HistoryFilter, HistoryPageRequest
from api.store.inputs import Limits
from api.store.tree import TreePageRequest, TreeQuery

Record = Row[Any]

# The pydantic-derived classes are rebuilt by their decorator, so references to
# them from resolvers go through strawberry.lazy (resolved at schema build).
ContextRef = Annotated["Context", strawberry.lazy("api.graphql.types")]
MessageRef = Annotated["Message", strawberry.lazy("api.graphql.types")]
MatchRef = Annotated["MessageMatch", strawberry.lazy("api.graphql.types")]


def _is_message(obj: Any) -> bool:
    return hasattr(obj, "role")


@strawberry.interface(
    description="Anything with a globally unique id. Ids are the row UUIDs as strings."
)
class Node:
    id: strawberry.ID = strawberry.field(description="The row UUID as a string.")

    @classmethod
    def resolve_type(cls, obj: Any, info: Any, abstract_type: Any) -> str:
        return "Message" if _is_message(obj) else "Context"


@strawberry.type(description="Where a page sits in its list (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow this page.")
    has_previous_page: bool = strawberry.field(description="Items precede this page.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first item, if any.")
    end_cursor: str | None = strawberry.field(description="Cursor of the last item, if any.")


# --- cursors ---------------------------------------------------------------------

MESSAGE_CURSOR = "m"
FORK_CURSOR = "f"
DESCENDANT_CURSOR = "d"


def message_cursor(row: Record) -> str:
    return pagination.encode_cursor(MESSAGE_CURSOR, row.version)


def decode_message_cursor(cursor: str | None, argument: str) -> int | None:
    if cursor is None:
        return None
    values = pagination.decode_cursor(cursor, MESSAGE_CURSOR, argument)
    # A forged cursor must not reach PostgreSQL as a bool or an out-of-range bigint.
    if (
        len(values) != 1
        or not isinstance(values[0], int)
        or isinstance(values[0], bool)
        or not 0 <= values[0] <= _MAX_BIGINT
    ):
        raise BadUserInput(f"`{argument}` is not a cursor of this list.")
    return values[0]


_MAX_BIGINT = 2**63 - 1


def history_page_request(
    limits: Limits,
    f: HistoryFilter,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> HistoryPageRequest:
    """The page `Context.messages` reads for these arguments (BadUserInput if invalid)."""
    window = pagination.page_window(limits, first=first, after=after, last=last, before=before)
    return HistoryPageRequest(
        filter=f,
        size=window.size,
        backward=window.backward,
        after_version=decode_message_cursor(after, "after"),
        before_version=decode_message_cursor(before, "before"),
    )


def tree_cursor(row: Record, descendants: bool) -> str:
    if descendants:
        return pagination.encode_cursor(
            DESCENDANT_CURSOR, row.depth, row.created_at.isoformat(), str(row.id)
        )
    return pagination.encode_cursor(FORK_CURSOR, row.created_at.isoformat(), str(row.id))


def decode_tree_cursor(cursor: str | None, descendants: bool) -> tuple[Any, ...] | None:
    if cursor is None:
        return None
    kind = DESCENDANT_CURSOR if descendants else FORK_CURSOR
    values = pagination.decode_cursor(cursor, kind, "after")
    # Cursors are untrusted: check every value's type and range so a forged one is
    # BAD_USER_INPUT, never a database error.
    try:
        *depth, created_at, cid = values
        if not isinstance(created_at, str) or not isinstance(cid, str):
            raise ValueError
        created = datetime.fromisoformat(created_at)
        if created.tzinfo is None:
            raise ValueError
        parsed: tuple[Any, ...] = (created, uuid.UUID(cid))
        if descendants:
            (d,) = depth
            if not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 2**31 - 1:
                raise ValueError
            parsed = (d, *parsed)
        elif depth:
            raise ValueError
    except (ValueError, TypeError):
        raise BadUserInput("`after` is not a cursor of this list.") from None
    return parsed


# --- connections -------------------------------------------------------------------

Counter = Callable[[], Awaitable[int]]


@strawberry.type(description="A message in a page, with its cursor.")
class MessageEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this message.")
    node: MessageRef = strawberry.field(description="The message.")


@strawberry.type(description="A page of a history (Relay connection).")
class MessageConnection:
    nodes: list[MessageRef] = strawberry.field(
        description="The messages of the page, ascending by version."
    )
    _has_next: strawberry.Private[bool]
    _has_previous: strawberry.Private[bool]
    _count: strawberry.Private[Counter]

    @strawberry.field(description="Position of the page.")
    def page_info(self) -> PageInfo:
        # computed when asked for: its cursors cost an encoding each
        return page_info(self.nodes, self._has_next, self._has_previous, message_cursor)  # type: ignore[arg-type]

    @strawberry.field(description="The messages of the page with their cursors.")
    def edges(self) -> list[MessageEdge]:
        return [MessageEdge(cursor=message_cursor(r), node=r) for r in self.nodes]  # type: ignore[arg-type]

    @strawberry.field(description="How many messages match the filters, ignoring paging.")
    async def total_count(self) -> int:
        return await self._count()


@strawberry.type(description="A context in a page, with its cursor.")
class ContextEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this context.")
    node: ContextRef = strawberry.field(description="The context.")


@strawberry.type(description="A page of contexts (Relay connection).")
class ContextConnection:
    nodes: list[ContextRef] = strawberry.field(description="The contexts of the page.")
    _has_next: strawberry.Private[bool]
    _has_previous: strawberry.Private[bool]
    _cursor: strawberry.Private[Callable[[Record], str]]
    _count: strawberry.Private[Counter]

    @strawberry.field(description="Position of the page.")
    def page_info(self) -> PageInfo:
        # computed when asked for: its cursors cost an encoding each
        return page_info(self.nodes, self._has_next, self._has_previous, self._cursor)  # type: ignore[arg-type]

    @strawberry.field(description="The contexts of the page with their cursors.")
    def edges(self) -> list[ContextEdge]:
        return [ContextEdge(cursor=self._cursor(r), node=r) for r in self.nodes]  # type: ignore[arg-type]

    @strawberry.field(description="How many contexts match the filters, ignoring paging.")
    async def total_count(self) -> int:
        return await self._count()


def _constant(n: int) -> Counter:
    async def count() -> int:
        return n

    return count


def page_info(
    rows: list[Record], has_next: bool, has_previous: bool, cursor: Callable[[Record], str]
) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=has_previous,
        start_cursor=cursor(rows[0]) if rows else None,
        end_cursor=cursor(rows[-1]) if rows else None,
    )


def tree_page_request(
    limits: Limits, q: TreeQuery, first: int | None, after: str | None
) -> TreePageRequest:
    """The page `Context.forks`/`descendants` read for these arguments (BadUserInput if
    invalid)."""
    window = pagination.page_window(limits, first=first, after=after)
    return TreePageRequest(
        query=q, size=window.size, after=decode_tree_cursor(after, q.descendants)
    )


async def tree_connection(
    info: Info, context_id: uuid.UUID, q: TreeQuery, first: int | None, after: str | None
) -> ContextConnection:
    req = tree_page_request(info.context.limits, q, first, after)
    page = await info.context.loaders.tree_page.load((context_id, req))

    def cursor(row: Record) -> str:
        return tree_cursor(row, q.descendants)

    return ContextConnection(
        nodes=page.rows,
        _has_next=page.has_next,
        _has_previous=page.has_previous,
        _cursor=cursor,
        _count=lambda: info.context.loaders.tree_count.load((context_id, q)),
    )


# --- the two node types ---------------------------------------------------------------


@strawberry.experimental.pydantic.type(
    model=models.Context,
    description="A conversation: an ordered, versioned, append-only log of messages. "
    "It may be a fork of another context at a version.",
)
class Context(Node):
    id: strawberry.ID = strawberry.field(description="The context's UUID.")
    name: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto
    deleted_at: strawberry.auto
    message_count: strawberry.auto
    total_tokens: strawberry.auto
    latest_version: strawberry.auto
    fork_version: strawberry.auto
    meta: JSON = strawberry.field(
        name="metadata",
        description="A JSON object set by the client (owner, tags, app settings); {} when unset.",
    )

    @strawberry.field(description="The context this one was forked from; null for a root.")
    @staticmethod
    async def parent(root: strawberry.Parent[Record], info: Info) -> ContextRef | None:
        if root.parent_id is None:
            return None
        return await info.context.loaders.context.load(root.parent_id)  # type: ignore[no-any-return]

    @strawberry.field(description="The root of this context's fork tree (itself for a root).")
    @staticmethod
    async def root(root: strawberry.Parent[Record], info: Info) -> ContextRef:
        if root.parent_id is None:
            return root  # type: ignore[return-value]
        chain = await info.context.loaders.ancestors.load(root.id)
        return chain[0]  # type: ignore[no-any-return]

    @strawberry.field(description="Ancestors, root first, parent last; empty for a root.")
    @staticmethod
    async def ancestors(root: strawberry.Parent[Record], info: Info) -> list[ContextRef]:
        if root.parent_id is None:
            return []
        return await info.context.loaders.ancestors.load(root.id)  # type: ignore[no-any-return]

    @strawberry.field(description="Number of ancestors (0 for a root).")
    @staticmethod
    async def depth(root: strawberry.Parent[Record], info: Info) -> int:
        if root.parent_id is None:
            return 0
        return len(await info.context.loaders.ancestors.load(root.id))

    @strawberry.field(description="Direct forks of this context, oldest first.")
    @staticmethod
    async def forks(
        root: strawberry.Parent[Record],
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size (default 50).")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor to continue after.")
        ] = None,
        include_deleted: Annotated[
            bool | None, strawberry.argument(description="Include deleted forks.")
        ] = False,
    ) -> ContextConnection:
        q = TreeQuery(descendants=False, include_deleted=bool(include_deleted))
        return await tree_connection(info, root.id, q, first, after)

    @strawberry.field(
        description="Every context below this one in the fork tree, "
        "ordered by depth then createdAt."
    )
    @staticmethod
    async def descendants(
        root: strawberry.Parent[Record],
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size (default 50).")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor to continue after.")
        ] = None,
        max_depth: Annotated[
            int | None,
            strawberry.argument(
                description="How many levels down (1 = direct forks only); unlimited when null."
            ),
        ] = None,
        include_deleted: Annotated[
            bool | None,
            strawberry.argument(
                description="Include deleted contexts (their forks are listed either way)."
            ),
        ] = False,
    ) -> ContextConnection:
        if max_depth is not None and max_depth < 1:
            raise BadUserInput(f"`maxDepth` must be >= 1 (got {max_depth}).")
        q = TreeQuery(descendants=True, include_deleted=bool(include_deleted), max_depth=max_depth)
        return await tree_connection(info, root.id, q, first, after)

    @strawberry.field(
        description="The history, ascending by version. Relay cursor pagination in both "
        "directions: first/after pages forward from the oldest, last/before pages backward "
        "from the newest."
    )
    @staticmethod
    async def messages(
        root: strawberry.Parent[Record],
        info: Info,
        first: Annotated[
            int | None,
            strawberry.argument(description="Page forward from the oldest (or from `after`)."),
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor to page forward from.")
        ] = None,
        last: Annotated[
            int | None,
            strawberry.argument(description="Page backward from the newest (or from `before`)."),
        ] = None,
        before: Annotated[
            str | None, strawberry.argument(description="Cursor to page backward from.")
        ] = None,
        from_version: Annotated[
            int | None, strawberry.argument(description="Only versions >= this.")
        ] = None,
        to_version: Annotated[
            int | None, strawberry.argument(description="Only versions <= this.")
        ] = None,
        roles: Annotated[
            list[MessageRole] | None, strawberry.argument(description="Only these roles.")
        ] = None,
        include_inherited: Annotated[
            bool | None,
            strawberry.argument(description="Include messages inherited from ancestors."),
        ] = True,
        include_deleted: Annotated[
            bool | None,
            strawberry.argument(
                description="Include soft-deleted messages of the history's range."
            ),
        ] = False,
    ) -> MessageConnection:
        f = HistoryFilter(
            from_version=from_version,
            to_version=to_version,
            roles=None if roles is None else tuple(sorted({r.value for r in roles})),
            include_inherited=include_inherited is not False,
            include_deleted=bool(include_deleted),
        )
        req = history_page_request(
            info.context.limits, f, first=first, after=after, last=last, before=before
        )
        page = await info.context.loaders.history_page.load((root.id, req))
        count = (
            _constant(root.message_count)
            if f.is_whole_history
            else lambda: info.context.loaders.history_count.load((root.id, f))
        )
        return MessageConnection(
            nodes=page.rows,
            _has_next=page.has_next,
            _has_previous=page.has_previous,
            _count=count,
        )

    @strawberry.field(
        description="The message at this version of the history (inherited included), or null."
    )
    @staticmethod
    async def message(
        root: strawberry.Parent[Record],
        info: Info,
        version: Annotated[int, strawberry.argument(description="The version to read.")],
    ) -> MessageRef | None:
        if version < 1 or version > root.latest_version:
            return None
        req = HistoryPageRequest(
            filter=HistoryFilter(from_version=version, to_version=version), size=1, backward=False
        )
        page = await info.context.loaders.history_page.load((root.id, req))
        return page.rows[0] if page.rows else None


@strawberry.experimental.pydantic.type(
    model=models.Message, description="One immutable entry of a context's history."
)
class Message(Node):
    id: strawberry.ID = strawberry.field(description="The message's UUID.")
    version: strawberry.auto
    created_at: strawberry.auto
    content: strawberry.auto
    tool_call_id: strawberry.auto
    tool_name: strawberry.auto
    token_count: strawberry.auto
    model: strawberry.auto
    deleted_at: strawberry.auto
    role: MessageRole = strawberry.field(description="Who wrote the message.")
    has_embedding: bool = strawberry.field(description="Whether an embedding is stored.")
    status: MessageStatus = strawberry.field(
        description="COMPLETED for a message written whole (every message appended with "
        "appendMessages); INCOMPLETE when it was cut short."
    )

    @strawberry.field(
        description="The content as typed parts, in order (a message written with content "
        "alone has one TextPart). Read from the message's own row: no extra query."
    )
    @staticmethod
    def parts(root: strawberry.Parent[Record]) -> list[MessagePart]:
        return message_parts(root.parts, root.content)

    @strawberry.field(
        description="Token usage the provider reported for the call that produced this "
        "message, if the client gave it. tokenCount stays the number windows and counters use."
    )
    @staticmethod
    def usage(root: strawberry.Parent[Record]) -> TokenUsage | None:
        return token_usage(root.usage)

    @strawberry.field(
        description="The context that owns the row (an ancestor when the message is inherited)."
    )
    @staticmethod
    async def context(root: strawberry.Parent[Record], info: Info) -> ContextRef:
        return await info.context.loaders.context.load(root.context_id)  # type: ignore[no-any-return]

    @strawberry.field(
        description="Contexts forked from this message's context at this message's version "
        "(the branches that continue after it), oldest first."
    )
    @staticmethod
    async def forks(root: strawberry.Parent[Record], info: Info) -> list[ContextRef]:
        return await info.context.loaders.forks_at.load((root.context_id, root.version))  # type: ignore[no-any-return]

    @strawberry.field(
        description="Messages nearest to this one's embedding (itself excluded); "
        "empty when it has none."
    )
    @staticmethod
    async def similar(
        root: strawberry.Parent[Record],
        info: Info,
        first: Annotated[int | None, strawberry.argument(description="How many (1..100).")] = 10,
        scope: Annotated[
            SearchScope | None, strawberry.argument(description="Where to look.")
        ] = SearchScope.ALL,
        roles: Annotated[
            list[MessageRole] | None, strawberry.argument(description="Only these roles.")
        ] = None,
    ) -> list[MatchRef]:
        from api.graphql.search import similar_to_message

        return await similar_to_message(
            info, root, 10 if first is None else first, scope or SearchScope.ALL, roles
        )


@strawberry.type(description="A search hit: a message and its cosine distance to the query.")
class MessageMatch:
    message: MessageRef = strawberry.field(description="The message.")
    distance: float = strawberry.field(
        description="Cosine distance (0 = same direction, 2 = opposite)."
    )


def accept_records(*types: type) -> None:
    """Let the store's records stand for these types.

    Pydantic-derived types check `isinstance(obj, (Type, Model))` for every object
    returned; records are plain Rows, so the check would fail. Node.resolve_type
    tells the two apart where an interface is returned.
    """
    for t in types:
        definition: StrawberryObjectDefinition = t.__strawberry_definition__  # type: ignore[attr-defined]
        definition.is_type_of = lambda obj, info: True


accept_records(Context, Message)
