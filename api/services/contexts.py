"""Listing contexts: the checks of a `contexts` request and its keyset page."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from api.db import Connector
from api.errors import BadUserInput
from api.store import contexts as store
from api.store import pagination
from api.store.inputs import Limits, check_metadata, check_text, parse_id

CONTEXT_LIST_CURSOR = "c"
ORDER_FIELDS: frozenset[str] = frozenset({"created_at", "updated_at", "name"})


@dataclass(frozen=True, slots=True)
class ContextListRequest:
    """A `contexts` request whose arguments passed every check."""

    filter: store.ContextListFilter
    field: store.OrderField
    descending: bool
    window: pagination.Window
    after: tuple[Any, uuid.UUID] | None
    before: tuple[Any, uuid.UUID] | None


@dataclass(slots=True)
class ContextPage:
    """A page of contexts in display order, with exact page info."""

    rows: list[Row[Any]]
    has_next: bool
    has_previous: bool
    cursor: Callable[[Row[Any]], str]


def list_cursor(field: store.OrderField) -> Callable[[Row[Any]], str]:
    def cursor(row: Row[Any]) -> str:
        return pagination.encode_cursor(
            CONTEXT_LIST_CURSOR, field, store.sort_value(row, field), str(row.id)
        )

    return cursor


def _decode_list_cursor(
    cursor: str | None, field: store.OrderField, argument: str
) -> tuple[Any, uuid.UUID] | None:
    """The (sort value, id) position of a cursor, typed for the keyset query.

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
    if len(values) != 3 or values[0] not in ORDER_FIELDS:
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


def context_list_request(
    limits: Limits,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    name_contains: str | None = None,
    roots_only: bool | None = None,
    parent_id: Any = None,
    metadata_contains: Any = None,
    include_deleted: bool | None = None,
    order_field: store.OrderField = "updated_at",
    descending: bool = True,
) -> ContextListRequest:
    """Check a `contexts` request (BadUserInput naming the first wrong argument)."""
    window = pagination.page_window(limits, first=first, after=after, last=last, before=before)
    list_filter = store.ContextListFilter(
        name_contains=check_text(name_contains, "filter.nameContains", limits.max_name_length),
        roots_only=bool(roots_only),
        parent_id=None if parent_id is None else parse_id(parent_id, "filter.parentId"),
        metadata_contains=None
        if metadata_contains is None
        else check_metadata(metadata_contains, limits, "filter.metadataContains"),
        include_deleted=bool(include_deleted),
    )
    return ContextListRequest(
        list_filter,
        order_field,
        descending,
        window,
        _decode_list_cursor(after, order_field, "after"),
        _decode_list_cursor(before, order_field, "before"),
    )


async def list_contexts(
    db: Connector, request: ContextListRequest, *, meta: bool = True
) -> ContextPage:
    """The page, in one statement; `meta=False` leaves the metadata out (None)."""
    async with db.direct() as conn:
        rows, has_next, has_previous = await store.list_contexts(
            conn,
            request.filter,
            request.field,
            request.descending,
            request.window.size,
            request.after,
            request.before,
            request.window.backward,
            meta=meta,
        )
    return ContextPage(rows, has_next, has_previous, list_cursor(request.field))


async def count_contexts(db: Connector, request: ContextListRequest) -> int:
    async with db.read() as conn:
        return await store.count_contexts(conn, request.filter)
