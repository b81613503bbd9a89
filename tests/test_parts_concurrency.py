"""The tool-call rules under concurrent appends to one context (design.md "Parts (v2)").

An append with tool calls or results reads what its history says about their ids in
its own statement, whose snapshot is taken before it waits for the context's row lock
(api/store/messages.py `_append_sql`). These tests make an append wait for that lock
while another one commits, and check that it judges the history as it is once it holds
the lock, never as it was when it started.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from api.store import messages as messages_store
from api.store.direct import Direct
from api.store.inputs import Limits, NewMessage, check_new_messages
from tests.conftest import GraphQLClient
from tests.helpers import create_context, user
from tests.test_concurrency import WAIT_LIMIT_S, all_at_once, state
from tests.test_concurrency import tag as tag
from tests.test_parts import APPEND, assistant_calls, tool_results


async def lock_waiters(engine: AsyncEngine, query: str = "%") -> int:
    """Statements (like `query`) that PostgreSQL reports waiting for a lock."""
    async with engine.connect() as conn:
        n = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND query LIKE :query"
                ),
                {"query": query},
            )
        ).scalar_one()
    return int(n)


async def wait_until(condition: Any, task: asyncio.Future[Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    while not await condition():
        assert not task.done(), task.result()
        assert loop.time() < deadline, what
        await asyncio.sleep(0.02)  # polling interval for the condition above


def checked(*parts: dict[str, Any], role: str = "assistant") -> list[NewMessage]:
    return check_new_messages([NewMessage(role=role, parts=list(parts))], Limits())


async def test_a_result_waiting_for_the_lock_sees_the_call_committed_meanwhile(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    """The call is appended (and committed) while the result's append waits for the
    context: the result answers it. Judged on the statement's own snapshot, taken before
    the call existed, it would be refused as answering no call."""
    ctx = await create_context(live_client, messages=[user("q")], metadata=tag)
    call = checked({"type": "tool_call", "call_id": "late", "name": "f", "arguments": {}})
    async with engine.connect() as holder:
        tx = await holder.begin()
        await messages_store.append_messages(holder, ctx["id"], call, None)  # holds the row
        waiting = asyncio.ensure_future(
            live_client.execute(APPEND, {"id": ctx["id"], "m": [tool_results("late")]})
        )
        await wait_until(
            lambda: lock_waiters(engine), waiting, "the result's append never waited for the lock"
        )
        await tx.commit()
    answer = await asyncio.wait_for(waiting, WAIT_LIMIT_S)
    assert "errors" not in answer, answer
    assert [m["version"] for m in answer["data"]["appendMessages"]["messages"]] == [3]
    final = await state(live_client, ctx["id"])
    assert final["latestVersion"] == 3


async def test_a_statement_that_waited_while_the_history_changed_writes_nothing(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    """A result's statement read the history before another result for the same call
    committed, and then waited for the row lock: it must not write (the context row
    changed after its snapshot), rather than write a second result or fail on the
    tool_calls key. Under the lock the append is then judged again and refused."""
    first = [user("q"), assistant_calls("c")]
    ctx = await create_context(live_client, messages=first, metadata=tag)
    cid = uuid.UUID(ctx["id"])
    answer = checked(
        {"type": "tool_result", "call_id": "c", "output": "x", "is_error": False}, role="tool"
    )
    async with engine.connect() as holder:
        tx = await holder.begin()
        await messages_store.append_messages(holder, cid, answer, None)
        async with engine.connect() as other:
            direct = Direct(other)
            stale = asyncio.ensure_future(
                messages_store.append_one(direct, messages_store.Append(cid, answer))
            )
            await wait_until(
                lambda: lock_waiters(engine, "WITH RECURSIVE requests AS%"),
                stale,
                "the second result's statement never waited for the lock",
            )
            await tx.commit()
            assert await asyncio.wait_for(stale, WAIT_LIMIT_S) == []
            await other.commit()
    error = await live_client.error(APPEND, {"id": ctx["id"], "m": [tool_results("c")]})
    assert "'c' already has a result" in error["message"]
    assert (await state(live_client, ctx["id"]))["latestVersion"] == 3


async def test_concurrent_results_for_one_call_write_one(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    ctx = await create_context(
        live_client, messages=[user("q"), assistant_calls("c")], metadata=tag
    )
    n = 8
    responses = await all_at_once(
        engine,
        ctx["id"],
        [
            live_client.execute(APPEND, {"id": ctx["id"], "m": [tool_results("c")]})
            for _ in range(n)
        ],
    )
    winners = [r for r in responses if "errors" not in r]
    losers = [r for r in responses if "errors" in r]
    assert len(winners) == 1, responses
    assert [m["version"] for m in winners[0]["data"]["appendMessages"]["messages"]] == [3]
    for r in losers:
        [error] = r["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "'c' already has a result" in error["message"], error
    assert (await state(live_client, ctx["id"]))["latestVersion"] == 3


async def test_concurrent_calls_with_one_call_id_write_one(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    ctx = await create_context(live_client, messages=[user("q")], metadata=tag)
    n = 8
    requests: list[Any] = [
        live_client.execute(APPEND, {"id": ctx["id"], "m": [assistant_calls("same")]})
        for _ in range(n)
    ]
    responses = await all_at_once(engine, ctx["id"], requests)
    winners = [r for r in responses if "errors" not in r]
    assert len(winners) == 1, responses
    for r in responses:
        if r in winners:
            continue
        [error] = r["errors"]
        assert "callId 'same' is already used" in error["message"], error
    assert (await state(live_client, ctx["id"]))["latestVersion"] == 2
