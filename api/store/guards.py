"""Turning "the write matched no row" into the right client error."""

import uuid
from typing import Any

from sqlalchemy.engine import Row

from api.errors import ContextDeleted, NotFound
from api.store.direct import Reads
from api.store.records import statement


def context_not_found(context_id: uuid.UUID) -> NotFound:
    return NotFound(f"No context with id {context_id}.")


def context_deleted(context_id: uuid.UUID) -> ContextDeleted:
    return ContextDeleted(
        f"Context {context_id} is deleted; restore it with restoreContext "
        "before writing to or forking it."
    )


async def live_context_state(conn: Reads, context_id: uuid.UUID) -> Row[Any]:
    """The context's (deleted_at, latest_version, total_tokens); NOT_FOUND or
    CONTEXT_DELETED otherwise."""
    row = (
        await conn.execute(
            statement(
                "SELECT deleted_at, latest_version, total_tokens FROM contexts WHERE id = :id"
            ),
            {"id": context_id},
        )
    ).one_or_none()
    if row is None:
        raise context_not_found(context_id)
    if row.deleted_at is not None:
        raise context_deleted(context_id)
    return row
