"""Messages: append (with idempotent replays), soft delete, embeddings, lookups."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api import jsoncodec
from api.errors import BadUserInput, NotFound, VersionConflict
from api.store.direct import Direct, Reads
from api.store.group_commit import GroupCommit
from api.store.guards import context_deleted, live_context_state
from api.store.inputs import MAX_TOTAL_TOKENS, NewMessage, messages_at, over_total_tokens
from api.store.notify import CHANNEL
from api.store.parts import ToolProbe, tool_probes, violation
from api.store.records import message_select_list, statement, typed

if TYPE_CHECKING:
    from api.db import Connector

MSG = message_select_list("m")

# Fields a replay must match exactly (design.md, "Idempotent retries"); status too,
# which records carry as the API names it (`_same_message`).
_REPLAY_FIELDS = (
    "role",
    "content",
    "tool_call_id",
    "tool_name",
    "token_count",
    "model",
    "parts",
    "usage",
)


def _vector_literal(values: list[float] | None) -> str | None:
    return None if values is None else "[" + ",".join(repr(v) for v in values) + "]"


def _json_text(value: Any) -> str | None:
    return None if value is None else jsoncodec.dumps(value).decode()


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
        "m_parts": [_json_text(m.parts) for m in messages],
        "m_status": [m.status for m in messages],
        "m_usage": [_json_text(m.usage) for m in messages],
    }


_MESSAGE_ARRAYS = (
    "CAST(:m_id AS uuid[]), CAST(:m_role AS text[]), CAST(:m_content AS text[]),"
    " CAST(:m_tool_call_id AS text[]), CAST(:m_tool_name AS text[]),"
    " CAST(:m_token_count AS int[]), CAST(:m_model AS text[]), CAST(:m_embedding AS text[]),"
    " CAST(:m_parts AS text[]), CAST(:m_status AS text[]), CAST(:m_usage AS text[])"
)
_MESSAGE_FIELDS = (
    "id, role, content, tool_call_id, tool_name, token_count, model, embedding, parts, status,"
    " usage"
)

# Appends take their input as JSON records rather than arrays:
# PostgreSQL estimates a set from an array parameter by its length in a custom plan
# and as 10 rows in the generic one, so it judged the generic plan dearer and planned
# every execution anew (~0.6 ms of its CPU per statement); the rows of a JSON set are
# estimated alike in both, and the generic plan is kept.
_RECORDS = "jsonb_to_recordset(CAST(CAST({} AS text) AS jsonb))"


def insert_messages_sql(target: str, *, by_context: bool = False) -> str:
    """INSERT of new messages into the contexts that `target` yields.

    `target` is a subquery returning (id, base_version, base_tokens): a context's
    latest version and own_tokens before the batch. Its i-th message gets version
    base_version + i and the running token sum of the context's own messages. One
    context, its messages the `message_params` arrays; or `by_context`: several, the
    messages JSON records of their contexts (`_append_params`).
    """
    if by_context:
        source = (
            f"{target} t JOIN {_RECORDS.format(':messages')} AS i(context_id uuid, ord int,"
            " id uuid, role text, content text, tool_call_id text, tool_name text,"
            " token_count int, model text, embedding text, parts jsonb, status text,"
            " usage jsonb) ON i.context_id = t.id"
        )
    else:
        source = (
            f"{target} t, unnest({_MESSAGE_ARRAYS}) WITH ORDINALITY AS i({_MESSAGE_FIELDS}, ord)"
        )
    return (
        "INSERT INTO messages AS m (id, context_id, version, role, content, tool_call_id,"
        " tool_name, token_count, model, embedding, prefix_tokens, parts, status, usage)"
        " SELECT coalesce(i.id, gen_random_uuid()), t.id, t.base_version + row_number() OVER w,"
        " i.role, i.content, i.tool_call_id, i.tool_name, i.token_count, i.model,"
        " CAST(i.embedding AS vector), t.base_tokens + sum(coalesce(i.token_count, 0)) OVER w,"
        " CAST(i.parts AS jsonb), i.status, CAST(i.usage AS jsonb)"
        f" FROM {source} WINDOW w AS (PARTITION BY t.id ORDER BY i.ord)"
        f" RETURNING {MSG}"
    )


TOOL_CALLS_RECORDED = (
    "tooled AS (INSERT INTO tool_calls (context_id, call_id, kind, version)"
    " SELECT i.context_id, p.value ->> 'call_id',"
    " CASE p.value ->> 'type' WHEN 'tool_call' THEN 'call' ELSE 'result' END, i.version"
    " FROM inserted i CROSS JOIN LATERAL jsonb_array_elements(i.parts) p"
    " WHERE p.value ->> 'type' IN ('tool_call', 'tool_result'))"
)
"""A CTE after `inserted` (`insert_messages_sql`) that indexes the tool calls and results
of the inserted messages in `tool_calls` (models/tool_call.py)."""

_PROBES = (
    f"probes AS (SELECT * FROM {_RECORDS.format(':probes')}"
    " AS w(context_id uuid, ord int, part int, call_id text, kind text))"
)
# The segments of each probed context's history, as api/store/history.py chain_cte
# walks them (the parent by a LATERAL LIMIT 1: see there); `cap` is the highest version
# of the owner in the history (NULL: all of it).
_TOOL_CHAIN = (
    "tool_chain AS (SELECT c.id AS leaf, c.id AS owner, c.parent_id, c.fork_version,"
    " NULL::bigint AS cap FROM contexts c"
    " WHERE c.id = ANY(ARRAY(SELECT DISTINCT w.context_id FROM probes w))"
    " UNION ALL SELECT ch.leaf, p.id, p.parent_id, p.fork_version,"
    " LEAST(ch.cap, ch.fork_version) FROM tool_chain ch CROSS JOIN LATERAL"
    " (SELECT * FROM contexts p WHERE p.id = ch.parent_id LIMIT 1) p)"
)


def _found(kind: str) -> str:
    # one primary-key probe of tool_calls per segment of the chain
    return (
        "EXISTS (SELECT 1 FROM tool_chain ch JOIN tool_calls t ON t.context_id = ch.owner"
        f" AND t.call_id = w.call_id AND t.kind = '{kind}'"
        " AND (ch.cap IS NULL OR t.version <= ch.cap) WHERE ch.leaf = w.context_id)"
    )


_ANSWERS = (
    f"{_PROBES}, {_TOOL_CHAIN}, answers AS (SELECT w.*, {_found('call')} AS called,"
    f" {_found('result')} AS answered FROM probes w)"
)
"""CTEs ending in `answers`: each probe (api/store/parts.py ToolProbe) with whether the
history of its context holds a call and a result with its id. O(probes x fork depth)
index probes, whatever the length of the history."""

_VIOLATIONS = (
    f"{_ANSWERS}, violations AS (SELECT a.context_id FROM answers a"
    " WHERE CASE a.kind WHEN 'call' THEN a.called ELSE NOT a.called OR a.answered END)"
)

_TOOL_ANSWERS = statement(
    f"WITH RECURSIVE {_ANSWERS} SELECT ord, part, call_id, kind, called, answered FROM answers"
)


def _probes_param(appends: Sequence[Append]) -> str:
    return orjson.dumps(
        [
            {
                "context_id": str(a.context_id),
                "ord": p.ord,
                "part": p.part,
                "call_id": p.call_id,
                "kind": p.kind,
            }
            for a in appends
            for p in a.probes
        ]
    ).decode()


async def _explain_tools(conn: Reads, append: Append) -> None:
    """BAD_USER_INPUT for the first probe of `append` its history answers wrong, if any
    (after the context row was locked: the history is the one the append would meet)."""
    params = {"probes": _probes_param([append])}
    answers = sorted((await conn.execute(_TOOL_ANSWERS, params)).all(), key=lambda r: r[:2])
    for a in answers:
        bad = a.called if a.kind == "call" else not a.called or a.answered
        if bad:
            probe = ToolProbe(a.ord, a.part, a.call_id, a.kind)
            raise violation(probe, a.called, a.answered, append.where_of)


def _same_message(row: Row[Any], m: NewMessage) -> bool:
    return row.status == (m.status or "completed") and all(
        getattr(row, f) == getattr(m, f) for f in _REPLAY_FIELDS
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
        if not _same_message(row, m):
            raise BadUserInput(
                f"`messages[{i}].id` {m.id} already exists with different content. " + retry_hint
            )
    return sorted(stored.values(), key=lambda r: r.version)


@dataclass(frozen=True, slots=True)
class Append:
    """One request's append: messages for one context, and the version it expects.

    `probes`: what its history must answer about its tool calls and results
    (api/store/parts.py `tool_probes`); `where_of` names its messages in errors."""

    context_id: uuid.UUID
    messages: Sequence[NewMessage]
    expected_version: int | None = None
    where_of: Callable[[int], str] = messages_at
    probes: list[ToolProbe] = field(init=False)

    def __post_init__(self) -> None:
        probes = tool_probes(self.messages, self.where_of) if self._has_tools() else []
        object.__setattr__(self, "probes", probes)

    def _has_tools(self) -> bool:
        return any(m.has_tool_parts for m in self.messages)


_ONE_OF_REQUESTED = "c.id = ANY(ARRAY(SELECT id FROM requests))"
"""The contexts an append statement writes, found by their primary key. PostgreSQL
estimates any set-returning function at 100 rows, so joined to `requests` alone it
hashes them against a sequential scan of all contexts: ~0.7 ms of an append's ~1.3
at 2,500 (bloated) contexts, and growing with the table."""


def _append_sql(*, several: bool = False, client_ids: bool = False, tools: bool = False) -> str:
    """The statement of appends (`_append_params`): bump each context's row (its lock
    serializes appends to it, so versions never collide), insert its messages with
    the versions after its latest, notify subscribers.

    A context's totalTokens never goes past MAX_TOTAL_TOKENS (GraphQL's Int): an
    append that would take it there matches no row, decided under the row's lock by
    the statement that writes, and writes nothing (`refuse` says why).

    With `tools` (appends with tool calls or results), the history's answers to their
    probes (`_VIOLATIONS`) are read in the same statement, and an append some probe
    refuses is not made; nor is one whose context row changed after the statement's
    snapshot was taken: the statement waited for the row lock while another append
    committed, so what it read of the history may be stale (`c.xmin`, the row
    version's writer, differs from the snapshot's). Such an append matches no row and
    is made again under the lock (`append`), where it is exact and the refusal
    explained.

    One append waits for its context's row lock. `several` (to distinct contexts)
    never wait: a context whose row another transaction holds is left out (SKIP
    LOCKED), as are the others the statement does not write, and goes alone next
    (api/store/group_commit.py). So such a statement never waits for a lock behind
    which appends to other contexts would wait too, and never deadlocks.

    With `client_ids` (one append): the ids are looked up first, and the append is
    made only when none exists; the stored ones come back instead (`_check_replay`).
    """
    requests = (
        f"requests AS (SELECT * FROM {_RECORDS.format(':requests')}"
        " AS r(id uuid, expected bigint, n int, tokens bigint))"
    )
    if several:
        requests += (
            ", locked AS MATERIALIZED (SELECT c.id FROM contexts c"
            f" WHERE {_ONE_OF_REQUESTED} FOR NO KEY UPDATE OF c SKIP LOCKED)"
        )
    guard = " AND NOT EXISTS (SELECT 1 FROM existing)" if client_ids else ""
    joins = " JOIN locked l ON l.id = r.id" if several else ""
    if tools:
        requests += (
            f", seen AS (SELECT c.id, c.xmin FROM contexts c WHERE {_ONE_OF_REQUESTED}),"
            f" {_VIOLATIONS}"
        )
        joins += " JOIN seen s ON s.id = r.id"
        guard += (
            " AND c.xmin = s.xmin"
            " AND NOT EXISTS (SELECT 1 FROM violations v WHERE v.context_id = r.id)"
        )
    bumped = (
        "bumped AS (UPDATE contexts c SET latest_version = c.latest_version + r.n,"
        " message_count = c.message_count + r.n, total_tokens = c.total_tokens + r.tokens,"
        " own_tokens = c.own_tokens + r.tokens, updated_at = now()"
        f" FROM requests r{joins}"
        f" WHERE c.id = r.id AND {_ONE_OF_REQUESTED} AND c.deleted_at IS NULL"
        f" AND (r.expected IS NULL OR c.latest_version = r.expected)"
        f" AND c.total_tokens + r.tokens <= {MAX_TOTAL_TOKENS}{guard}"
        " RETURNING c.id, c.latest_version - r.n AS base_version,"
        " c.own_tokens - r.tokens AS base_tokens)"
    )
    # Subscribers in every process hear of the append (api/store/notify.py) from the
    # statement itself: PostgreSQL delivers the notifications when it commits. One per
    # context, of its new latest version; joined to the rows, which forces them.
    notified = (
        "notified AS (SELECT i.context_id,"
        " pg_notify(:channel, CAST(i.context_id AS text) || ':' || max(i.version))"
        " FROM inserted i GROUP BY i.context_id)"
    )
    inserted = insert_messages_sql("bumped", by_context=True)
    written = f"{requests}, {bumped}, inserted AS ({inserted}), {notified}"
    if tools:
        written += f", {TOOL_CALLS_RECORDED}"
    announced = "i.* FROM inserted i JOIN notified n ON n.context_id = i.context_id"
    with_ = "WITH RECURSIVE" if tools else "WITH"
    if not client_ids:
        return f"{with_} {written} SELECT {announced}"
    return (
        f"{with_} existing AS (SELECT {MSG} FROM messages m WHERE m.id = ANY(:ids)), {written}"
        f" SELECT true AS stored, e.* FROM existing e UNION ALL SELECT false AS stored, {announced}"
    )


def _statement(*, several: bool = False, client_ids: bool = False, tools: bool = False) -> Any:
    extra = [sa.column("stored", sa.Boolean)] if client_ids else []
    sql = _append_sql(several=several, client_ids=client_ids, tools=tools)
    return typed(sql, *extra, messages=True)


_APPEND = {tools: _statement(tools=tools) for tools in (False, True)}
_APPEND_SEVERAL = {tools: _statement(several=True, tools=tools) for tools in (False, True)}
_APPEND_WITH_IDS = {tools: _statement(client_ids=True, tools=tools) for tools in (False, True)}


def _append_params(appends: Sequence[Append]) -> dict[str, Any]:
    requests = [
        {
            "id": str(a.context_id),
            "expected": a.expected_version,
            "n": len(a.messages),
            "tokens": sum(m.token_count or 0 for m in a.messages),
        }
        for a in appends
    ]
    messages = [
        {
            "context_id": str(a.context_id),
            "ord": i,
            "id": None if m.id is None else str(m.id),
            "role": m.role,
            "content": m.content,
            "tool_call_id": m.tool_call_id,
            "tool_name": m.tool_name,
            "token_count": m.token_count,
            "model": m.model,
            "embedding": _vector_literal(m.embedding),
            "parts": m.parts,
            "status": m.status,
            "usage": m.usage,
        }
        for a in appends
        for i, m in enumerate(a.messages)
    ]
    params = {
        "requests": orjson.dumps(requests).decode(),
        # jsoncodec: tool arguments and data may hold integers beyond 64 bits
        "messages": jsoncodec.dumps(messages).decode(),
        "channel": CHANNEL,
    }
    if any(a.probes for a in appends):
        params["probes"] = _probes_param(appends)
    return params


def _checks_history(appends: Sequence[Append]) -> bool:
    return any(a.probes for a in appends)


def _by_version(row: Row[Any]) -> int:
    return int(row.version)


async def append_one(conn: Reads, append: Append) -> list[Row[Any]]:
    """An append without client ids, as one statement (atomic by itself): its rows by
    version, or none when it matched no live context at its expected version
    (`refuse` says why)."""
    stmt = _APPEND[_checks_history([append])]
    rows = list(await conn.execute(stmt, _append_params([append])))
    rows.sort(key=_by_version)
    return rows


async def append_many(conn: Reads, appends: Sequence[Append]) -> list[list[Row[Any]] | None]:
    """Appends without client ids to distinct contexts, as one statement that waits for
    no lock (`_append_sql`): per append its rows by version, or None for one it did
    not write (refused, or its context locked): `append_one` gives its answer."""
    if len(appends) == 1:
        return [await append_one(conn, appends[0])]
    rows = await conn.execute(_APPEND_SEVERAL[_checks_history(appends)], _append_params(appends))
    by_context: dict[uuid.UUID, list[Row[Any]]] = {a.context_id: [] for a in appends}
    if len(by_context) != len(appends):
        raise ValueError("one statement appends to a context once")
    for row in rows:
        by_context[row.context_id].append(row)
    for appended in by_context.values():
        appended.sort(key=_by_version)
    return [by_context[a.context_id] or None for a in appends]


async def refuse(conn: Reads, append: Append) -> NoReturn:
    """Why `append` matched no row: NOT_FOUND, CONTEXT_DELETED, VERSION_CONFLICT,
    BAD_USER_INPUT when totalTokens would pass MAX_TOTAL_TOKENS, or (after the
    context's lock was taken) a tool call or result its history refuses."""
    state = await live_context_state(conn, append.context_id)
    expected = append.expected_version
    if append.probes and (expected is None or expected == state.latest_version):
        await _explain_tools(conn, append)
    if expected is None or expected == state.latest_version:
        tokens = sum(m.token_count or 0 for m in append.messages)
        if state.total_tokens + tokens > MAX_TOTAL_TOKENS:
            raise over_total_tokens(tokens, state.total_tokens)
        # Deleted when the append ran, live again when asked why (a concurrent
        # restore), or room made meanwhile (a message deleted). Nothing was written;
        # the same request can be sent again.
        raise VersionConflict(
            "The context changed while the messages were appended (deleted and restored, "
            "or messages deleted); nothing was written, retry the append."
        )
    raise VersionConflict(
        f"expectedVersion is {expected} but the context is at version "
        f"{state.latest_version}; read the new messages and retry with "
        f"expectedVersion: {state.latest_version}."
    )


def append_is_one_statement(messages: Sequence[NewMessage]) -> bool:
    """Whether `append_messages` is one statement (atomic by itself: the caller needs no
    transaction) for this batch: yes without client ids, which need a lock first."""
    return all(m.id is None for m in messages)


def _append_weight(append: Append) -> int:
    # ~ its bytes in the statement: bounds what one statement of appends carries
    return sum(
        200
        + len(m.content)
        + (0 if m.embedding is None else 20 * len(m.embedding))
        + (0 if m.parts is None else len(jsoncodec.dumps(m.parts)))
        for m in append.messages
    )


_GROUP_COMMITS: weakref.WeakKeyDictionary[Connector, GroupCommit[Append, list[Row[Any]]]] = (
    weakref.WeakKeyDictionary()
)
"""By connector (one per app) and event loop (the group's)."""


def _group_commit(db: Connector) -> GroupCommit[Append, list[Row[Any]]]:
    """The appends of `db` in this process (an event loop's: tests run several)."""
    group = _GROUP_COMMITS.get(db)
    if group is None or group.loop is not asyncio.get_running_loop():
        group = _GROUP_COMMITS[db] = GroupCommit(
            db,
            append_many,
            key=lambda append: append.context_id,
            weight=_append_weight,
            max_weight=1 << 20,
        )
    return group


def appends_waiting(db: Connector) -> int:
    """Appends to `db` submitted by this process and not answered yet."""
    group = _GROUP_COMMITS.get(db)
    return 0 if group is None else group.waiting


async def append(
    db: Connector,
    context_id: uuid.UUID,
    messages: Sequence[NewMessage],
    expected_version: int | None,
    where_of: Callable[[int], str] = messages_at,
) -> list[Row[Any]]:
    """Append a batch atomically; versions continue the history without gaps.

    Without client ids, one statement, which appends of other requests that arrive
    meanwhile share (api/store/group_commit.py); with them, `append_messages` in a
    transaction. An append with tool calls or results that statement did not make (its
    history refused it, or the statement's view of it may have been stale: see
    `_append_sql`) is made, or explained, by `append_messages` under the lock.
    """
    if not append_is_one_statement(messages):
        async with db.transaction() as conn:
            return await append_messages(conn, context_id, messages, expected_version, where_of)
    request = Append(context_id, messages, expected_version, where_of)
    try:
        rows = await _group_commit(db).submit(request)
    except asyncpg.UniqueViolationError as exc:
        # tool_calls' key: a call or result indexed meanwhile (the xmin guard should
        # prevent it); under the lock it is judged again and explained
        if not request.probes or exc.constraint_name != "pk_tool_calls":
            raise
        rows = []
    if not rows and request.probes:
        async with db.transaction() as conn:
            return await append_messages(conn, context_id, messages, expected_version, where_of)
    if not rows:
        async with db.direct() as conn:
            await refuse(conn, request)
    return rows


async def append_messages(
    conn: AsyncConnection | Direct,
    context_id: uuid.UUID,
    messages: Sequence[NewMessage],
    expected_version: int | None,
    where_of: Callable[[int], str] = messages_at,
) -> list[Row[Any]]:
    """Append a batch atomically on `conn`; versions continue the history without gaps.

    With client ids the statement first looks the ids up and appends only when none
    exists (a retry gets the stored rows back, whatever expectedVersion says). With
    tool calls or results, it asks the history about them (`_append_sql`). Either way
    the context row is locked by a statement before it: a statement's snapshot is
    taken when it starts, so only then does the look-up see an attempt of the same
    batch, or a call or result, that an append holding the lock committed while this
    one waited.
    """
    request = Append(context_id, messages, expected_version, where_of)
    ids = [m.id for m in messages if m.id is not None]
    if not ids and not request.probes:
        # straight to asyncpg (api/store/direct.py): the ids are made by PostgreSQL
        runner = Direct(conn) if isinstance(conn, AsyncConnection) else conn
        rows = await append_one(runner, request)
        if not rows:
            await refuse(runner, request)
        return rows
    # the lock and the look-up need a transaction (`append`)
    assert isinstance(conn, AsyncConnection), "client ids and tool calls need a transaction"
    lock = statement("SELECT 1 FROM contexts WHERE id = :cid FOR NO KEY UPDATE")
    await conn.execute(lock, {"cid": context_id})
    params = _append_params([request])
    tools = bool(request.probes)
    stmt = _APPEND_WITH_IDS[tools] if ids else _APPEND[tools]
    if ids:
        params["ids"] = ids
    try:
        rows = list(await conn.execute(stmt, params))
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
        await refuse(conn, request)
    rows.sort(key=_by_version)
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
