"""Announcing appends to other processes: PostgreSQL NOTIFY on one channel.

The payload is only a wake-up call, `<context_id>:<latest_version>` (PostgreSQL
caps payloads at 8000 bytes, and a subscriber reads the messages themselves
from the database by version). It is sent inside the write's transaction (an
append: by its one statement, api/store/messages.py), so PostgreSQL delivers it
only if the write commits, and only after it did.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from api.store.records import statement

CHANNEL = "ctxgraph_messages"
"""The LISTEN/NOTIFY channel every API process listens on."""


async def notify_appended(
    conn: AsyncConnection, context_id: uuid.UUID, latest_version: int
) -> None:
    """Announce, at commit of `conn`'s transaction, that `context_id` reached `latest_version`."""
    await conn.execute(
        statement("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": format_payload(context_id, latest_version)},
    )


def format_payload(context_id: uuid.UUID, latest_version: int) -> str:
    return f"{context_id}:{latest_version}"


def parse_payload(payload: str) -> tuple[uuid.UUID, int] | None:
    """(context id, version) of a notification, or None if it is not one of ours."""
    context_id, sep, version = payload.partition(":")
    if not sep:
        return None
    try:
        return uuid.UUID(context_id), int(version)
    except ValueError:
        return None


async def latest_versions(
    conn: AsyncConnection, context_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """latestVersion of each context (the realtime re-check), in one statement."""
    result = await conn.execute(
        statement("SELECT id, latest_version FROM contexts WHERE id = ANY(:ids)"),
        {"ids": list(context_ids)},
    )
    return {row.id: int(row.latest_version) for row in result}
