"""Group commit of appends (api/store/group_commit.py): appends that arrive together
share one statement, and each still gets exactly the answer it gets alone.

The store's `append` is called directly here: requests gathered in one event-loop
turn reach it together, which HTTP requests do only by chance. The answers through
the API are tests/test_concurrency.py's and tests/test_append.py's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db import EngineConnector, create_engine
from api.errors import ContextDeleted, NotFound, VersionConflict
from api.store import messages as messages_store
from api.store.direct import Direct, Rows
from api.store.inputs import NewMessage
from api.store.notify import CHANNEL
from tests.conftest import GraphQLClient, StatementLog, test_settings
from tests.helpers import create_context
from tests.test_concurrency import rows_locked, state
from tests.test_concurrency import tag as tag_fixture

tag = tag_fixture  # the fixture: each test's contexts are removed after it

GROUPED = "WITH requests AS"  # the append statements (api/store/messages.py)


def appends_of(statements: StatementLog) -> list[str]:
    return [s for s in statements.statements if s.startswith(GROUPED)]


def said(content: str, tokens: int | None = None) -> list[NewMessage]:
    return [NewMessage(role="user", content=content, token_count=tokens)]


async def contexts(client: GraphQLClient, tag: dict[str, str], n: int) -> list[uuid.UUID]:
    made = [await create_context(client, f"g{i}", metadata=tag) for i in range(n)]
    return [uuid.UUID(c["id"]) for c in made]


@asynccontextmanager
async def listening(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """The payloads of the append notifications while the block runs."""
    payloads: list[str] = []
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None

        def heard(*args: Any) -> None:
            payloads.append(args[3])

        await raw.add_listener(CHANNEL, heard)
        try:
            yield payloads
        finally:
            await raw.remove_listener(CHANNEL, heard)


async def eventually(condition: Any, what: str) -> None:
    for _ in range(500):  # 10 s
        if condition():
            return
        await asyncio.sleep(0.02)  # polling interval for a notification's arrival
    raise AssertionError(f"timed out waiting for {what}")


async def test_appends_that_arrive_together_share_one_statement(
    live_client: GraphQLClient,
    engine: AsyncEngine,
    tag: dict[str, str],
    statements: StatementLog,
) -> None:
    db = EngineConnector(engine)
    ids = await contexts(live_client, tag, 8)
    await messages_store.append(db, ids[0], said("first", 4), None)
    statements.clear()
    async with listening(engine) as payloads:
        answers = await asyncio.gather(
            *(messages_store.append(db, cid, said(f"m{i}", i), None) for i, cid in enumerate(ids))
        )
        assert len(appends_of(statements)) == 1, statements.statements
        assert [[(m.context_id, m.version, m.content) for m in a] for a in answers] == [
            [(cid, 2 if i == 0 else 1, f"m{i}")] for i, cid in enumerate(ids)
        ]
        # every context announced, at its new version
        expected = sorted(f"{cid}:{2 if i == 0 else 1}" for i, cid in enumerate(ids))
        await eventually(lambda: sorted(payloads) == expected, "a notification per context")
    first = await state(live_client, str(ids[0]))
    assert (first["latestVersion"], first["messageCount"], first["totalTokens"]) == (2, 2, 4)
    last = await state(live_client, str(ids[-1]))
    assert (last["latestVersion"], last["messageCount"], last["totalTokens"]) == (1, 1, 7)


async def test_a_context_locked_elsewhere_goes_alone_and_holds_no_one_up(
    live_client: GraphQLClient,
    engine: AsyncEngine,
    tag: dict[str, str],
    statements: StatementLog,
) -> None:
    db = EngineConnector(engine)
    busy, *free = await contexts(live_client, tag, 4)
    statements.clear()
    async with rows_locked(engine, [str(busy)]):
        waiting = asyncio.ensure_future(messages_store.append(db, busy, said("waits"), None))
        going = [
            asyncio.ensure_future(messages_store.append(db, cid, said("goes"), None))
            for cid in free
        ]
        # the batch skipped the locked row: the others are written while it is held
        done = await asyncio.wait_for(asyncio.gather(*going), 30)
        assert [[m.version for m in rows] for rows in done] == [[1]] * len(free)
        await asyncio.sleep(0.1)  # `busy` waits for the lock, in a statement of its own
        assert not waiting.done()
    assert [m.version for m in await waiting] == [1]
    assert len(appends_of(statements)) == 2  # the batch, then `busy` alone
    assert (await state(live_client, str(busy)))["latestVersion"] == 1


async def test_refused_appends_in_a_batch_get_their_own_errors(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    db = EngineConnector(engine)
    good, gone, ahead, other = await contexts(live_client, tag, 4)
    await live_client.data(
        "mutation($id: ID!) { deleteContext(id: $id) { id } }", {"id": str(gone)}
    )
    await messages_store.append(db, ahead, said("one"), None)
    answers = await asyncio.gather(
        messages_store.append(db, good, said("ok"), None),
        messages_store.append(db, gone, said("no"), None),
        messages_store.append(db, ahead, said("late"), 0),
        messages_store.append(db, uuid.uuid4(), said("nowhere"), None),
        messages_store.append(db, other, said("ok too"), 0),
        return_exceptions=True,
    )
    ok, deleted, conflict, missing, ok_too = answers
    assert isinstance(ok, list)
    assert [m.version for m in ok] == [1]
    assert isinstance(ok_too, list)
    assert [m.version for m in ok_too] == [1]
    assert isinstance(deleted, ContextDeleted)
    assert isinstance(conflict, VersionConflict)
    assert "at version 1" in str(conflict)
    assert isinstance(missing, NotFound)
    assert (await state(live_client, str(ahead)))["latestVersion"] == 1


class RefusesGroupedStatements:
    """The production connector, but the server refuses every statement of several
    appends, as a statement timeout would (nothing written)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.inner = EngineConnector(engine)
        self.timeout = self.inner.timeout
        self.read, self.direct, self.transaction = (
            self.inner.read,
            self.inner.direct,
            self.inner.transaction,
        )
        self.refused = 0

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[Any]:
        async with self.inner.single_statement() as direct:
            yield self._Refusing(self, direct)

    class _Refusing:
        def __init__(self, owner: RefusesGroupedStatements, direct: Direct) -> None:
            self.owner, self.direct = owner, direct

        async def execute(self, stmt: Any, params: dict[str, Any] | None = None) -> Rows:
            if stmt in messages_store._APPEND_SEVERAL.values():
                self.owner.refused += 1
                raise asyncpg.exceptions.QueryCanceledError("canceling statement due to timeout")
            return await self.direct.execute(stmt, params)


async def test_a_batch_the_server_refuses_is_written_one_append_at_a_time(
    live_client: GraphQLClient, engine: AsyncEngine, tag: dict[str, str]
) -> None:
    db = RefusesGroupedStatements(engine)
    ids = await contexts(live_client, tag, 3)
    answers = await asyncio.gather(
        *(messages_store.append(db, cid, said("once"), None) for cid in ids)
    )
    assert db.refused == 1
    assert [[m.version for m in a] for a in answers] == [[1], [1], [1]]
    for cid in ids:  # written once each, after the refused statement wrote nothing
        s = await state(live_client, str(cid))
        assert [n["content"] for n in s["messages"]["nodes"]] == ["once"]


@pytest_asyncio.fixture
async def two_processes(database_url: str) -> AsyncIterator[Sequence[AsyncEngine]]:
    """Two engines: as two server processes, each with its own group commit."""
    engines = [create_engine(database_url, test_settings()) for _ in range(2)]
    yield engines
    for e in engines:
        await e.dispose()


async def test_processes_appending_to_the_same_contexts_keep_versions_exact(
    live_client: GraphQLClient,
    tag: dict[str, str],
    two_processes: Sequence[AsyncEngine],
) -> None:
    """Batches of two processes over the same contexts, in opposite orders: none waits
    for the other's locks in a batch (SKIP LOCKED), a locked context goes alone."""
    ids = await contexts(live_client, tag, 6)
    a, b = (EngineConnector(e) for e in two_processes)
    rounds = 10
    for r in range(rounds):
        answers = await asyncio.gather(
            *(messages_store.append(a, cid, said(f"a{r}", 1), None) for cid in ids),
            *(messages_store.append(b, cid, said(f"b{r}", 2), None) for cid in ids[::-1]),
        )
        assert all(len(rows) == 1 for rows in answers)
    for cid in ids:
        s = await state(live_client, str(cid))
        assert s["latestVersion"] == s["messageCount"] == 2 * rounds
        assert s["totalTokens"] == 3 * rounds
        assert [n["version"] for n in s["messages"]["nodes"]] == list(range(1, 2 * rounds + 1))


async def test_append_statements_find_their_contexts_by_primary_key(engine: AsyncEngine) -> None:
    """Joined to the request records alone (estimated at 100 rows, as any set-returning
    function), the contexts were hashed from a sequential scan of the whole table: each
    append read every context. The generic plan PostgreSQL keeps for the prepared
    statement must probe the primary key instead, whatever the table's size."""
    statements = {
        f"{name}{' with tool calls' if tools else ''}": variants[tools]
        for name, variants in (
            ("one", messages_store._APPEND),
            ("several", messages_store._APPEND_SEVERAL),
            ("with client ids", messages_store._APPEND_WITH_IDS),
        )
        for tools in (False, True)
    }
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert isinstance(raw, asyncpg.Connection)
        probe = raw.transaction()
        await probe.start()
        try:
            # enough contexts that scanning them all is a real cost (rolled back)
            await raw.execute(
                "INSERT INTO contexts (name) SELECT 'plan probe' FROM generate_series(1, 3000)"
            )
            await raw.execute("ANALYZE contexts")
            await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            for name, stmt in statements.items():
                compiled = stmt.compile(dialect=engine.dialect)
                await raw.execute(f"PREPARE probe AS {compiled}")
                nulls = ", ".join(["NULL"] * len(compiled.positiontup or ()))
                plan = "\n".join(r[0] for r in await raw.fetch(f"EXPLAIN EXECUTE probe({nulls})"))
                await raw.execute("DEALLOCATE probe")
                assert "Seq Scan on contexts" not in plan, (name, plan)
                assert "Index Cond: (id = ANY" in plan, (name, plan)  # probed by id
        finally:
            await probe.rollback()
