"""api/store/direct.py: the store's reads straight on asyncpg give SQLAlchemy's rows.

The planned reads (tests/test_plans.py) run on this path end to end, and their
statement counts (tests/test_statements.py) come through its sinks. Here the
adapter itself: for the statements it takes, the same rows with the same value
types as SQLAlchemy's execute; the statements it must not take (a type SQLAlchemy
converts) still answered by SQLAlchemy; every statement reported to the counters.
"""

from __future__ import annotations

import asyncio
import pickle
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.selectable import TextualSelect

from api.db import EngineConnector
from api.errors import VersionConflict
from api.store import contexts as store
from api.store import direct, tree
from api.store.direct import Direct
from api.store.history import HistoryFilter, HistoryPageRequest
from api.store.records import statement, typed
from tests.conftest import GraphQLClient, StatementLog
from tests.helpers import append, assistant, create_context, fork, user


def taken(stmt: Any) -> bool:
    """Did `stmt` run on asyncpg directly (else: through SQLAlchemy)?"""
    return direct._COMPILED[stmt] is not None


def same_rows(direct: list[Any], sa_rows: list[Any]) -> None:
    assert direct == sa_rows
    for d, s in zip(direct, sa_rows, strict=True):
        assert d._fields == s._fields
        assert [type(v) for v in d] == [type(v) for v in s]
        assert d._asdict() == s._asdict()


async def test_store_reads_give_sqlalchemys_rows(
    client: GraphQLClient, conn: AsyncConnection
) -> None:
    root = await create_context(
        client, "root", [user("hi"), assistant("hello")], metadata={"k": ["v", 1.5, None]}
    )
    await append(client, root["id"], [user("more")])
    child = await fork(client, root["id"], 2, name="child")
    await append(client, child["id"], [user("own")])
    ids = [uuid.UUID(child["id"])]
    req = HistoryPageRequest(HistoryFilter(), size=2, backward=True)
    tree_req = tree.TreePageRequest(tree.TreeQuery(descendants=False), size=5)

    for call in (
        lambda c: store.contexts_with_parents(c, ids),
        lambda c: store.contexts_with_pages(c, ids, req),
        lambda c: store.contexts_with_sibling_forks(c, ids, tree_req),
    ):
        via_direct, via_sa = await call(Direct(conn)), await call(conn)
        assert via_direct == via_sa
    found, pages = await store.contexts_with_pages(Direct(conn), ids, req)
    parent = found[uuid.UUID(root["id"])]
    assert parent.meta == {"k": ["v", 1.5, None]}
    assert [r.content for r in pages[ids[0]].rows] == ["hello", "own"]

    # the rows themselves: names, values and their Python types
    sql = typed(
        "SELECT c.id AS leaf, 1 AS part, c.metadata AS meta, c.created_at AS at"
        " FROM contexts c WHERE c.id = ANY(CAST(:ids AS uuid[])) ORDER BY c.created_at",
        sa.column("leaf", sa.Uuid),
        sa.column("part", sa.Integer),
        sa.column("meta", sa.JSON),
        sa.column("at", sa.DateTime(timezone=True)),
    )
    params = {"ids": [uuid.UUID(root["id"]), uuid.UUID(child["id"])]}
    direct_rows = (await Direct(conn).execute(sql, params)).all()
    sa_rows = list((await conn.execute(sql, params)).all())
    assert len(direct_rows) == 2
    same_rows(direct_rows, sa_rows)
    assert taken(sql)
    # an untyped text statement, a parameter used twice, no rows
    twice = statement("SELECT CAST(:n AS int) + CAST(:n AS int) AS two, :s AS s")
    same_rows(
        (await Direct(conn).execute(twice, {"n": 21, "s": "x"})).all(),
        list((await conn.execute(twice, {"n": 21, "s": "x"})).all()),
    )
    none = statement("SELECT id FROM contexts WHERE false")
    assert (await Direct(conn).execute(none)).all() == []


async def test_types_sqlalchemy_converts_stay_with_sqlalchemy(conn: AsyncConnection) -> None:
    """A result type SQLAlchemy processes (here: unpickling) or a typed bind parameter
    would come back different from asyncpg: those statements go to SQLAlchemy."""
    value = {"a": (1, 2)}
    pickled = typed("SELECT CAST(:v AS bytea) AS x", sa.column("x", sa.PickleType), messages=False)
    rows = (await Direct(conn).execute(pickled, {"v": pickle.dumps(value)})).all()
    assert [r.x for r in rows] == [value]
    assert not taken(pickled)
    bound = sa.text("SELECT CAST(:v AS bytea) AS x").bindparams(
        sa.bindparam("v", type_=sa.PickleType)
    )
    rows = (await Direct(conn).execute(bound, {"v": value})).all()
    assert [pickle.loads(r.x) for r in rows] == [value]
    assert not taken(bound)


async def test_direct_statements_are_counted(
    conn: AsyncConnection, statements: StatementLog
) -> None:
    stmt = statement("SELECT 1 AS one")
    statements.clear()
    assert [r.one for r in (await Direct(conn).execute(stmt)).all()] == [1]
    assert [" ".join(s.split()) for s in statements.statements] == ["SELECT 1 AS one"]


async def test_an_append_without_client_ids_runs_directly(client: GraphQLClient) -> None:
    """The append's one statement goes straight to asyncpg; with client ids (whose
    unique violation is caught as SQLAlchemy's IntegrityError) it stays with SQLAlchemy."""
    chat = await create_context(client, "appends")
    await append(client, chat["id"], [user("one")])
    await append(client, chat["id"], [user("two", id=str(uuid.uuid4()))])

    def runs(kind: str) -> list[bool]:
        return [
            compiled is not None
            for stmt, compiled in list(direct._COMPILED.items())
            if isinstance(stmt, TextualSelect) and str(stmt).startswith(kind)
        ]

    taken = runs("WITH requests AS")  # every shape so far (the cache is per process)
    assert taken
    assert all(taken)
    assert runs("WITH existing AS") == []  # never offered to Direct


# --- pooled(engine): the planned reads' connections, without SQLAlchemy's Connection ------


def checked_out(engine: AsyncEngine) -> Callable[[], int]:
    """How many of the engine's pooled connections are in use now."""
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout


async def test_pooled_reads_and_gives_the_connection_back(engine: AsyncEngine) -> None:
    in_use = checked_out(engine)
    before = in_use()
    async with direct.pooled(engine) as reads:
        assert in_use() == before + 1
        rows = (await reads.execute(statement("SELECT 1 AS one, now() AS at"))).all()
        assert rows[0].one == 1
        # asyncpg outside a transaction: autocommit, as `read()` is
        assert not reads._driver.is_in_transaction()
    assert in_use() == before


async def test_pooled_keeps_a_connection_after_a_refused_statement(engine: AsyncEngine) -> None:
    """The server refused the statement: the connection is idle and goes back to the pool."""
    drivers: list[Any] = []

    async def divide() -> None:
        async with direct.pooled(engine) as reads:
            drivers.append(reads._driver)
            await reads.execute(statement("SELECT 1 / 0 AS x"))

    with pytest.raises(asyncpg.DivisionByZeroError):
        await divide()
    assert not drivers[0].is_closed()
    async with direct.pooled(engine) as reads:  # and the pool's connections still answer
        assert [r.x for r in (await reads.execute(statement("SELECT 2 AS x"))).all()] == [2]


async def test_pooled_keeps_a_connection_after_a_client_error(engine: AsyncEngine) -> None:
    """The store refused the request between statements (an append that matched no row is
    VERSION_CONFLICT): the connection is idle, no reason to open a new one."""
    drivers: list[Any] = []

    async def conflict() -> None:
        async with direct.pooled(engine) as reads:
            drivers.append(reads._driver)
            await reads.execute(statement("SELECT 1 AS x"))
            raise VersionConflict("expectedVersion is 1 but the context is at version 2")

    with pytest.raises(VersionConflict):
        await conflict()
    assert not drivers[0].is_closed()


async def test_one_statement_writes_run_on_pooled_asyncpg(engine: AsyncEngine) -> None:
    """The production connector's single_statement: asyncpg outside a transaction, so the
    statement commits by itself, with no SQLAlchemy Connection around it."""
    in_use = checked_out(engine)
    before = in_use()
    async with EngineConnector(engine).single_statement() as writes:
        assert isinstance(writes, Direct)
        assert in_use() == before + 1
        assert not writes._driver.is_in_transaction()
        assert [r.x for r in (await writes.execute(statement("SELECT 3 AS x"))).all()] == [3]
    assert in_use() == before


async def test_rows_one_or_none_as_sqlalchemys(conn: AsyncConnection) -> None:
    def rows(n: int) -> Any:
        return statement(f"SELECT g AS x FROM generate_series(1, {n}) g")

    assert (await Direct(conn).execute(rows(0))).one_or_none() is None
    one = (await Direct(conn).execute(rows(1))).one_or_none()
    assert one == (await conn.execute(rows(1))).one_or_none()
    assert one is not None
    assert one.x == 1
    with pytest.raises(sa.exc.MultipleResultsFound):
        (await Direct(conn).execute(rows(2))).one_or_none()
    with pytest.raises(sa.exc.MultipleResultsFound):
        (await conn.execute(rows(2))).one_or_none()


async def test_pooled_drops_a_connection_cancelled_mid_statement(engine: AsyncEngine) -> None:
    """Cancelled while PostgreSQL runs the statement: the connection may be mid-protocol,
    so it is closed instead of going back to the pool."""
    in_use = checked_out(engine)
    started = asyncio.Event()
    drivers: list[Any] = []

    async def sleep() -> None:
        async with direct.pooled(engine) as reads:
            drivers.append(reads._driver)
            started.set()
            await reads.execute(statement("SELECT pg_sleep(30) AS slept"))

    before = in_use()
    task = asyncio.create_task(sleep())
    await started.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drivers[0].is_closed()
    assert in_use() == before


async def test_pooled_refuses_what_sqlalchemy_must_process(engine: AsyncEngine) -> None:
    pickled = typed("SELECT CAST(:v AS bytea) AS x", sa.column("x", sa.PickleType))

    async def unpickle() -> None:
        async with direct.pooled(engine) as reads:
            await reads.execute(pickled, {"v": pickle.dumps(1)})

    with pytest.raises(TypeError, match="not for Direct"):
        await unpickle()
