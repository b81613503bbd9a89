"""Real concurrency: many requests at once on the pooled engine, with real commits.

Races are forced, not hoped for: a separate connection holds the context row
locked while the requests start, the test waits until every one of them waits for
that lock (PostgreSQL reports the statement blocked; an append may instead be queued
in the process behind a statement that is: api/store/group_commit.py), and only
then lets them all go at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.db import EngineConnector, create_engine
from api.store import messages as messages_store
from tests.conftest import GraphQLClient, graphql_client, test_settings
from tests.helpers import append, create_context, fork, user

APPEND = (
    "mutation($id: ID!, $m: [MessageInput!]!, $v: Int) {"
    " appendMessages(contextId: $id, messages: $m, expectedVersion: $v) {"
    " messages { id version content tokenCount } } }"
)
FORK = (
    "mutation($id: ID!, $v: Int) { forkContext(id: $id, atVersion: $v) {"
    " id forkVersion messageCount totalTokens } }"
)
DELETE = "mutation($id: ID!) { deleteMessage(id: $id) { id } }"
STATE = (
    "query($id: ID!) { context(id: $id) { latestVersion messageCount totalTokens"
    " messages(first: 500) { totalCount nodes { id version content tokenCount } } } }"
)

WAIT_LIMIT_S = 60.0


@pytest_asyncio.fixture
async def tag(engine: AsyncEngine) -> AsyncIterator[dict[str, str]]:
    """Metadata that marks this test's contexts (forks inherit it); they are removed after."""
    marker = {"concurrency-test": str(uuid.uuid4())}
    yield marker
    mine = "SELECT id FROM contexts WHERE metadata @> CAST(:tag AS jsonb)"
    async with engine.begin() as conn:
        params = {"tag": json.dumps(marker)}
        await conn.execute(sa.text(f"DELETE FROM messages WHERE context_id IN ({mine})"), params)
        await conn.execute(sa.text(f"DELETE FROM tool_calls WHERE context_id IN ({mine})"), params)
        # Forks and their parents go in one statement: foreign keys are checked at its end.
        await conn.execute(sa.text(f"DELETE FROM contexts WHERE id IN ({mine})"), params)


@asynccontextmanager
async def rows_locked(engine: AsyncEngine, context_ids: Sequence[str]) -> AsyncIterator[None]:
    """Hold the context rows FOR UPDATE until the block exits (then roll back)."""
    async with engine.connect() as holder:
        tx = await holder.begin()
        await holder.execute(
            sa.text("SELECT 1 FROM contexts WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
            {"ids": [uuid.UUID(i) for i in context_ids]},
        )
        try:
            yield
        finally:
            await tx.rollback()


async def lock_waiters(engine: AsyncEngine) -> int:
    """Requests waiting for a lock: blocked statements, except the group commit's of
    appends, whose requests are counted in the process instead (one statement may
    carry several; more wait for it)."""
    async with engine.connect() as conn:
        blocked = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND pid <> pg_backend_pid()"
                    " AND query NOT LIKE 'WITH requests AS%'"
                    " AND query NOT LIKE 'WITH RECURSIVE requests AS%'"
                )
            )
        ).scalar_one()
    return int(blocked) + messages_store.appends_waiting(EngineConnector(engine))


async def all_at_once(
    engine: AsyncEngine,
    context_ids: str | Sequence[str],
    requests: Sequence[Awaitable[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Run the requests while the context rows are locked; release them once every
    request waits for a lock, so they all contend at the same moment."""
    ids = [context_ids] if isinstance(context_ids, str) else list(context_ids)
    tasks: list[asyncio.Future[dict[str, Any]]] = []
    try:
        async with rows_locked(engine, ids):
            tasks += [asyncio.ensure_future(r) for r in requests]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_LIMIT_S
            while (waiting := await lock_waiters(engine)) < len(tasks):
                done = [t for t in tasks if t.done()]
                assert not done, [t.result() for t in done]  # nobody gets past the lock
                assert loop.time() < deadline, f"only {waiting} of {len(tasks)} requests blocked"
                await asyncio.sleep(0.02)  # polling interval for the condition above
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def state(client: GraphQLClient, context_id: str) -> dict[str, Any]:
    """The context's counters, checked against its visible history."""
    data = await client.data(STATE, {"id": context_id})
    ctx: dict[str, Any] = data["context"]
    nodes = ctx["messages"]["nodes"]
    assert ctx["messageCount"] == len(nodes) == ctx["messages"]["totalCount"], ctx
    assert ctx["totalTokens"] == sum(n["tokenCount"] or 0 for n in nodes), ctx
    return ctx


# --- appends ---------------------------------------------------------------------------------


async def test_concurrent_appends_never_duplicate_or_skip_a_version(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    ctx = await create_context(live_client, messages=[user("seed", tokenCount=1)], metadata=tag)
    n = 24
    batches = [[user(f"{i}.{j}", tokenCount=i + j) for j in range(i % 3 + 1)] for i in range(n)]
    responses = await all_at_once(
        engine,
        ctx["id"],
        [live_client.execute(APPEND, {"id": ctx["id"], "m": b}) for b in batches],
    )
    versions: list[int] = []
    for batch, response in zip(batches, responses, strict=True):
        assert "errors" not in response, response
        got = response["data"]["appendMessages"]["messages"]
        assert [m["content"] for m in got] == [m["content"] for m in batch]
        vs = [m["version"] for m in got]
        assert vs == list(range(vs[0], vs[0] + len(vs)))  # a batch is contiguous
        versions += vs
    total = 1 + sum(len(b) for b in batches)
    assert sorted(versions) == list(range(2, total + 1))
    final = await state(live_client, ctx["id"])
    assert final["latestVersion"] == total
    assert final["messageCount"] == total
    assert final["totalTokens"] == 1 + sum(m["tokenCount"] for b in batches for m in b)
    assert [n["version"] for n in final["messages"]["nodes"]] == list(range(1, total + 1))


async def test_concurrent_appends_without_forced_contention(
    live_client: GraphQLClient, tag: dict[str, str]
) -> None:
    ctx = await create_context(live_client, metadata=tag)
    n = 30
    responses = await asyncio.gather(
        *(
            live_client.execute(APPEND, {"id": ctx["id"], "m": [user(str(i), tokenCount=i)]})
            for i in range(n)
        )
    )
    assert all("errors" not in r for r in responses), responses
    versions = sorted(r["data"]["appendMessages"]["messages"][0]["version"] for r in responses)
    assert versions == list(range(1, n + 1))
    final = await state(live_client, ctx["id"])
    assert (final["latestVersion"], final["messageCount"], final["totalTokens"]) == (
        n,
        n,
        sum(range(n)),
    )


async def test_concurrent_appends_with_the_same_expected_version(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    ctx = await create_context(live_client, messages=[user("a"), user("b")], metadata=tag)
    n = 20
    responses = await all_at_once(
        engine,
        ctx["id"],
        [
            live_client.execute(
                APPEND, {"id": ctx["id"], "m": [user(f"w{i}", tokenCount=5)] * 2, "v": 2}
            )
            for i in range(n)
        ],
    )
    winners = [r for r in responses if "errors" not in r]
    losers = [r for r in responses if "errors" in r]
    assert len(winners) == 1, winners
    assert [m["version"] for m in winners[0]["data"]["appendMessages"]["messages"]] == [3, 4]
    assert len(losers) == n - 1
    for r in losers:
        assert [e["extensions"]["code"] for e in r["errors"]] == ["VERSION_CONFLICT"]
        assert "4" in r["errors"][0]["message"]
    final = await state(live_client, ctx["id"])
    assert (final["latestVersion"], final["messageCount"], final["totalTokens"]) == (4, 4, 10)


async def test_concurrent_retries_of_one_batch_write_it_once(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    """A client that retries while its first attempt is still waiting for the lock
    gets the stored messages from every attempt."""
    ctx = await create_context(live_client, messages=[user("a")], metadata=tag)
    batch = [user("q", id=str(uuid.uuid4()), tokenCount=3), user("r", id=str(uuid.uuid4()))]
    n = 8
    responses = await all_at_once(
        engine,
        ctx["id"],
        [live_client.execute(APPEND, {"id": ctx["id"], "m": batch, "v": 1}) for _ in range(n)],
    )
    for r in responses:
        assert "errors" not in r, r
        got = r["data"]["appendMessages"]["messages"]
        assert [(m["id"], m["version"]) for m in got] == [
            (batch[0]["id"], 2),
            (batch[1]["id"], 3),
        ]
    final = await state(live_client, ctx["id"])
    assert (final["latestVersion"], final["messageCount"], final["totalTokens"]) == (3, 3, 3)


async def test_appends_to_different_contexts_do_not_wait_for_each_other(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    busy = await create_context(live_client, metadata=tag)
    free = await create_context(live_client, metadata=tag)
    async with rows_locked(engine, [busy["id"]]):
        blocked = asyncio.ensure_future(append(live_client, busy["id"], [user("waits")]))
        # While `busy` is locked, an append to another context completes.
        done = await asyncio.wait_for(append(live_client, free["id"], [user("goes")]), WAIT_LIMIT_S)
        assert [m["version"] for m in done] == [1]
        assert not blocked.done()
    assert [m["version"] for m in await blocked] == [1]


# --- forks, appends and deletes together ---------------------------------------------------------


async def test_concurrent_fork_append_and_delete_keep_counters_exact(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    root = await create_context(
        live_client, messages=[user(f"r{i}", tokenCount=i) for i in range(1, 31)], metadata=tag
    )
    side = await fork(live_client, root["id"], 20)
    side_own = await append(
        live_client, side["id"], [user(f"s{i}", tokenCount=100) for i in range(5)]
    )
    nodes = (await state(live_client, root["id"]))["messages"]["nodes"]
    requests: list[Awaitable[dict[str, Any]]] = []
    for i in range(8):
        requests.append(
            live_client.execute(APPEND, {"id": root["id"], "m": [user(f"n{i}", tokenCount=7)]})
        )
    for v in (None, None, None, 10, 25, 30, 0):
        requests.append(live_client.execute(FORK, {"id": root["id"], "v": v}))
    for node in nodes[::3]:  # 10 deletes of root messages, one of them twice
        requests.append(live_client.execute(DELETE, {"id": node["id"]}))
    requests.append(live_client.execute(DELETE, {"id": nodes[0]["id"]}))
    for m in side_own[:2]:
        requests.append(live_client.execute(DELETE, {"id": m["id"]}))
    requests.append(live_client.execute(APPEND, {"id": side["id"], "m": [user("s-new")]}))
    requests.append(live_client.execute(FORK, {"id": side["id"]}))

    responses = await all_at_once(engine, [root["id"], side["id"]], requests)
    for r in responses:
        assert "errors" not in r, r
    forks = [r["data"]["forkContext"] for r in responses if "forkContext" in r["data"]]
    assert len(forks) == 8

    root_state = await state(live_client, root["id"])
    assert root_state["latestVersion"] == 38
    assert root_state["messageCount"] == 38 - 10
    for f in forks:
        fork_state = await state(live_client, f["id"])
        # The counters the fork was created with are those of the history it shows.
        assert (fork_state["messageCount"], fork_state["totalTokens"]) == (
            f["messageCount"],
            f["totalTokens"],
        )
        assert fork_state["latestVersion"] == f["forkVersion"]
    side_state = await state(live_client, side["id"])
    assert side_state["latestVersion"] == 26
    assert side_state["messageCount"] == 20 + 5 - 2 + 1

    # And again, with the forks and deletes running on the forks just made.
    requests = []
    for f in forks:
        requests.append(live_client.execute(FORK, {"id": f["id"]}))
        requests.append(
            live_client.execute(APPEND, {"id": f["id"], "m": [user("x", tokenCount=2)]})
        )
    more = (await state(live_client, root["id"]))["messages"]["nodes"]
    for node in more[1::4]:
        requests.append(live_client.execute(DELETE, {"id": node["id"]}))
    responses = await asyncio.gather(*requests)
    for r in responses:
        assert "errors" not in r, r
    for r in responses:
        if "forkContext" in r["data"]:
            await state(live_client, r["data"]["forkContext"]["id"])
    for f in forks:
        await state(live_client, f["id"])
    await state(live_client, root["id"])


# --- sibling root fields on a fresh engine ------------------------------------------------


@pytest.mark.parametrize("run", range(3))
async def test_sibling_root_fields_on_a_fresh_engine(
    live_client: GraphQLClient, database_url: str, tag: dict[str, str], run: int
) -> None:
    """Strawberry resolves sibling fields concurrently; on connections that are not yet
    open, sharing one between resolvers fails. A fresh engine has none open."""
    root = await create_context(
        live_client, messages=[user("a"), user("b"), user("c")], metadata=tag
    )
    child = await fork(live_client, root["id"], 2)
    mid = (await state(live_client, root["id"]))["messages"]["nodes"][1]["id"]

    fresh = create_engine(database_url, test_settings())
    try:
        app = create_app(test_settings(), connector=EngineConnector(fresh))
        async with graphql_client(app) as client:
            data = await client.data(
                "query($ctx: ID!, $msg: ID!, $child: ID!) {"
                " a: context(id: $ctx) { messages(last: 5) { nodes { id } totalCount } }"
                " b: contexts(first: 5) { nodes { id forks { totalCount } } }"
                " c: message(id: $msg) { forks { id } }"
                " d: context(id: $child) { parent { id } ancestors { id } messages(last: 5,"
                " roles: [USER]) { totalCount } message(version: 1) { content } }"
                " e: node(id: $ctx) { id }"
                " f: contexts(first: 5, filter: {rootsOnly: true}) { totalCount } }",
                {"ctx": root["id"], "msg": mid, "child": child["id"]},
            )
        assert len(data["a"]["messages"]["nodes"]) == 3
        assert data["c"]["forks"] == [{"id": child["id"]}]
        assert data["d"]["parent"] == {"id": root["id"]}
        assert data["d"]["messages"]["totalCount"] == 2
        assert data["d"]["message"] == {"content": "a"}
        assert data["e"] == {"id": root["id"]}
        listed = {n["id"] for n in data["b"]["nodes"]}
        assert {root["id"], child["id"]} <= listed
    finally:
        await fresh.dispose()
