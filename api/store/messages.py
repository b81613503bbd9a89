"""Messages: append (with idempotent replays), soft delete, embeddings, lookups."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import BadUserInput, NotFound, VersionConflict
from api.store.direct import Direct
from api.store.guards import context_deleted, live_context_state
from api.store.inputs import NewMessage
from api.store.notify import CHANNEL
from api.store.records import message_select_list, statement, typed

if TYPE_CHECKING:
    from api.db import Connector

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

    `target` is a subquery returning (id, base_version, base_tokens): the context's
    latest version and own_tokens before the batch. Message i gets version
    base_version + i and the running token sum of the context's own messages.
    """
    return (
        "INSERT INTO messages AS m (id, context_id, version, role, content, tool_call_id,"
        " tool_name, token_count, model, embedding, prefix_tokens)"
        " SELECT coalesce(i.id, gen_random_uuid()), t.id, t.base_version + i.ord, i.role,"
        " i.content, i.tool_call_id, i.tool_name, i.token_count, i.model,"
        " CAST(i.embedding AS vector),"
        " t.base_tokens + sum(coalesce(i.token_count, 0)) OVER (ORDER BY i.ord)"
        f" FROM {target} t, unnest(CAST(:m_id AS uuid[]), CAST(:m_role AS text[]),"
        " CAST(:m_content AS text[]), CAST(:m_tool_call_id AS text[]),"
        " CAST(:m_tool_name AS text[]), CAST(:m_token_count AS int[]),"
        " CAST(:m_model AS text[]), CAST(:m_embedding AS text[]))"
        " WITH ORDINALITY AS i(id, role, content, tool_call_id, tool_name, token_count, model,"
        " embedding, ord)"
        f" RETURNING {MSG}"
    )


def _check_replay(
    context_id: uuid.UUID, messages: Sequence[NewMessage], stored_rows: Sequence[Row[Any]]
) -> list[Row[Any]]:
    """The stored messages if the batch is an exact retry; BAD_USER_INPUT otherwise."""
    stored = {row.id: row for row in stored_rows}
    retry_hint = "A retry must resend the same batch unchanged; new messages need new ids."
    if len(stored) != len(messages) or any(m.id is None for m in messages):
        raise BadUserInput(
            f"{len(stored)} of the {len(messages)} message ids already exist. " + retry_hint
        )
    for i, m in enumerate(messages):
        assert m.id is not None  # checked above
        row = stored[m.id]
        if row.context_id != context_id:
            raise BadUserInput(
                f"`messages[{i}].id` {m.id} already belongs to another context. " + retry_hint
            )
        if any(getattr(row, f) != getattr(m, f) for f in _REPLAY_FIELDS):
            raise BadUserInput(
                f"`messages[{i}].id` {m.id} already exists with different content. " + retry_hint
            )
    return sorted(stored.values(), key=lambda r: r.version)


# One row (one notification, of the new latest version) when the batch was inserted,
# none when it was not: joined to the inserted rows, which forces its evaluation.
_NOTIFIED = (
    "notified AS (SELECT pg_notify(:channel, CAST(i.context_id AS text) || ':' || max(i.version))"
    " FROM inserted i GROUP BY i.context_id)"
)


def append_is_one_statement(messages: Sequence[NewMessage]) -> bool:
    """Whether `append_messages` is one statement (atomic by itself: the caller needs no
    transaction) for this batch: yes without client ids, which need a lock first."""
    return all(m.id is None for m in messages)


async def append(
    db: Connector,
    context_id: uuid.UUID,
    messages: Sequence[NewMessage],
    expected_version: int | None,
) -> list[Row[Any]]:
    """`append_messages` on a connection of `db`: in a transaction when the batch has
    client ids, else as one statement on asyncpg (`Connector.single_statement`)."""
    if append_is_one_statement(messages):
        async with db.single_statement() as direct:
            return await append_messages(direct, context_id, messages, expected_version)
    async with db.transaction() as conn:
        return await append_messages(conn, context_id, messages, expected_version)


async def append_messages(
    conn: AsyncConnection | Direct,
    context_id: uuid.UUID,
    messages: Sequence[NewMessage],
    expected_version: int | None,
) -> list[Row[Any]]:
    """Append a batch atomically; versions continue the history without gaps.

    One statement bumps the context row (which takes its row lock, so appends
    to one context are serialized and versions never collide), inserts the
    batch with versions latest+1..latest+n and notifies subscribers.

    With client ids the same statement first looks the ids up and appends only
    when none exists (a retry gets the stored rows back, whatever
    expectedVersion says). The context row is locked by a statement before it:
    a statement's snapshot is taken when it starts, so only then does the look-up
    see an attempt of the same batch that held the lock while this one waited.
    """
    ids = [m.id for m in messages if m.id is not None]
    params = message_params(messages)
    params.update(
        cid=context_id,
        n=len(messages),
        tokens=sum(m.token_count or 0 for m in messages),
        expected=expected_version,
    )
    guard = " AND latest_version = :expected" if expected_version is not None else ""
    if ids:
        # the lock and the look-up need a transaction (`append`)
        assert isinstance(conn, AsyncConnection), "client ids need a transaction"
        lock = statement("SELECT 1 FROM contexts WHERE id = :cid FOR NO KEY UPDATE")
        await conn.execute(lock, {"cid": context_id})
        params["ids"] = ids
        guard += " AND NOT EXISTS (SELECT 1 FROM existing)"
    bump = (
        "bumped AS (UPDATE contexts SET latest_version = latest_version + CAST(:n AS bigint),"
        " message_count = message_count + CAST(:n AS int),"
        " total_tokens = total_tokens + CAST(:tokens AS bigint),"
        " own_tokens = own_tokens + CAST(:tokens AS bigint),"
        f" updated_at = now() WHERE id = :cid AND deleted_at IS NULL{guard}"
        " RETURNING id, latest_version - CAST(:n AS bigint) AS base_version,"
        " own_tokens - CAST(:tokens AS bigint) AS base_tokens)"
    )
    # Subscribers in every process hear of the append (api/store/notify.py) from the
    # statement itself: PostgreSQL delivers the notification when it commits.
    inserted = f"{bump}, inserted AS ({insert_messages_sql('bumped')}), {_NOTIFIED}"
    params["channel"] = CHANNEL
    if ids:
        sql = (
            f"WITH existing AS (SELECT {MSG} FROM messages m WHERE m.id = ANY(:ids)), {inserted}"
            " SELECT true AS stored, e.* FROM existing e"
            " UNION ALL SELECT false AS stored, i.* FROM inserted i CROSS JOIN notified"
        )
        stmt = typed(sql, sa.column("stored", sa.Boolean), messages=True)
    else:
        stmt = typed(
            f"WITH {inserted} SELECT i.* FROM inserted i CROSS JOIN notified", messages=True
        )
    try:
        # Without client ids nothing can collide (the ids are made by PostgreSQL):
        # straight to asyncpg (api/store/direct.py); with them, a concurrent batch's
        # id is SQLAlchemy's IntegrityError below.
        runner = Direct(conn) if isinstance(conn, AsyncConnection) and not ids else conn
        rows = list(await runner.execute(stmt, params))
    except IntegrityError as exc:
        if "pk_messages" in str(exc.orig):
            # Only an id taken concurrently by an append to another context gets here.
            raise BadUserInput(
                "A message id in this batch was stored concurrently by another request; "
                "retry the append to see where."
            ) from None
        raise
    if ids and rows and rows[0].stored:
        return _check_replay(context_id, messages, rows)
    if not rows:
        state = await live_context_state(conn, context_id)
        if expected_version is None or expected_version == state.latest_version:
            # Deleted when the append ran, live again when asked why: a concurrent
            # restore. Nothing was written; the same request can be sent again.
            raise VersionConflict(
                "The context was deleted and restored while the messages were appended; "
                "nothing was written, retry the append."
            )
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
            statement(
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
