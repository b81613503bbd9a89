"""Messages: append (with idempotent replays), soft delete, embeddings, lookups."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import BadUserInput, NotFound, VersionConflict
from api.store.guards import context_deleted, live_context_state
from api.store.inputs import NewMessage
from api.store.records import message_select_list, typed

MSG = message_select_list("m")

# Fields a replay must match exactly (design.md, "Idempotent retries").
_REPLAY_FIELDS = ("role", "content", "tool_call_id", "tool_name", "token_count", "model")


def _vector_literal(values: list[float] | None) -> str | None:
    return None if values is None else "[" + ",".join(repr(v) for v in values) + "]"


def message_params(messages: Sequence[NewMessage]) -> dict[str, Any]:
    """Column arrays for `insert_messages_sql` (unnest keeps it one statement for any n)."""
    return {
        "m_id": [m.id for m in messages],
        "m_role": [m.role for m in messages],
        "m_content": [m.content for m in messages],
        "m_tool_call_id": [m.tool_call_id for m in messages],
        "m_tool_name": [m.tool_name for m in messages],
        "m_token_count": [m.token_count for m in messages],
        "m_model": [m.model for m in messages],
        "m_embedding": [_vector_literal(m.embedding) for m in messages],
    }


def insert_messages_sql(target: str) -> str:
    """INSERT of the `message_params` arrays into the context that `target` yields.

    `target` is a subquery returning (id, base_version); message i gets
    version base_version + i.
    """
    return (
        "INSERT INTO messages AS m (id, context_id, version, role, content, tool_call_id,"
        " tool_name, token_count, model, embedding)"
        " SELECT coalesce(i.id, gen_random_uuid()), t.id, t.base_version + i.ord, i.role,"
        " i.content, i.tool_call_id, i.tool_name, i.token_count, i.model,"
        " CAST(i.embedding AS vector)"
        f" FROM {target} t, unnest(CAST(:m_id AS uuid[]), CAST(:m_role AS text[]),"
        " CAST(:m_content AS text[]), CAST(:m_tool_call_id AS text[]),"
        " CAST(:m_tool_name AS text[]), CAST(:m_token_count AS int[]),"
        " CAST(:m_model AS text[]), CAST(:m_embedding AS text[]))"
        " WITH ORDINALITY AS i(id, role, content, tool_call_id, tool_name, token_count, model,"
        " embedding, ord)"
        f" RETURNING {MSG}"
    )


async def _replayed(
    conn: AsyncConnection, context_id: uuid.UUID, messages: Sequence[NewMessage]
) -> list[Row[Any]] | None:
    """The stored messages if this batch is a retry of an append that already committed."""
    ids = [m.id for m in messages if m.id is not None]
    if not ids:
        return None
    stored = {
        row.id: row
        for row in await conn.execute(
            typed(f"SELECT {MSG} FROM messages m WHERE m.id = ANY(:ids)", messages=True),
            {"ids": ids},
        )
    }
    if not stored:
        return None
    retry_hint = "A retry must resend the same batch unchanged; new messages need new ids."
    if len(stored) != len(messages) or len(ids) != len(messages):
        raise BadUserInput(
            f"{len(stored)} of the {len(messages)} message ids already exist. " + retry_hint
        )
    for i, m in enumerate(messages):
        row = stored[m.id] if m.id is not None else None
        assert row is not None  # every message has an id here (checked above)
        if row.context_id != context_id:
            raise BadUserInput(
                f"`messages[{i}].id` {m.id} already belongs to another context. " + retry_hint
            )
        if any(getattr(row, f) != getattr(m, f) for f in _REPLAY_FIELDS):
            raise BadUserInput(
                f"`messages[{i}].id` {m.id} already exists with different content. " + retry_hint
            )
    return sorted(stored.values(), key=lambda r: r.version)


async def append_messages(
    conn: AsyncConnection,
    context_id: uuid.UUID,
    messages: Sequence[NewMessage],
    expected_version: int | None,
) -> list[Row[Any]]:
    """Append a batch atomically; versions continue the history without gaps.

    One statement bumps the context row (which takes its row lock, so appends
    to one context are serialized and versions never collide) and inserts the
    batch with versions latest+1..latest+n.
    """
    replay = await _replayed(conn, context_id, messages)
    if replay is not None:
        return replay
    params = message_params(messages)
    params.update(
        cid=context_id,
        n=len(messages),
        tokens=sum(m.token_count or 0 for m in messages),
        expected=expected_version,
    )
    guard = " AND latest_version = :expected" if expected_version is not None else ""
    sql = (
        "WITH bumped AS (UPDATE contexts SET latest_version = latest_version + CAST(:n AS bigint),"
        " message_count = message_count + CAST(:n AS int), total_tokens = total_tokens + :tokens,"
        f" updated_at = now() WHERE id = :cid AND deleted_at IS NULL{guard}"
        " RETURNING id, latest_version - CAST(:n AS bigint) AS base_version)"
        f" {insert_messages_sql('bumped')}"
    )
    try:
        rows = list(await conn.execute(typed(sql, messages=True), params))
    except IntegrityError as exc:
        if "pk_messages" in str(exc.orig):
            raise BadUserInput(
                "A message id in this batch was stored concurrently by another request; "
                "retry the append to get the stored messages."
            ) from None
        raise
    if not rows:
        state = await live_context_state(conn, context_id)
        raise VersionConflict(
            f"expectedVersion is {expected_version} but the context is at version "
            f"{state.latest_version}; read the new messages and retry with "
            f"expectedVersion: {state.latest_version}."
        )
    rows.sort(key=lambda r: r.version)
    return rows


async def messages_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Row[Any]]:
    result = await conn.execute(
        typed(f"SELECT {MSG} FROM messages m WHERE m.id = ANY(:ids)", messages=True),
        {"ids": list(ids)},
    )
    return {row.id: row for row in result}


def _message_not_found(message_id: uuid.UUID) -> NotFound:
    return NotFound(f"No message with id {message_id}.")


async def delete_message(conn: AsyncConnection, message_id: uuid.UUID) -> Row[Any]:
    """Soft delete a message and adjust its owning context's counters.

    The owner row is locked first so the deletion time is taken after any fork
    of the owner in progress has committed (see fork_context): a fork's
    snapshot and counters then agree about this message.
    """
    owner = (
        await conn.execute(
            sa.text(
                "SELECT c.id, c.deleted_at FROM contexts c"
                " WHERE c.id = (SELECT context_id FROM messages WHERE id = :mid) FOR UPDATE"
            ),
            {"mid": message_id},
        )
    ).one_or_none()
    if owner is None:
        raise _message_not_found(message_id)
    if owner.deleted_at is not None:
        raise context_deleted(owner.id)
    sql = (
        "WITH deleted AS (UPDATE messages m SET deleted_at = clock_timestamp()"
        f" WHERE m.id = :mid AND m.deleted_at IS NULL RETURNING {MSG}),"
        " counted AS (UPDATE contexts c SET message_count = c.message_count - 1,"
        " total_tokens = c.total_tokens - coalesce(d.token_count, 0), updated_at = now()"
        " FROM deleted d WHERE c.id = d.context_id)"
        " SELECT * FROM deleted"
    )
    row = (await conn.execute(typed(sql, messages=True), {"mid": message_id})).one_or_none()
    if row is None:  # already deleted: deleting again changes nothing
        row = (await messages_by_ids(conn, [message_id]))[message_id]
    return row


async def set_embedding(
    conn: AsyncConnection, message_id: uuid.UUID, embedding: list[float]
) -> Row[Any]:
    sql = (
        "UPDATE messages m SET embedding = CAST(:e AS vector) FROM contexts c"
        " WHERE m.id = :mid AND c.id = m.context_id AND c.deleted_at IS NULL"
        f" RETURNING {MSG}"
    )
    params = {"mid": message_id, "e": _vector_literal(embedding)}
    row = (await conn.execute(typed(sql, messages=True), params)).one_or_none()
    if row is None:
        existing = (await messages_by_ids(conn, [message_id])).get(message_id)
        if existing is None:
            raise _message_not_found(message_id)
        raise context_deleted(existing.context_id)
    return row
